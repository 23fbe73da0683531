"""The scheduler runtime: cron schedules (``cron``, pure) and the process that fires them
(``runner.Scheduler``, behind ``burrow scheduler APP``). See docs/scheduling.md."""

from burrow.scheduler.cron import Cron, Misfire, Schedule, Source
from burrow.scheduler.runner import Scheduler, SchedulerStats

__all__ = ["Cron", "Misfire", "Schedule", "Scheduler", "SchedulerStats", "Source"]
