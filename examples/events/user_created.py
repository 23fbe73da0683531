"""Event-driven: a user is created → a welcome email is sent, and every instance audits it.

The users service does not call the email service: it publishes a ``user.created`` event to
the topic exchange ``users`` and moves on. Whoever is interested subscribes:

* ``send_welcome_email`` binds ``user.created`` with a shared queue
  (``queue="welcome-emails"``): however many worker instances run, each event is handled
  by one of them, so each user gets one email. It is a subscriber like a task: a failure
  is retried with backoff (here the mail server times out once for one user), a payload
  that does not validate is dead-lettered.
* ``audit`` binds ``user.*`` without a queue: broadcast, every instance records every
  user event in its own log.

Publishing is at-least-once (a producer that lost a confirm publishes again), so the event
id matters: the users service derives it from the user id, and a subscriber runs an event
id at most once to completion. Publishing alice's event a second time sends no second email.

Run it: ``python -m examples.events.user_created``
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from pydantic import BaseModel

from burrow import Burrow, Exchange, TaskContext
from examples.patterns._support import console, make_app, running, until_quiet

users = Exchange("users", "topic")

#: The emails "sent": (to, subject, instance, attempt). A real app calls its mail service.
OUTBOX: list[tuple[str, str, str, int]] = []
#: Each instance's audit log.
AUDIT: dict[str, list[str]] = defaultdict(list)


class UserCreated(BaseModel):
    user_id: int
    email: str
    name: str


class UserEvent(BaseModel):
    user_id: int
    action: str  # extra fields (email, name) are ignored: audit needs only these


def service_app(instance: str) -> Burrow:
    """The app of one notification-service instance (two run here, as two processes)."""
    app = make_app("user_created")

    @app.subscriber(users, "user.created", queue="welcome-emails", max_retries=3, retry_base=0.2)
    async def send_welcome_email(event: UserCreated, ctx: TaskContext) -> None:
        if event.email.endswith("@flaky.example") and ctx.attempt == 1:
            console.print(f"  [red]{instance}[/] mail server timed out for {event.email}")
            raise ConnectionError("mail server timed out")  # retried after ~0.2 s
        OUTBOX.append((event.email, f"Welcome, {event.name}!", instance, ctx.attempt))
        console.print(f"  [cyan]{instance}[/] sent the welcome email to {event.email}")

    @app.subscriber(users, "user.*")  # no queue=: every instance gets every user event
    async def audit(event: UserEvent) -> None:
        AUDIT[instance].append(f"{event.action} {event.user_id}")

    return app


async def create_user(app: Burrow, user_id: int, name: str, email: str) -> str:
    """The users service: saves the user (not shown), then announces it."""
    event = {"user_id": user_id, "email": email, "name": name, "action": "created"}
    return await app.publish(users, "user.created", event, message_id=f"user-{user_id}-created")


async def main() -> None:
    apps = [service_app("instance-1"), service_app("instance-2")]
    users_service = apps[0]  # any app can publish; a real users service has its own
    async with running(*apps) as workers:
        console.print("[bold]users service[/] creates alice, bob and carol, deletes bob")
        ids = [
            await create_user(users_service, 1, "Alice", "alice@example.com"),
            await create_user(users_service, 2, "Bob", "bob@example.com"),
            await create_user(users_service, 3, "Carol", "carol@flaky.example"),
        ]
        await users_service.publish(users, "user.deleted", {"user_id": 2, "action": "deleted"})
        for event_id in ids:  # each subscriber keeps a record per event: {event id}:{name}
            await users_service.wait(f"{event_id}:send_welcome_email", timeout=10)
        await until_quiet(workers)  # the audits too
        console.print("[bold]users service[/] publishes alice's event again (same event id)")
        await create_user(users_service, 1, "Alice", "alice@example.com")
        await until_quiet(workers)
        skipped = sum(w.statistics().deduplicated for w in workers)
    # It reached the shared welcome-emails queue and each instance's audit queue again.
    console.print(f"  deduplicated: {skipped} deliveries acked without running again")
    console.print(f"[bold]Outbox[/] ({len(OUTBOX)} emails, one per new user):")
    for to, subject, instance, attempt in sorted(OUTBOX):
        console.print(f"  to {to}: {subject!r} (sent by {instance}, attempt {attempt})")
    console.print("[bold]Audit logs[/] (every instance records every user event):")
    for instance in sorted(AUDIT):
        console.print(f"  {instance}: {', '.join(sorted(AUDIT[instance]))}")


if __name__ == "__main__":
    asyncio.run(main())
