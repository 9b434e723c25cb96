"""The usage report (``GET /v1/usage`` and ``/v1/usage.csv``): any range of whole UTC days up to 366,
by hour, day or month, grouped and filtered by resource, container, tier, model, feature or a label,
in credits or dollars. Reads the day aggregates (:mod:`billing.store.usage`) and the balance item:
never the ledger. Decisions where the contract is silent are in the README ("Usage report").
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from billing.domain.amounts import cents_of_micro, format_credits, money
from billing.domain.clock import format_time, month_start_of_key, next_month_start
from billing.domain.errors import InvalidInput, UnknownAccount
from billing.domain.model import LABEL_KEY
from billing.domain.projection import project
from billing.domain.usage import DIMENSIONS, MAX_DAYS, Granularity, Series, Summary, UsageDay, summarize
from billing.store import queries, usage
from billing.store.ledger import Ledger

_MONTH = re.compile(r"^[0-9]{4}-[0-9]{2}$")
DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")  # ASCII digits only (\d would take any script's)


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
    return start.date(), (next_month_start(start) - timedelta(days=1)).date()


def check_grouping(q: UsageQuery) -> None:
    names = [q.group_by] if q.group_by else []
    for name in [*names, *q.filters]:
        dimension = name.removeprefix("label:")
        if name.startswith("label:"):
            if not LABEL_KEY.match(dimension):
                raise InvalidInput(f"unknown label key {dimension!r}: keys are [a-z][a-z0-9_]{{0,31}}")
        elif name not in DIMENSIONS:
            raise InvalidInput(f"unknown group_by {name!r}: one of {', '.join(DIMENSIONS)} or label:<key>")


def _read_days(ledger: Ledger, account_id: str, q: UsageQuery, first: date, last: date) -> list[UsageDay]:
    if "container" in q.filters:
        return usage.container_days(ledger.models, account_id, q.filters["container"], first, last)
    if q.group_by == "container":
        return [
            day
            for cid in queries.container_ids(ledger.models, account_id)
            for day in usage.container_days(ledger.models, account_id, cid, first, last)
        ]
    return usage.account_days(ledger.models, account_id, first, last)


class Amounts:
    """Credits or dollars: each figure converted on its own (rounded once, half-up, to the cent)."""

    def __init__(self, unit: str, credit_price_usd: Decimal) -> None:
        self.unit, self.price = unit, credit_price_usd

    def __call__(self, micro: int) -> Any:
        return money(cents_of_micro(micro, self.price)) if self.unit == "usd" else format_credits(micro)


def _series(points: list[str], values: Mapping[str, int], cumulative: bool, conv: Amounts) -> list[dict[str, Any]]:
    out, running = [], 0
    for period in points:
        amount = values.get(period, 0)
        running += amount
        out.append({"date": period, "amount": conv(running if cumulative else amount), "cumulative": conv(running)})
    return out


def usage_report(ledger: Ledger, account_id: str, q: UsageQuery, now: datetime) -> dict[str, Any]:
    """The usage report of ``q`` as the API answers it (see interfaces.md)."""
    if q.unit not in ("credits", "usd"):
        raise InvalidInput("unit must be credits or usd")
    check_grouping(q)
    today = now.date()
    first, last = date_range(q, today)
    state = ledger.load(account_id)
    if state is None:
        raise UnknownAccount(f"no account {account_id}")
    shown_last = min(last, today)
    days = _read_days(ledger, account_id, q, first, shown_last) if first <= shown_last else []
    summary: Summary = summarize(days, first, shown_last, q.granularity, q.group_by, q.filters)
    conv = Amounts(q.unit, Decimal(state.credit_price_usd))
    elapsed = max(0, (shown_last - first).days + 1)
    average = int((Decimal(summary.total) / elapsed).quantize(Decimal(1), rounding=ROUND_HALF_UP)) if elapsed else 0
    projected = None
    if first <= today <= last and average > 0:
        remaining = project(state, ledger.catalog, now).remaining
        seconds = (Decimal(max(remaining, 0)) * 86400 / average).to_integral_value(rounding=ROUND_DOWN)
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
        "series": _series(summary.periods, summary.series.points, q.cumulative, conv),
        "days_elapsed": elapsed,
        "average_daily": conv(average),
        "projected_run_out": projected,
        "credit_price_usd": state.credit_price_usd,
    }
    if q.group_by:
        report["groups"] = [_group(g, summary.periods, q.cumulative, conv) for g in summary.groups]
    return report


def _group(group: Series, points: list[str], cumulative: bool, conv: Amounts) -> dict[str, Any]:
    return {"key": group.key, "total": conv(group.total), "series": _series(points, group.points, cumulative, conv)}


def usage_csv(report: Mapping[str, Any]) -> str:
    """The same report as CSV: one row per period (and group), amount and running total."""
    def cell(value: Any) -> str:
        if isinstance(value, dict):  # money: cents as dollars
            sign, cents = ("-" if value["cents"] < 0 else ""), abs(value["cents"])
            return f"{sign}{cents // 100}.{cents % 100:02d}"
        return str(value)

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    unit = report["unit"]
    if report.get("groups") is not None:
        writer.writerow(["period", report["group_by"], f"amount_{unit}", f"cumulative_{unit}"])
        for group in report["groups"]:
            for point in group["series"]:
                writer.writerow([point["date"], group["key"], cell(point["amount"]), cell(point["cumulative"])])
    else:
        writer.writerow(["period", f"amount_{unit}", f"cumulative_{unit}"])
        for point in report["series"]:
            writer.writerow([point["date"], cell(point["amount"]), cell(point["cumulative"])])
    return out.getvalue()
