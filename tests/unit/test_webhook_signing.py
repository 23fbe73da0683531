"""Standard Webhooks signatures, the webhook body and id, and how responses are judged."""

from __future__ import annotations

import base64

import orjson
import pytest

from burrow.errors import ConfigurationError
from burrow.tasks.record import TaskRecord, WebhookOutcome
from burrow.tasks.status import TaskStatus
from burrow.webhooks.events import event_body, judge, parse_retry_after, webhook_id
from burrow.webhooks.signing import (
    generate_secret,
    parse_secret,
    parse_secrets,
    sign,
    verify,
    webhook_headers,
)

# The test vector of the Standard Webhooks reference implementations
# (standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - published test vector
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signer_reproduces_the_specification_test_vector() -> None:
    key = parse_secret(VECTOR_SECRET)
    assert sign(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_headers_carry_id_timestamp_and_signature() -> None:
    headers = webhook_headers(
        [parse_secret(VECTOR_SECRET)], VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY
    )
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }


def _vector_headers(**changes: str) -> dict[str, str]:
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    headers.update(changes)
    return headers


def test_verify_accepts_the_vector_within_the_tolerance() -> None:
    assert verify(VECTOR_SECRET, _vector_headers(), VECTOR_BODY, now=VECTOR_TIMESTAMP + 299)


@pytest.mark.parametrize(
    ("headers", "body", "now"),
    [
        (_vector_headers(), b'{"test": 2432232315}', VECTOR_TIMESTAMP),  # tampered body
        (_vector_headers(**{"webhook-id": "msg_other"}), VECTOR_BODY, VECTOR_TIMESTAMP),
        (
            _vector_headers(**{"webhook-timestamp": str(VECTOR_TIMESTAMP + 1)}),
            VECTOR_BODY,
            VECTOR_TIMESTAMP,
        ),
        (_vector_headers(), VECTOR_BODY, VECTOR_TIMESTAMP + 301),  # too old: a replay
        (_vector_headers(**{"webhook-signature": ""}), VECTOR_BODY, VECTOR_TIMESTAMP),
        (_vector_headers(**{"webhook-timestamp": "soon"}), VECTOR_BODY, VECTOR_TIMESTAMP),
    ],
)
def test_verify_refuses_tampering_and_replays(
    headers: dict[str, str], body: bytes, now: float
) -> None:
    assert not verify(VECTOR_SECRET, headers, body, now=now)


def test_rotation_signs_with_every_secret() -> None:
    """While rotating, both secrets sign; a receiver holding either one verifies."""
    new = generate_secret()
    keys = parse_secrets(f"{VECTOR_SECRET} {new}")
    header = webhook_headers(keys, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert header["webhook-signature"].split(" ")[0] == VECTOR_SIGNATURE
    for secret in (VECTOR_SECRET, new):
        assert verify(secret, header, VECTOR_BODY, now=VECTOR_TIMESTAMP)


def test_secrets_list_may_use_commas_and_be_empty() -> None:
    assert len(parse_secrets(f"{VECTOR_SECRET},{generate_secret()}")) == 2
    assert parse_secrets("  ") == []


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("whsec_not*base64!", "not base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "at least 24"),
    ],
)
def test_malformed_secrets_are_refused_without_echoing_them(secret: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        parse_secret(secret)
    assert secret not in str(caught.value)


def test_generated_secrets_parse_to_32_byte_keys() -> None:
    assert len(parse_secret(generate_secret())) == 32


def _record(**values: object) -> TaskRecord:
    base: dict[str, object] = {
        "id": "t-1",
        "name": "add",
        "queue": "default",
        "status": TaskStatus.SUCCEEDED,
        "result": 3,
        "finished_at": 1700000000.25,
    }
    base.update(values)
    return TaskRecord.model_validate(base)


def test_webhook_id_is_stable_per_terminal_state() -> None:
    """Same record, same id (retries and duplicates); another terminal state or a second
    finish after a retry, another id."""
    first = _record()
    assert webhook_id(first) == webhook_id(_record())
    assert webhook_id(first).startswith("msg_")
    assert webhook_id(first) != webhook_id(_record(status=TaskStatus.FAILED))
    assert webhook_id(first) != webhook_id(_record(finished_at=1700000100.0))


def test_event_body_is_the_record_without_the_webhook_field() -> None:
    record = _record(webhook=WebhookOutcome(id="msg_x", status="pending"))
    event = orjson.loads(event_body(record))
    assert event["type"] == "task.succeeded"
    assert event["timestamp"].startswith("2023-11-14T22:13:20.25")
    assert event["data"]["id"] == "t-1"
    assert event["data"]["result"] == 3
    assert "webhook" not in event["data"]


@pytest.mark.parametrize(
    ("code", "delivered", "final", "error"),
    [
        (200, True, False, None),
        (204, True, False, None),
        (301, False, True, "redirect_blocked"),
        (302, False, True, "redirect_blocked"),
        (307, False, True, "redirect_blocked"),
        (410, False, True, "gone"),
        (404, False, False, "http_404"),
        (500, False, False, "http_500"),
        (429, False, False, "http_429"),
    ],
)
def test_judge(code: int, delivered: bool, final: bool, error: str | None) -> None:
    verdict = judge(code, None, now=0.0, cap=60.0)
    assert (verdict.delivered, verdict.final, verdict.error) == (delivered, final, error)


def test_429_takes_retry_after_in_seconds_or_as_a_date_capped() -> None:
    assert judge(429, "2", now=0.0, cap=60.0).retry_after == 2.0
    now = 1_700_000_000.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now=now, cap=60.0) == 10.0
    assert parse_retry_after("99999", now=now, cap=60.0) == 60.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now=now, cap=60.0) == 0.0
    assert parse_retry_after("soon", now=now, cap=60.0) is None
    assert parse_retry_after(None, now=now, cap=60.0) is None
