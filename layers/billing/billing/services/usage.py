"""The usage report (``GET /v1/usage`` and ``/v1/usage.csv``): any range of whole UTC days up to 366,
by hour, day or month, grouped and filtered by resource, container, tier, model, feature or a label,
in credits or dollars. Reads the usage aggregates of the granularity asked
(:mod:`billing.store.usage_reads`, at most 1,000 items or 5 MB) and the balance item: never the ledger.
Decisions where the contract is silent are in the README ("Usage report", "Usage aggregates").
"""

from __future__ import annotations

import calendar
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any, Literal

from billing.domain.amounts import cents_of_micro, format_credits, money
from billing.domain.clock import format_time, month_start_of_key, parse_time
from billing.domain.errors import InvalidInput, UnknownAccount
from billing.domain.model import LABEL_KEY, AccountState
from billing.domain.projection import project
from billing.domain.spreadsheet import csv_text
from billing.domain.usage import DIMENSIONS, MAX_DAYS, Granularity, Series, Summary, UsageDay, summarize
from billing.store import usage_reads
from billing.store.ledger import Ledger

_MONTH = re.compile(r"^[0-9]{4}-[0-9]{2}$")
DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")  # ASCII digits only (\d would take any script's)
# Every answer is bounded (billing-rules.md, "Where features meet"): Lambda answers at most 6 MB.
MAX_ANSWER_BYTES = 5 * 2**20
MAX_ITEMS_READ = 1_000
NARROW = "ask for a coarser granularity (day or month), a shorter range, or a filter (e.g. label.<key>=<value>)"
Form = Literal["json", "csv"]


@dataclass(frozen=True)
class UsageQuery:
    """What a caller asks (already typed by the route; checked together here)."""

    month: str | None = None
    from_: str | None = None
    to: str | None = None
    granularity: Granularity = "day"
    cumulative: bool = True
    unit: str = "credits"
    group_by: str | None = None
    filters: dict[str, str] = field(default_factory=dict)  # dimension or label:<key> -> value


def parse_day(value: str, name: str = "date") -> date:
    """A UTC day, ``YYYY-MM-DD``, or InvalidInput naming ``name``."""
    if not DAY.match(value):
        raise InvalidInput(f"{name} must be YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} must be a date (YYYY-MM-DD)") from None


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # the earliest instant a report or log range names


def parse_bound(value: str, name: str, end_of_day: bool) -> datetime:
    """A date (``YYYY-MM-DD``; as ``to`` the day's last second) or an ISO-8601 UTC time."""
    if DAY.match(value):
        day = parse_day(value, name)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return moment + timedelta(days=1, seconds=-1) if end_of_day else moment
    try:
        return parse_time(value)
    except ValueError:
        raise InvalidInput(f"{name} must be YYYY-MM-DD or an ISO-8601 UTC time") from None


def date_range(q: UsageQuery, today: date) -> tuple[date, date]:
    """[first, last] day asked for: a month (the current one by default), or from/to."""
    if q.month and (q.from_ or q.to):
        raise InvalidInput("give either month or from/to, not both")
    if q.from_ or q.to:
        if not (q.from_ and q.to):
            raise InvalidInput("from and to go together")
        first, last = parse_day(q.from_, "from"), parse_day(q.to, "to")
        if last < first:
            raise InvalidInput("from must not be after to")
        if (last - first).days + 1 > MAX_DAYS:
            raise InvalidInput(f"a range is at most {MAX_DAYS} days")
        return first, last
    if q.month:
        if not _MONTH.match(q.month):
            raise InvalidInput("month must be YYYY-MM")
        try:
            start = month_start_of_key(q.month)
        except ValueError:
            raise InvalidInput("month must be YYYY-MM") from None
    else:
        start = datetime(today.year, today.month, 1, tzinfo=UTC)
    # The month's last day from the calendar: the day after 9999-12-31 is not a date.
    last_day = calendar.monthrange(start.year, start.month)[1]
    return start.date(), date(start.year, start.month, last_day)


def check_grouping(q: UsageQuery) -> None:
    names = [q.group_by] if q.group_by else []
    for name in [*names, *q.filters]:
        dimension = name.removeprefix("label:")
        if name.startswith("label:"):
            if not LABEL_KEY.match(dimension):
                raise InvalidInput(f"unknown label key {dimension!r}: keys are [a-z][a-z0-9_]{{0,31}}")
        elif name not in DIMENSIONS:
            raise InvalidInput(f"unknown group_by {name!r}: one of {', '.join(DIMENSIONS)} or label:<key>")


def _read_days(
    ledger: Ledger, state: AccountState, q: UsageQuery, first: date, last: date
) -> list[UsageDay]:
    """The aggregate items of the report, of the granularity asked (a day's hours for ``hour``, a
    month's days otherwise): the account's, one container's, or every container's in one query;
    a 400 that says how to narrow it past MAX_ITEMS_READ items or 5 MB read."""
    budget = usage_reads.ReadBudget(MAX_ITEMS_READ, MAX_ANSWER_BYTES)
    try:
        return usage_reads.read_days(
            ledger.models, state.account_id, first, last, q.granularity == "hour", budget,
            container_id=q.filters.get("container"), by_container=q.group_by == "container",
            spills=bool(state.usage_spills), legacy=state.usage_legacy,
        )
    except usage_reads.ReadLimit as limit:
        hint = NARROW if q.group_by != "container" else (
            "ask for a shorter range, filter by container (container_id=) or group by something else")
        raise InvalidInput(
            f"this report would read more than {MAX_ITEMS_READ} items (aggregates) or 5 MB "
            f"({limit.items} items, {limit.bytes / 2**20:.1f} MB read so far): {hint}") from None


class Amounts:
    """Credits or dollars: each figure converted on its own (rounded once, half-up, to the cent)."""

    def __init__(self, unit: str, credit_price_usd: Decimal) -> None:
        self.unit, self.price = unit, credit_price_usd

    def exact(self, micro: int) -> int:
        """µcr in the unit's smallest step: µcr, or whole cents (rounded once, half-up)."""
        return cents_of_micro(micro, self.price) if self.unit == "usd" else micro

    def show(self, value: int) -> Any:
        """A value of :meth:`exact` as the API writes it."""
        return money(value) if self.unit == "usd" else format_credits(value)

    def __call__(self, micro: int) -> Any:
        return self.show(self.exact(micro))


def _series(points: list[str], values: Mapping[str, int], conv: Amounts) -> list[dict[str, Any]]:
    """Each period's own amount and the running sum, whatever ``cumulative`` asks the page to draw.

    In dollars each cumulative is its running µcr rounded once (so the last is the total) and each
    amount the step from the previous cumulative (so the amounts add up to it exactly); a period's
    amount may then differ by a cent from its own amount rounded alone. In credits nothing rounds."""
    out, running, shown = [], 0, 0
    for period in points:
        running += values.get(period, 0)
        cumulative = conv.exact(running)
        out.append({"date": period, "amount": conv.show(cumulative - shown), "cumulative": conv.show(cumulative)})
        shown = cumulative
    return out


def _answer_bytes(summary: Summary, conv: Amounts, form: Form) -> int:
    """An upper bound of the answer's size, from the periods, the groups and the largest figure,
    before any of it is written: every amount and running sum is at most the sum of the absolute
    amounts of its series (a cent more in dollars, for the rounding of the steps)."""
    series = [summary.series, *summary.groups]
    largest = max(sum(abs(v) for v in s.points.values()) for s in series)
    if conv.unit == "usd":
        digits = len(str(conv.exact(largest) + 1)) + 1  # and a sign
        value = digits + (len('{"currency":"USD","cents":}') if form == "json" else 3)  # CSV: "-12.34"
    else:
        value = len(format_credits(largest)) + 1 + (2 if form == "json" else 0)  # a sign, JSON's quotes
    periods = sum(len(p) for p in summary.periods)
    if form == "json":
        point = len('{"date":"","amount":,"cumulative":},')
        keys = sum(len(json.dumps(g.key, ensure_ascii=False).encode()) + 40 for g in summary.groups)
        return len(series) * (len(summary.periods) * (point + 2 * value) + periods) + keys + 2048
    row = len(",,\r\n") + 2 * value
    if not summary.groups:
        return len(summary.periods) * row + periods + 128
    keys = sum(len(csv_text([[g.key or ""]]).encode()) for g in summary.groups)  # as written: quoted, escaped
    return len(summary.groups) * (len(summary.periods) * (row + 1) + periods) + len(summary.periods) * keys + 128


def usage_report(
    ledger: Ledger, account_id: str, q: UsageQuery, now: datetime, form: Form = "json", user: str | None = None
) -> dict[str, Any]:
    """The usage report of ``q`` as the API answers it (see interfaces.md), as JSON or (``form``) the
    CSV of :func:`usage_csv`: a 400 that says how to narrow it when that would be over 5 MB.

    ``user``: a forced filter on that user's usage, whatever ``q`` asks (a ``member`` reads only their
    own usage: billing-rules.md, "Organizations")."""
    if user is not None:
        q = replace(q, filters={**q.filters, "user": user})
    if q.unit not in ("credits", "usd"):
        raise InvalidInput("unit must be credits or usd")
    check_grouping(q)
    today = now.date()
    first, last = date_range(q, today)
    state = ledger.load(account_id)
    if state is None:
        raise UnknownAccount(f"no account {account_id}")
    shown_last = min(last, today)
    days = _read_days(ledger, state, q, first, shown_last) if first <= shown_last else []
    summary: Summary = summarize(days, first, shown_last, q.granularity, q.group_by, q.filters)
    conv = Amounts(q.unit, Decimal(state.credit_price_usd))
    size = _answer_bytes(summary, conv, form)
    if size > MAX_ANSWER_BYTES:
        raise InvalidInput(f"the report would be larger than 5 MB (about {size / 2**20:.1f} MB, "
                           f"{len(summary.periods)} periods x {1 + len(summary.groups)} series): {NARROW}")
    elapsed = max(0, (shown_last - first).days + 1)
    average = int((Decimal(summary.total) / elapsed).quantize(Decimal(1), rounding=ROUND_HALF_UP)) if elapsed else 0
    projected = None
    if first <= today <= last and average > 0:
        remaining = project(state, ledger.catalog, now).remaining
        seconds = (Decimal(max(remaining, 0)) * 86400 / average).to_integral_value(rounding=ROUND_DOWN)
        # A run-out past year 9999 is none in sight (null, as without usage), not a time to write.
        if seconds <= (datetime.max.replace(tzinfo=UTC) - now).total_seconds():
            projected = format_time(now + timedelta(seconds=int(seconds)))
    report: dict[str, Any] = {
        "account_id": account_id,
        "month": q.month or (first.isoformat()[:7] if not (q.from_ or q.to) else None),
        "from": first.isoformat(),
        "to": last.isoformat(),
        "granularity": q.granularity,
        "unit": q.unit,
        "cumulative_mode": q.cumulative,
        "group_by": q.group_by,
        "filters": dict(q.filters),
        "total": conv(summary.total),
        "by_resource": {r: conv(v) for r, v in summary.by_resource.items()},
        "series": _series(summary.periods, summary.series.points, conv),
        "days_elapsed": elapsed,
        "average_daily": conv(average),
        "projected_run_out": projected,
        "credit_price_usd": state.credit_price_usd,
    }
    if q.group_by:
        report["groups"] = [_group(g, summary.periods, conv) for g in summary.groups]
    return report


def _group(group: Series, points: list[str], conv: Amounts) -> dict[str, Any]:
    return {"key": group.key, "total": conv(group.total), "series": _series(points, group.points, conv)}


def usage_csv(report: Mapping[str, Any]) -> str:
    """The same report as CSV: one row per period (and group), amount and running total."""
    def cell(value: Any) -> str:
        if isinstance(value, dict):  # money: cents as dollars
            sign, cents = ("-" if value["cents"] < 0 else ""), abs(value["cents"])
            return f"{sign}{cents // 100}.{cents % 100:02d}"
        return str(value)

    unit = report["unit"]
    if report.get("groups") is not None:
        header = ["period", report["group_by"], f"amount_{unit}", f"cumulative_{unit}"]
        rows = ([point["date"], group["key"], cell(point["amount"]), cell(point["cumulative"])]
                for group in report["groups"] for point in group["series"])
    else:
        header = ["period", f"amount_{unit}", f"cumulative_{unit}"]
        rows = ([point["date"], cell(point["amount"]), cell(point["cumulative"])] for point in report["series"])
    return csv_text([header, *rows])
