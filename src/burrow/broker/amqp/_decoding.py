"""Message properties that cannot be decoded never take the connection down.

pamqp decodes a message's properties (its content header frame) strictly: a short string
that is not UTF-8 (a binary ``message_id`` or ``correlation_id``, which some clients send),
a header name that is not UTF-8, an unknown field type or a timestamp out of range raises,
and aiormq then closes the whole connection (``InvalidFrameError``). The broker gives the
message to the next consumer, which fails the same way, so one such message stops every
worker consuming its queue (on a quorum queue, until its delivery limit runs out; on a
classic queue, for good), and with them every other delivery in flight on the connection.

``install_tolerant_properties`` makes such a content header decode as a message without
properties except the header ``x-burrow-bad-properties`` (``HDR_BAD_PROPERTIES``: what
failed). Its body size, and so its body, are read as usual; the worker then dead-letters it
with the reason ``bad_properties`` (``tasks.envelope``), and the connection lives on.
"""

from __future__ import annotations

import struct
from typing import Any

import pamqp.frame
from pamqp import header
from pamqp.commands import Basic

from burrow.tasks.envelope import HDR_BAD_PROPERTIES

#: The fixed start of a content header frame: class id, weight, body size.
_FIXED = struct.Struct(">HHQ")

_strict = pamqp.frame._unmarshal_header_frame


def _tolerant_header_frame(frame_data: bytes) -> header.ContentHeader:
    """pamqp's content header decoding; on properties it cannot decode, a header with
    the real body size and only ``HDR_BAD_PROPERTIES`` as properties."""
    try:
        return _strict(frame_data)
    except Exception as exc:  # any decoding error of untrusted bytes; re-raised below if
        # even the fixed part is unreadable (then the frame itself is broken)
        if len(frame_data) < _FIXED.size:
            raise
        _class_id, weight, body_size = _FIXED.unpack_from(frame_data)
        cause = exc.__cause__ or exc
        problem = f"the message's properties cannot be decoded: {cause}"[:500]
        properties = Basic.Properties(headers={HDR_BAD_PROPERTIES: problem})
        return header.ContentHeader(weight=weight, body_size=body_size, properties=properties)


def install_tolerant_properties() -> None:
    """Decode content headers tolerantly in this process (idempotent).

    A module attribute of pamqp is replaced: pamqp and aiormq offer no hook for it, and
    the replacement changes nothing for a frame pamqp decodes; it only turns the decoding
    errors that would close the connection into a marked message.
    """
    module: Any = pamqp.frame
    if module._unmarshal_header_frame is not _tolerant_header_frame:
        module._unmarshal_header_frame = _tolerant_header_frame


__all__ = ["install_tolerant_properties"]
