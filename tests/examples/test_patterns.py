"""Each program of examples/patterns runs to its end and prints where its messages went."""

from __future__ import annotations

import re

import pytest

from tests.examples._run import Declared, routes, run_example

pytestmark = pytest.mark.integration


async def test_simple_queue(namespace: str) -> None:
    out = await run_example("examples.patterns.simple_queue", namespace, Declared(["hello"]))
    for i in (1, 2, 3):
        assert f"consumer received 'Hello World! #{i}'" in out
        assert re.search(rf"task \w{{8}}: succeeded, result 'HELLO WORLD! #{i}'", out), out


async def test_work_queue_splits_the_jobs_between_two_workers(namespace: str) -> None:
    out = await run_example("examples.patterns.work_queue", namespace, Declared(["work"]))
    finished = re.findall(r"(worker-[12]) finished 'job (\d) \.+'", out)
    assert sorted(job for _, job in finished) == [str(i) for i in range(1, 9)], out  # once each
    by_worker = {w: sorted(j for v, j in finished if v == w) for w in ("worker-1", "worker-2")}
    assert all(by_worker.values()), f"one worker did nothing: {out}"
    for worker, jobs in by_worker.items():  # the producer's tally agrees with the workers
        assert f"{worker} ran {len(jobs)} jobs: {', '.join(jobs)}" in out


async def test_publish_subscribe_reaches_every_receiver(namespace: str) -> None:
    out = await run_example(
        "examples.patterns.publish_subscribe",
        namespace,
        Declared(["sub.show_log"], exchanges=["logs"]),
    )
    summary = dict(re.findall(r"(receiver-[12]) got 3 of 3: (.+)", out))
    assert set(summary) == {"receiver-1", "receiver-2"}, out
    lines = {"info: service started", "warning: disk 80% full", "error: payment declined"}
    for got in summary.values():
        assert sorted(got.split("; ")) == sorted(lines)
    assert len(re.findall(r"receiver-[12] got '", out)) == 6  # no duplicates


async def test_routing_by_exact_key(namespace: str) -> None:
    out = await run_example(
        "examples.patterns.routing",
        namespace,
        Declared(["errors-to-disk", "logs-to-screen"], exchanges=["direct_logs"]),
    )
    assert routes(out) == {
        "info": "print_to_screen",
        "warning": "print_to_screen",
        "error": "print_to_screen, save_to_disk",
        "debug": "nobody: no binding matches, dropped",
    }


async def test_topics_match_word_by_word(namespace: str) -> None:
    out = await run_example(
        "examples.patterns.topics",
        namespace,
        Declared(["orange-ones", "rabbits-or-lazy"], exchanges=["topic_animals"]),
    )
    both, nobody = "orange_ones, rabbits_or_lazy", "nobody: no binding matches, dropped"
    assert routes(out) == {
        "quick.orange.rabbit": both,
        "lazy.orange.elephant": both,
        "quick.orange.fox": "orange_ones",
        "lazy.brown.fox": "rabbits_or_lazy",
        "lazy.pink.rabbit": "rabbits_or_lazy",  # once, though both of its bindings match
        "quick.brown.fox": nobody,
        "orange": nobody,
        "quick.orange.new.rabbit": nobody,
        "lazy.orange.new.rabbit": "rabbits_or_lazy",
    }


async def test_headers_all_and_any(namespace: str) -> None:
    out = await run_example(
        "examples.patterns.headers",
        namespace,
        Declared(["fast-lane", "pdf-or-urgent"], exchanges=["documents"]),
    )
    assert routes(out) == {
        "report.pdf": "fast_lane, pdf_or_urgent",
        "invoice.pdf": "fast_lane, pdf_or_urgent",
        "scan.pdf": "pdf_or_urgent",
        "outage.docx": "pdf_or_urgent",
        "notes.txt": "nobody: no binding matches, dropped",
    }


async def test_rpc_replies_errors_and_timeout(namespace: str) -> None:
    out = await run_example("examples.patterns.rpc", namespace, Declared(rpc=["fib", "nap"]))
    lines = [line.strip() for line in out.splitlines()]
    assert "fib(10) = 55" in lines
    assert "fib(30) = 832040" in lines
    assert "fib(90) = 2880067194370816120" in lines
    assert "fib(-1) → RpcError ValueError: fib is not defined for -1" in lines
    assert "nap(1.0 s) with timeout=0.3 → RpcTimeout: rpc 'nap': no reply within 0.3 s" in lines
