"""Run the suite (or a program) as if the machine's clock read another date, without changing it.

``BILLING_TEST_NOW=2028-02-29T23:59:30Z pytest ...`` starts the whole session at that moment
(tests/conftest.py): the clock then ticks on from there, so a month, a year or a leap day can be
crossed while the suite runs. DynamoDB Local is a JVM and keeps the real clock; nothing the rules
decide is read from it.

``python -m tests.travel <module> [args]`` runs a module as ``python -m <module>`` would, in the same
travelled time when ``BILLING_TEST_NOW`` is set (a test that starts a program hands it its own
present this way; see tests/test_demo.py).
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import time_machine

TEST_NOW = "BILLING_TEST_NOW"
# A moment far from any month, day or year boundary, for tests whose story is told relative to now.
MID_MONTH = datetime(2026, 11, 18, 12, 0, 0, tzinfo=UTC)


def parse(value: str) -> datetime:
    """``2028-02-29`` (midnight UTC) or ``2028-02-29T12:00:00Z``; a time without a zone is UTC."""
    moment = datetime.fromisoformat(value.strip())
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def travel_from_env() -> time_machine.travel | None:
    """Started travel to ``$BILLING_TEST_NOW`` (ticking), or None when it is not set."""
    value = os.environ.get(TEST_NOW)
    if not value:
        return None
    traveller = time_machine.travel(parse(value), tick=True)
    traveller.start()
    return traveller


@contextmanager
def mid_month(at: datetime = MID_MONTH) -> Iterator[None]:
    """The process's clock at ``at``, ticking on, inside the block (nested in any session travel):
    for a module whose stack and requests happen "now" and whose figures must not depend on the
    day. DynamoDB Local keeps the real clock; the table has no TTL, so nothing there reads it."""
    with time_machine.travel(at, tick=True):
        yield


def main() -> None:
    module, *args = sys.argv[1:]
    travel_from_env()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
