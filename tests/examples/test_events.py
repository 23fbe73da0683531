"""The programs of examples/events run to their end and print where each event went."""

from __future__ import annotations

import re

import pytest

from tests.examples._run import Declared, routes, run_example

pytestmark = pytest.mark.integration


async def test_user_created_sends_one_welcome_email_and_every_instance_audits(
    namespace: str,
) -> None:
    out = await run_example(
        "examples.events.user_created",
        namespace,
        Declared(["welcome-emails", "sub.audit"], exchanges=["users"]),
    )
    outbox = re.findall(r"to (\S+): 'Welcome, (\w+)!' \(sent by instance-[12], attempt (\d)\)", out)
    assert sorted(outbox) == [
        ("alice@example.com", "Alice", "1"),  # once, though its event was published twice
        ("bob@example.com", "Bob", "1"),
        ("carol@flaky.example", "Carol", "2"),  # the first attempt failed and was retried
    ], out
    assert out.count("sent the welcome email to alice@example.com") == 1
    # The second publish reached welcome-emails and both instances' audit queues.
    assert "deduplicated: 3 deliveries acked without running again" in out
    audit = re.findall(r"(instance-[12]): (created .+)", out)
    assert sorted(audit) == [
        ("instance-1", "created 1, created 2, created 3, deleted 2"),
        ("instance-2", "created 1, created 2, created 3, deleted 2"),
    ], out


async def test_log_distribution_by_app_service_level(namespace: str) -> None:
    out = await run_example(
        "examples.events.log_distribution",
        namespace,
        Declared(
            ["error-alerts", "naive-alerts", "auth-audit", "debug-collector"], exchanges=["logs"]
        ),
    )
    assert routes(out) == {
        "web.auth.error": "auth_audit, error_alerts",
        "web.auth.info": "auth_audit",
        "web.auth.debug": "auth_audit, debug_collector",
        "web.order.debug": "debug_collector",
        "mobile.pay.error": "error_alerts",
        "billing.invoice.warning": "nobody: no binding matches, dropped",
    }
    counts = dict(re.findall(r"(\w+) +\S+ +got (\d+) lines", out))
    # *.error is one word then "error": no three-word key matches it.
    assert counts == {
        "error_alerts": "2",
        "naive_alerts": "0",
        "auth_audit": "3",
        "debug_collector": "2",
    }
