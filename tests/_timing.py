"""How much a busy machine may delay what a test times.

The suite shares two cores with RabbitMQ, Redis and PostgreSQL (and, in CI, whatever else
the machine runs). A test that times something checks the direction that is a guarantee
exactly (a delayed task never starts early, a rate limit never admits more than its count)
and the direction that is only speed (how late a start, an answer or a wake-up comes) with
these margins, so that it fails for a broken rule and never for a slow machine.
"""

#: Seconds a start, an answer or a timer may lag on a loaded machine.
LATE = 3.0

#: Seconds a rate-limited start may lag the slot the limiter granted it: the limiter decides
#: in Redis, and the run starts (and stamps its start) a scheduling hop later. A rate test
#: counts starts in windows this much shorter than the limit's period.
JITTER = 0.4
