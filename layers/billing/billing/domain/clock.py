"""UTC time to the second, calendar months, and the ISO-8601 ``Z`` format of the contract."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
SECOND = timedelta(seconds=1)


def utc_now() -> datetime:
    """The real clock, truncated to the second (the rules' resolution)."""
    return datetime.now(UTC).replace(microsecond=0)


def parse_time(value: str) -> datetime:
    """Parse an ISO-8601 UTC time with a ``Z`` suffix (or +00:00); seconds resolution.

    Raises ValueError for anything else: naive times and other offsets are not UTC facts.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("time must be an ISO-8601 UTC string")
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None or parsed.utcoffset() != timedelta(0):
        raise ValueError("time must be UTC (Z suffix)")
    return parsed.astimezone(UTC).replace(microsecond=0)


def require_utc(moment: datetime, name: str) -> datetime:
    """A decoded, zone-aware time as the rules' UTC second; ValueError for another offset."""
    if moment.utcoffset():
        raise ValueError(f"{name} must be a UTC time (Z suffix)")
    return moment.astimezone(UTC).replace(microsecond=0)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def month_key(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def month_start(moment: datetime) -> datetime:
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month_start(moment: datetime) -> datetime:
    if moment.month == 12:
        return datetime(moment.year + 1, 1, 1, tzinfo=UTC)
    return datetime(moment.year, moment.month + 1, 1, tzinfo=UTC)


def month_start_of_key(key: str) -> datetime:
    year, month = key.split("-")
    return datetime(int(year), int(month), 1, tzinfo=UTC)


def add_one_month(moment: datetime) -> datetime:
    """Same day and time one calendar month later, clamped to the month's last day (Jan 31 -> Feb 28)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)
