"""Work queue (competing consumers): two workers share one queue; each task runs on one.

RabbitMQ tutorial 2: time-consuming tasks go to one durable queue and several workers take
from it. Messages are persistent and acked only when done (a worker that dies gives its
task back), and each worker takes one message at a time (prefetch 1, "fair dispatch"), so
a worker busy with a long task is not handed more while another one is free.

burrow does all of that for every task queue. To add workers, start more of them on the
same queue: ``burrow worker module:app`` on as many machines as you like. Here two
``Worker``s run in this process, each with its own app (its own connection, as two
processes would have), and ``concurrency=1`` gives each one prefetch 1.

Run it: ``python -m examples.patterns.work_queue``
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from pydantic import BaseModel

from burrow import Burrow
from examples.patterns._support import console, make_app, running


class Job(BaseModel):
    text: str  # as in the tutorial, every dot is a unit of work (here 0.1 s)


def worker_app(label: str, colour: str) -> Burrow:
    """The app one worker process would import; ``label`` tells the two apart."""
    app = make_app("work_queue")

    @app.task(queue="work")
    async def work(job: Job) -> str:
        await asyncio.sleep(0.1 * job.text.count("."))
        console.print(f"  [{colour}]{label}[/] finished {job.text!r}")
        return label  # the result tells the producer who did it

    return app


async def main() -> None:
    apps = [worker_app("worker-1", "cyan"), worker_app("worker-2", "magenta")]
    producer = apps[0]  # any app that registered the task can submit it
    async with running(*apps, concurrency=1):
        jobs = [f"job {i} " + "." * (i % 3 + 1) for i in range(1, 9)]
        console.print(f"[bold]producer[/] submits {len(jobs)} jobs to the queue 'work'")
        handles = [await producer.submit("work", {"text": job}) for job in jobs]
        done_by: dict[str, list[str]] = defaultdict(list)
        for job, handle in zip(jobs, handles, strict=True):
            record = await producer.wait(handle.id, timeout=20)
            done_by[record.result].append(job.split(" ")[1])
    console.print("[bold]Who did what[/] (each job ran exactly once):")
    for label in sorted(done_by):
        console.print(f"  {label} ran {len(done_by[label])} jobs: {', '.join(done_by[label])}")


if __name__ == "__main__":
    asyncio.run(main())
