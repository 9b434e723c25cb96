"""Usage for any range, by any attribution: charge lines summed into cells, and cells summed into
periods and groups.

A *cell* is the attribution of a charge line without its container: resource, tier, model, feature,
labels and the member (``user``).
What was charged (deductions, debt included) less corrections is kept per day and hour
of the deduction, per cell, for the account and for each container (:mod:`billing.store.usage`);
:func:`summarize` turns those days into a report for a range, a granularity, a grouping and filters.
Pure: no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from billing.domain.model import RESOURCES, ChargeLine, LedgerEntry

Granularity = Literal["hour", "day", "month"]
DIMENSIONS = ("resource", "container", "tier", "model", "feature", "user")
MAX_DAYS = 366


@dataclass(frozen=True, order=True)
class Cell:
    """The attribution of a charge line, without its container."""

    resource: str
    tier: str = ""
    model: str = ""
    feature: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    user: str = ""  # the member (user_id) the usage is attributed to; "" without one


def cell_of(line: ChargeLine) -> Cell:
    feature = line.item if line.resource == "ai" else ("code_supporter" if line.item == "code_supporter" else "")
    return Cell(
        resource=line.resource,
        tier=(line.tier or "") if line.resource == "container" else "",
        model=(line.model or "") if line.resource == "ai" else "",
        feature=feature,
        labels=tuple(sorted((line.labels or {}).items())),
        user=line.attributed_user or line.user_id or "",
    )


@dataclass
class UsageDay:
    """One day's usage of the account or of one container: µcr per cell, per hour; or, read from a
    month rollup that keeps days only, per cell for the whole day (``whole``: no hour granularity)."""

    day: date
    container_id: str | None = None
    hours: dict[int, dict[Cell, int]] = field(default_factory=dict)
    whole: dict[Cell, int] = field(default_factory=dict)

    def add(self, hour: int, cell: Cell, amount: int) -> None:
        cells = self.hours.setdefault(hour, {})
        cells[cell] = cells.get(cell, 0) + amount

    def add_whole(self, cell: Cell, amount: int) -> None:
        self.whole[cell] = self.whole.get(cell, 0) + amount

    def amounts(self) -> Iterable[tuple[int | None, Cell, int]]:
        """(hour, or None for a whole-day amount; cell; µcr) of the day."""
        for hour, cells in self.hours.items():
            for cell, amount in cells.items():
                yield hour, cell, amount
        for cell, amount in self.whole.items():
            yield None, cell, amount


def charged(entries: Iterable[LedgerEntry]) -> Iterable[tuple[datetime, ChargeLine, int]]:
    """(deduction time, line, signed µcr) of what entries charged: deductions add, corrections subtract."""
    for entry in entries:
        if entry.type not in ("deduction", "correction"):
            continue
        sign = -1 if entry.type == "correction" else 1
        for line in entry.lines:
            if line.amount:
                yield entry.at, line, sign * line.amount


def days_of(entries: Iterable[LedgerEntry]) -> dict[tuple[date, str | None], UsageDay]:
    """The usage days (account's and containers') that ``entries`` make: what the ledger gives."""
    days: dict[tuple[date, str | None], UsageDay] = {}
    for at, line, amount in charged(entries):
        for container_id in {None, line.container_id}:
            key = (at.date(), container_id)
            day = days.setdefault(key, UsageDay(at.date(), container_id))
            day.add(at.hour, cell_of(line), amount)
    return days


def dimension(cell: Cell, name: str, container_id: str | None) -> str | None:
    """The value of a grouping or filtering dimension (``label:<key>`` for a label)."""
    if name == "container":
        return container_id
    if name.startswith("label:"):
        return dict(cell.labels).get(name.removeprefix("label:"))
    value = getattr(cell, name)
    return value or None


@dataclass
class Series:
    key: str | None
    total: int = 0
    points: dict[str, int] = field(default_factory=dict)  # period -> µcr


@dataclass
class Summary:
    total: int
    by_resource: dict[str, int]
    periods: list[str]
    series: Series
    groups: list[Series]


def periods(start: date, end: date, granularity: Granularity) -> list[str]:
    """The periods of [start, end]: hours ``YYYY-MM-DDTHH``, days ``YYYY-MM-DD`` or months ``YYYY-MM``."""
    out: list[str] = []
    day = start
    while day <= end:
        if granularity == "hour":
            out.extend(f"{day.isoformat()}T{h:02d}" for h in range(24))
        elif granularity == "day":
            out.append(day.isoformat())
        elif not out or out[-1] != day.isoformat()[:7]:
            out.append(day.isoformat()[:7])
        day += timedelta(days=1)
    return out


def _period(day: date, hour: int | None, granularity: Granularity) -> str:
    if granularity == "hour":
        if hour is None:
            raise ValueError("a whole-day amount has no hour: read hour items for granularity=hour")
        return f"{day.isoformat()}T{hour:02d}"
    return day.isoformat() if granularity == "day" else day.isoformat()[:7]


def summarize(
    days: Iterable[UsageDay],
    start: date,
    end: date,
    granularity: Granularity,
    group_by: str | None = None,
    filters: Mapping[str, str] | None = None,
) -> Summary:
    """Sum the days of [start, end] into periods (and groups), keeping only the cells that match
    every filter (dimension -> value, ``label:<key>`` for labels). Groups without usage are left out."""
    filters = dict(filters or {})
    total = 0
    by_resource: dict[str, int] = dict.fromkeys(RESOURCES, 0)
    series = Series(None)
    groups: dict[str, Series] = defaultdict(lambda: Series(None))
    for day in days:
        if not start <= day.day <= end:
            continue
        for hour, cell, amount in day.amounts():
            period = _period(day.day, hour, granularity)
            if any(dimension(cell, name, day.container_id) != value for name, value in filters.items()):
                continue
            total += amount
            by_resource[cell.resource] = by_resource.get(cell.resource, 0) + amount
            series.points[period] = series.points.get(period, 0) + amount
            if group_by:
                key = dimension(cell, group_by, day.container_id)
                if key is None:
                    key = ""  # usage without that attribution (no such label, no tier, no member...)
                group = groups[key]
                group.key = key
                group.total += amount
                group.points[period] = group.points.get(period, 0) + amount
    series.total = total
    kept = sorted((g for g in groups.values() if g.total or any(g.points.values())), key=lambda g: g.key or "")
    return Summary(total, by_resource, periods(start, end, granularity), series, kept)
