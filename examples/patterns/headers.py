"""Headers exchange: route on message headers instead of the routing key.

A headers exchange ignores the routing key and compares the message's headers with each
binding's: with ``x-match: all`` every header of the binding must be present with the same
value, with ``x-match: any`` one is enough. Headers the binding does not name don't matter.

burrow: ``Exchange("documents", "headers")``; a subscriber binds with a dict of header
values, and ``headers_match="any"`` (or an ``"x-match"`` entry in the dict) chooses the
rule (``all`` by default). ``app.publish(exchange, "", payload, headers={...})`` sets them.
Both subscribers here bind the same two headers, to show ``all`` and ``any`` side by side.

Run it: ``python -m examples.patterns.headers``
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from pydantic import BaseModel

from burrow import Exchange
from examples.patterns._support import console, make_app, running, show_routes, until_quiet

app = make_app("headers")
documents = Exchange("documents", "headers")
received: dict[str, list[str]] = defaultdict(list)  # subscriber -> documents it got

HIGH_PRIORITY_PDF = {"file-type": "pdf", "priority": "high"}


class Document(BaseModel):
    name: str


@app.subscriber(documents, HIGH_PRIORITY_PDF, queue="fast-lane")  # x-match all
async def fast_lane(doc: Document) -> None:
    received["fast_lane"].append(doc.name)


@app.subscriber(documents, HIGH_PRIORITY_PDF, queue="pdf-or-urgent", headers_match="any")
async def pdf_or_urgent(doc: Document) -> None:
    received["pdf_or_urgent"].append(doc.name)


DOCUMENTS = {
    "report.pdf": {"file-type": "pdf", "priority": "high"},  # both
    "invoice.pdf": {"file-type": "pdf", "priority": "high", "tenant": "A"},  # both
    "scan.pdf": {"file-type": "pdf", "priority": "low"},  # any only
    "outage.docx": {"file-type": "docx", "priority": "high"},  # any only
    "notes.txt": {"file-type": "txt"},  # nobody
}


async def main() -> None:
    async with running(app) as workers:
        console.print(f"[bold]producer[/] publishes {len(DOCUMENTS)} documents with headers:")
        for name, headers in DOCUMENTS.items():
            console.print(f"  {name:<12} {headers}")
            await app.publish(documents, "", {"name": name}, headers=headers)
        await until_quiet(workers)
    console.print(
        f"[bold]Routes[/] (both bind {HIGH_PRIORITY_PDF}: fast_lane x-match all, "
        "pdf_or_urgent x-match any):"
    )
    show_routes(DOCUMENTS, received)


if __name__ == "__main__":
    asyncio.run(main())
