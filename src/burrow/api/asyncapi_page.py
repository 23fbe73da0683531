"""The HTML page of an AsyncAPI document (``GET /asyncapi``), rendered on the server.

One self-contained page: no script, no font, nothing from another origin, so it works
offline and under a strict Content-Security-Policy (``CSP``: only its own inline style,
allowed by hash). It shows the document's operations by kind (tasks, events, RPC, dead
letters), each with its channel, AMQP binding, messages (properties, headers, payload
schema) and reply, then every component schema; ``$ref`` links jump to the schema.

Everything comes from the document itself (``burrow.api.asyncapi.build_document``), so the
page and ``/asyncapi.json`` cannot disagree. Every text from the document is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from html import escape
from typing import Any

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2430;background:#fafbfc}
header,main,nav{max-width:70rem;margin:0 auto;padding:0 1.25rem}
header{padding-top:1.25rem}
h1{font-size:1.6rem;margin:.2rem 0}h2{margin-top:2.2rem;border-bottom:1px solid #d5dae1}
h3{margin:1.6rem 0 .3rem}h4{margin:1rem 0 .3rem}
article{background:#fff;border:1px solid #e1e5ea;border-radius:6px;padding:.2rem 1rem 1rem;
margin:1rem 0}
code,pre{font:13px/1.4 ui-monospace,monospace}
pre{background:#f3f5f8;padding:.6rem;overflow:auto;border-radius:4px}
table{border-collapse:collapse;margin:.3rem 0;width:100%}
td,th{border:1px solid #e1e5ea;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f8}dt{font-weight:600;margin-top:.3rem}dd{margin-left:1.2rem}
.muted{color:#5b6676}nav a{margin-right:1rem}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
#: The page's Content-Security-Policy: nothing but its own inline style.
CSP = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)

#: Sections of the page: (anchor, heading, operation-key prefixes).
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("tasks", "Tasks", ("run.",)),
    ("events", "Events", ("publish.", "subscribe.")),
    ("rpc", "RPC", ("rpc.",)),
    ("dead-letters", "Dead letters", ("deadLetter.",)),
)
_ACTIONS = {
    "receive": "receive: the app's workers consume this; a client publishes it",
    "send": "send: the app publishes this",
}
_SCHEMA_LINK = re.compile(r"&quot;#/components/schemas/([A-Za-z0-9_.-]+)&quot;")


def _text(value: Any) -> str:
    """Escaped text with `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(str(value)))


def _markdown(text: str) -> str:
    """The little CommonMark the document's descriptions use: paragraphs, ``*`` lists,
    ``**bold**`` and `code`."""
    out: list[str] = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        if lines and lines[0].startswith("* "):
            items: list[str] = []
            for line in lines:
                if line.startswith("* "):
                    items.append(line[2:])
                else:
                    items[-1] += " " + line.strip()
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "".join(out)


def _inline(text: str) -> str:
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", _text(text))


def _json(value: Any) -> str:
    """``value`` as indented JSON, with component-schema references as links."""
    text = escape(json.dumps(value, indent=2, ensure_ascii=False))
    return _SCHEMA_LINK.sub(r'<a href="#schema-\1">&quot;#/components/schemas/\1&quot;</a>', text)


def resolve(document: dict[str, Any], value: Any) -> Any:
    """``value``, or what its local ``$ref`` points to (followed until it is no ref)."""
    seen = 0
    while isinstance(value, dict) and isinstance(value.get("$ref"), str) and seen < 20:
        target: Any = document
        for part in value["$ref"].removeprefix("#/").split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
        value, seen = target, seen + 1
    return value


def _constraint(schema: dict[str, Any]) -> str:
    """A one-line summary of a property's schema (type, const, enum, range, pattern)."""
    parts: list[str] = []
    if "const" in schema:
        parts.append(f"= {json.dumps(schema['const'])}")
    if "enum" in schema:
        parts.append("one of " + ", ".join(json.dumps(v) for v in schema["enum"]))
    if "type" in schema:
        parts.append(str(schema["type"]))
    for key in ("minimum", "maximum", "pattern", "default"):
        if key in schema:
            parts.append(f"{key} {json.dumps(schema[key])}")
    return "; ".join(parts) or "any"


def _fields_table(document: dict[str, Any], schema: Any) -> str:
    """A table of an object schema's properties (AMQP properties or headers)."""
    schema = resolve(document, schema)
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    if not properties:
        return '<p class="muted">none</p>'
    required = set(schema.get("required", []))
    rows = "".join(
        f"<tr><td><code>{escape(name)}</code>{' (required)' if name in required else ''}</td>"
        f"<td>{_text(_constraint(prop))}</td><td>{_text(prop.get('description', ''))}</td></tr>"
        for name, prop in properties.items()
    )
    head = "<tr><th>name</th><th>value</th><th>meaning</th></tr>"
    note = f"<p>{_text(schema['description'])}</p>" if schema.get("description") else ""
    return f"{note}<table>{head}{rows}</table>"


def _message(document: dict[str, Any], ref: dict[str, Any]) -> str:
    message = resolve(document, ref)
    title = message.get("title") or message.get("name", "message")
    parts = [f"<h4>Message: {_text(title)}</h4>"]
    if message.get("summary"):
        parts.append(f"<p>{_text(message['summary'])}</p>")
    amqp = message.get("bindings", {}).get("amqp", {})
    if "messageType" in amqp:
        parts.append(f"<p>AMQP <code>type</code>: <code>{escape(amqp['messageType'])}</code></p>")
    if "x-burrow-properties" in message:
        parts.append("<p><strong>AMQP properties</strong></p>")
        parts.append(_fields_table(document, message["x-burrow-properties"]))
    parts.append("<p><strong>Headers</strong></p>")
    parts.append(_fields_table(document, message.get("headers", {})))
    parts.append("<p><strong>Payload</strong> (JSON Schema)</p>")
    parts.append(f"<pre>{_json(message.get('payload', {}))}</pre>")
    return "".join(parts)


def _binding(channel: dict[str, Any]) -> str:
    amqp = channel.get("bindings", {}).get("amqp", {})
    if amqp.get("is") == "queue":
        q = amqp.get("queue", {})
        kind = "durable" if q.get("durable") else "exclusive, auto-delete"
        return f"queue <code>{escape(str(q.get('name')))}</code> ({kind})"
    exchange = amqp.get("exchange", {})
    name = exchange.get("name") or '"" (the default exchange)'
    return f"exchange <code>{escape(str(name))}</code> of type {escape(str(exchange.get('type')))}"


def _channel_details(channel: dict[str, Any]) -> str:
    """The ``x-burrow-*`` facts of a channel, as definition-list entries."""
    parts: list[str] = []
    publish = channel.get("x-burrow-publish")
    if publish:
        parts.append(
            "<dt>Publish</dt><dd>exchange <code>&quot;&quot;</code>, routing key "
            f"<code>{escape(publish['routingKey'])}</code>, mandatory</dd>"
        )
    bindings = channel.get("x-burrow-bindings", [])
    if bindings:
        items = "".join(
            f"<li><code>{escape(b['exchange'])}</code> key <code>{escape(b['routingKey'])}"
            f"</code>{' ' + escape(json.dumps(b['arguments'])) if b['arguments'] else ''}</li>"
            for b in bindings
        )
        parts.append(f"<dt>Bound to</dt><dd><ul>{items}</ul></dd>")
    if channel.get("x-burrow-dead-letter-queue"):
        dlq = escape(channel["x-burrow-dead-letter-queue"])
        parts.append(f"<dt>Dead letters</dt><dd><code>{dlq}</code></dd>")
    if channel.get("x-burrow-queue-arguments"):
        args = escape(json.dumps(channel["x-burrow-queue-arguments"]))
        parts.append(f"<dt>Queue arguments</dt><dd><code>{args}</code></dd>")
    return "".join(parts)


def _operation(document: dict[str, Any], key: str, operation: dict[str, Any]) -> str:
    channel = resolve(document, operation["channel"])
    address = channel.get("address")
    parts = [f'<article id="op-{escape(key)}"><h3>{_text(operation.get("title", key))}</h3>']
    for field in ("summary", "description"):
        if operation.get(field):
            parts.append(f"<p>{_text(operation[field])}</p>")
    parts.append("<dl>")
    parts.append(f"<dt>Action</dt><dd>{escape(_ACTIONS.get(operation['action'], ''))}</dd>")
    where = f"<code>{escape(address)}</code>" if address else "the request's reply_to"
    parts.append(f"<dt>Channel</dt><dd>{where}: {_text(channel.get('title', ''))}</dd>")
    parts.append(f"<dt>AMQP</dt><dd>{_binding(channel)}</dd>")
    parts.append(_channel_details(channel))
    if operation.get("x-burrow-record-id"):
        record = escape(operation["x-burrow-record-id"])
        parts.append(f"<dt>Record id</dt><dd><code>{record}</code></dd>")
    parts.append("</dl>")
    parts.extend(_message(document, ref) for ref in operation.get("messages", []))
    reply = operation.get("reply")
    if reply:
        parts.append("<h4>Reply</h4>")
        parts.append(f"<p>{_text(reply.get('address', {}).get('description', ''))}</p>")
        parts.extend(_message(document, ref) for ref in reply.get("messages", []))
    parts.append("</article>")
    return "".join(parts)


def _section(document: dict[str, Any], anchor: str, heading: str, prefixes: Iterable[str]) -> str:
    operations = document.get("operations", {})
    keys = [k for k in operations if k.startswith(tuple(prefixes))]
    body = "".join(_operation(document, k, operations[k]) for k in keys)
    return f'<section id="{anchor}"><h2>{heading}</h2>{body or "<p>None registered.</p>"}</section>'


def _schemas(document: dict[str, Any]) -> str:
    schemas = document.get("components", {}).get("schemas", {})
    body = "".join(
        f'<h3 id="schema-{escape(name)}">{escape(name)}</h3><pre>{_json(schema)}</pre>'
        for name, schema in schemas.items()
    )
    return f'<section id="schemas"><h2>Schemas</h2>{body}</section>'


def render_page(document: dict[str, Any]) -> str:
    """The whole HTML page of ``document``."""
    info = document.get("info", {})
    title = escape(str(info.get("title", "AsyncAPI")))
    toc = "".join(f'<a href="#{a}">{h}</a>' for a, h, _ in SECTIONS) + (
        '<a href="#schemas">Schemas</a>'
    )
    sections = "".join(_section(document, *s) for s in SECTIONS)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f'<header><h1>{title}</h1><p class="muted">AsyncAPI '
        f"{escape(str(document.get('asyncapi')))}, version {escape(str(info.get('version')))}"
        ' · <a href="/asyncapi.json">asyncapi.json</a> · <a href="/docs">HTTP API</a>'
        ' · <a href="/ui/">dashboard</a></p></header>'
        f"<nav>{toc}</nav><main>"
        f'<section id="overview">{_markdown(str(info.get("description", "")))}</section>'
        f"{sections}{_schemas(document)}</main></body></html>"
    )


__all__ = ["CSP", "render_page", "resolve"]
