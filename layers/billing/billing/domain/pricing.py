"""Charge lines: what a piece of usage costs, computed exactly and rounded once per run and month.

Intervals are cut at month boundaries, at catalog version changes and at the container's label
changes, so every piece is priced by the version in effect when it happened, belongs to one month
and carries the labels in effect then. The amounts *telescope*: within a *segment* (one month of
one catalog version, from the run's start for its time) the line of [a, b) is
``round(E(s, b)) - round(E(s, a))``, E the exact price from the segment's start s. However the usage
is cut (label changes, settlements, corrections), the parts of a segment add up to its exact price
rounded once: labels never change what is charged (billing-rules.md, "Where features meet").
Pure functions, no state changes.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from itertools import pairwise

from msgspec.structs import replace

from billing.domain.amounts import GIB, to_micro
from billing.domain.catalog import PriceCatalog
from billing.domain.clock import month_key, month_start, month_start_of_key, next_month_start
from billing.domain.model import AccountState, ChargeLine, Container, Run

Interval = tuple[datetime, datetime]


def pieces(catalog: PriceCatalog, start: datetime, end: datetime, c: Container | None = None) -> list[Interval]:
    """[start, end) cut at month boundaries, catalog version changes and the container's label changes."""
    cuts = set(catalog.split_points(start, end))
    if c is not None:
        cuts.update(at for at, _ in c.labels if start < at < end)
    boundary = next_month_start(start)
    while boundary < end:
        cuts.add(boundary)
        boundary = next_month_start(boundary)
    points = [start, *sorted(cuts), end]
    return [(a, b) for a, b in pairwise(points) if b > a]


def segment_start(catalog: PriceCatalog, moment: datetime, since: datetime | None = None) -> datetime:
    """Where the priced segment holding ``moment`` begins: the latest of its month's start, its catalog
    version's effective time and ``since`` (a run's start)."""
    starts = [month_start(moment), *(t for t in (catalog.effective_since(moment), since) if t is not None)]
    return max(t for t in starts if t <= moment)


def telescoped(rate: Decimal, before: int, after: int) -> int:
    """µcr of the units (seconds, GB-seconds) from ``before`` to ``after`` counted from a segment's
    start, at ``rate`` credits an hour: the difference of the two totals, each rounded once."""
    return to_micro(rate * Decimal(after) / 3600) - to_micro(rate * Decimal(before) / 3600)


def _seconds(a: datetime, b: datetime) -> int:
    return int((b - a).total_seconds())


def run_lines(catalog: PriceCatalog, c: Container, run: Run, start: datetime, end: datetime) -> list[ChargeLine]:
    """Container time and Code Supporter for [start, end), one line each per piece, telescoped from
    the start of the piece's segment (so a run's month costs its exact price rounded once)."""
    assert run.tier is not None
    lines = []
    for a, b in pieces(catalog, start, end, c):
        version = catalog.at(a)
        s = segment_start(catalog, a, run.started_at if run.started_at and run.started_at <= a else start)
        before, after = _seconds(s, a), _seconds(s, b)
        time_line = ChargeLine(
            resource="container", item=run.tier, month=month_key(a), container_id=c.container_id,
            run_id=run.run_id, tier=run.tier, seconds=after - before, code_supporter=run.code_supporter,
            start=a, end=b, amount=telescoped(version.tier(run.tier).credits_per_hour, before, after),
            labels=c.labels_at(a) or None, user_id=run.user_id,
        )
        lines.append(time_line)
        cs_rate = version.code_supporter_rate(run.tier)
        if run.code_supporter and cs_rate:
            lines.append(replace(time_line, item="code_supporter", amount=telescoped(cs_rate, before, after)))
    return lines


def billable_gb_at(catalog: PriceCatalog, state: AccountState, c: Container, moment: datetime) -> int:
    """GB of the container's allocated storage above the plan's free allowance at ``moment``."""
    if c.created_at is None or moment < c.created_at or (c.deleted_at and moment >= c.deleted_at):
        return 0
    if not c.active_at(moment):
        return 0
    free = catalog.at(moment).free_storage(state.plan_at(moment))
    return max(0, c.size_at(moment) - free)


def _storage_gb_seconds(
    catalog: PriceCatalog, state: AccountState, c: Container, start: datetime, end: datetime
) -> int:
    """Σ billable GB × seconds over [start, end), following every fact on the timeline."""
    facts = [
        *(at for at, _ in c.sizes),
        *(at for at, _ in c.activity),
        *(at for at, _ in state.plans),
        *([c.created_at] if c.created_at else []),
        *([c.deleted_at] if c.deleted_at else []),
    ]
    points = sorted({start, end, *(t for t in facts if start < t < end)})
    return sum(
        billable_gb_at(catalog, state, c, a) * int((b - a).total_seconds()) for a, b in pairwise(points)
    )


StorageKey = tuple[str, tuple[tuple[str, str], ...]]  # (month, labels) of a storage line


def storage_amounts(
    catalog: PriceCatalog, state: AccountState, c: Container, start: datetime, end: datetime
) -> dict[StorageKey, tuple[int, Interval]]:
    """Storage µcr for [start, end) by month and labels, each piece telescoped from its segment's
    start (so the month's storage is its exact price rounded once, whatever the cuts)."""
    out: dict[StorageKey, tuple[int, Interval]] = {}
    for a, b in pieces(catalog, start, end, c):
        rate = catalog.at(a).storage_credits_per_gb_hour
        s = segment_start(catalog, a)
        before = _storage_gb_seconds(catalog, state, c, s, a) if s < a else 0
        value = telescoped(rate, before, before + _storage_gb_seconds(catalog, state, c, a, b))
        key = (month_key(a), tuple(sorted(c.labels_at(a).items())))
        if key in out:
            previous, (first, _) = out[key]
            out[key] = (previous + value, (first, b))
        else:
            out[key] = (value, (a, b))
    return out


def storage_line(
    catalog: PriceCatalog, state: AccountState, c: Container, key: StorageKey, amount: int, span: Interval
) -> ChargeLine:
    a, b = span
    month, labels = key
    return ChargeLine(
        resource="storage", item="storage", amount=amount, month=month, container_id=c.container_id,
        seconds=int((b - a).total_seconds()), storage_gb=c.size_at(a),
        billable_gb=billable_gb_at(catalog, state, c, a), start=a, end=b, labels=dict(labels) or None,
        user_id=c.user_id,
    )


def traffic_line(catalog: PriceCatalog, c: Container, run: Run, month: str, at: datetime) -> ChargeLine:
    """A run's reported traffic of one month: only its bytes beyond the allowance are billed (with
    the container's labels when it is settled, at ``at``)."""
    rate = catalog.at(month_start_of_key(month)).traffic_credits_per_gb
    billable = run.pending_billable.get(month, 0)
    return ChargeLine(
        resource="traffic", item="traffic", month=month, container_id=c.container_id, run_id=run.run_id,
        traffic_bytes=run.pending_traffic[month], amount=to_micro(rate * Decimal(billable) / GIB),
        labels=c.labels_at(at) or None, user_id=run.user_id,
    )


def billable_traffic(free_bytes: int, used_before: int, reported: int) -> int:
    """The part of ``reported`` bytes that lies beyond the month's allowance."""
    return max(0, used_before + reported - free_bytes) - max(0, used_before - free_bytes)


def ai_line(
    catalog: PriceCatalog, at: datetime, feature: str, model: str, input_tokens: int, output_tokens: int,
    container_id: str | None, labels: dict[str, str] | None = None, user_id: str | None = None,
) -> ChargeLine:
    """One AI use at the token prices of the model it names (an unknown model is an error)."""
    price = catalog.at(at).model(model)
    return ChargeLine(
        resource="ai", item=feature, month=month_key(at), container_id=container_id, model=model,
        input_tokens=input_tokens, output_tokens=output_tokens, start=at, end=at, labels=labels or None,
        amount=to_micro(price.input * input_tokens + price.output * output_tokens), user_id=user_id,
    )
