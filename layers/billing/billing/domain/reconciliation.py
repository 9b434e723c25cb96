"""Reconciliation's checks, pure: an account's stored balance, container items and usage day items
against what its ledger entries give (``../shared/spec/billing-rules.md``, "Credit lots"):

* conservation, on the balance (granted = spent + expired + refunded + available, and charged =
  spent + debt) and on what the ledger gives;
* the balance's totals, debt and every lot it keeps (granted, refunded, remaining and expired)
  against the ledger; a lot past its expiry is closed; the month's charges against the month's
  deductions less corrections;
* the balance's summable aggregates (the containers' count, open accruals, pending traffic, the
  containers listed) against the container items, and each container's part against its own runs
  and storage (:func:`billing.domain.forecast.contribution`);
* the usage aggregates' hours against the ledger's charge lines (:func:`billing.domain.usage.days_of`),
  and the month rollups' days against those hours (so against the ledger too);
* what the balance keeps of each user's month (``member_spent``) against their charge lines of that month.

The reads are :mod:`billing.store.reconcile_reads`; the run and the command :mod:`billing.services.reconcile`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

from billing.domain import forecast
from billing.domain.catalog import PriceCatalog
from billing.domain.clock import SECOND, format_time, month_key
from billing.domain.model import SCHEMA, AccountState, Accrual, Container, LedgerEntry
from billing.domain.usage import Cell, charged, days_of

Usage = dict[tuple[date, str | None], dict[tuple[int, Cell], int]]  # (day, container): {(hour, cell): µcr}
DailyUsage = dict[tuple[date, str | None], dict[Cell, int]]  # (day, container): {cell: µcr}, from month rollups


@dataclass
class AccountItems:
    """What an account's check reads: its balance, containers, ledger and usage, as one snapshot."""

    state: AccountState
    containers: list[Container]
    entries: list[LedgerEntry]
    usage: Usage
    daily: DailyUsage | None = None  # None: not read (the rollups are not checked)


def ledger_spending(entries: Iterable[LedgerEntry]) -> dict[tuple[str, str], int]:
    """What each user's charge lines deducted per month (less corrections), zeros left out."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for _at, line, amount in charged(entries):
        if line.user_id:
            out[(line.month, line.user_id)] += amount
    return {key: value for key, value in out.items() if value}


def check_spending(state: AccountState, derived: dict[tuple[str, str], int]) -> list[str]:
    """What the balance keeps of each user's month (the months it keeps: this one and the one
    before, like ``month_charged``) against their charge lines of that month."""
    months = {month_key(state.as_of), month_key(state.as_of - SECOND)}
    stored = {(month, user): value for month, users in state.member_spent.items() if month in months
              for user, value in users.items() if value}
    derived = {key: value for key, value in derived.items() if key[0] in months}
    return [
        f"member spending {month} of {user}: stored {stored.get((month, user), 0)} != ledger "
        f"{derived.get((month, user), 0)}"
        for month, user in sorted(set(stored) | set(derived))
        if stored.get((month, user), 0) != derived.get((month, user), 0)
    ]


def ledger_usage(entries: Iterable[LedgerEntry]) -> Usage:
    """What the ledger's charge lines give, in the shape of :func:`stored_usage`."""
    days: Usage = {}
    for (day, container), usage_day in days_of(entries).items():
        cells = {(hour, cell): amount for hour, hc in usage_day.hours.items() for cell, amount in hc.items() if amount}
        if cells:
            days[(day, container)] = cells
    return days


@dataclass
class LotFigures:
    """One lot as the ledger tells it: granted, used (spent less given back) and refunded."""

    granted: int = 0
    used: int = 0
    refunded: int = 0
    has_grant: bool = False

    @property
    def unspent(self) -> int:
        """Remaining plus written off: what was neither spent nor refunded."""
        return self.granted - self.used - self.refunded


@dataclass
class LedgerFigures:
    """Sums of an account's ledger entries (order does not matter: every figure is a sum)."""

    granted: int = 0
    spent: int = 0
    refunded: int = 0
    debt: int = 0
    charged: int = 0  # from the charge lines: deductions' lines less corrections
    charged_by_amounts: int = 0  # deductions paid + debt incurred - corrections
    lots: dict[str, LotFigures] = field(default_factory=lambda: defaultdict(LotFigures))
    month_charged: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    problems: list[str] = field(default_factory=list)


def ledger_figures(entries: Iterable[LedgerEntry]) -> LedgerFigures:
    f = LedgerFigures()
    for e in entries:
        paid = sum(p.amount for p in e.paid_by)
        lines = sum(line.amount for line in e.lines)
        if e.type == "grant":
            f.granted += e.amount
            lot = f.lots[e.lot_id or ""]
            lot.granted += e.amount
            lot.has_grant = True
        elif e.type == "deduction":
            if paid != e.amount:
                f.problems.append(f"entry {e.entry_id}: deduction of {e.amount} paid by lots {paid}")
            f.charged += lines
            f.charged_by_amounts += e.amount
            f.spent += paid
            f.month_charged[month_key(e.at)] += lines
        elif e.type == "debt" and e.reason == "debt_repaid":
            if paid != e.amount:
                f.problems.append(f"entry {e.entry_id}: debt repaid {e.amount} by lots {paid}")
            f.debt -= e.amount
            f.spent += paid
        elif e.type == "debt":
            f.debt += e.amount
            f.charged_by_amounts += e.amount
        elif e.type == "correction":
            if lines != e.amount:
                f.problems.append(f"entry {e.entry_id}: correction of {e.amount} with lines of {lines}")
            if paid > e.amount:
                f.problems.append(f"entry {e.entry_id}: correction of {e.amount} gave back {paid}")
            f.charged -= e.amount
            f.charged_by_amounts -= e.amount
            f.spent -= paid
            f.debt -= e.amount - paid  # the part not given back to lots forgave debt
            for line in e.lines:  # in the month the corrected usage was charged in
                f.month_charged[line.month] -= line.amount
        elif e.type == "refund":
            f.refunded += e.amount
            f.lots[e.lot_id or ""].refunded += e.amount
        sign = -1 if e.type == "correction" else 1
        if e.type in ("deduction", "correction") or (e.type == "debt" and e.reason == "debt_repaid"):
            for part in e.paid_by:
                f.lots[part.lot_id].used += sign * part.amount
    if f.charged != f.charged_by_amounts:
        f.problems.append(f"charge lines {f.charged} != deductions and debt {f.charged_by_amounts}")
    return f


def _normal(accrual: Accrual) -> Accrual:
    """Without empty groups (an aggregate may keep a group that came back to zero)."""
    return Accrual().plus(accrual)


def check_books(state: AccountState, figures: LedgerFigures) -> list[str]:
    """Conservation on the balance and on the ledger, and the balance's totals and lots against
    what the ledger gives."""
    reasons = list(figures.problems)
    t = state.totals
    open_lots = [lot for lot in state.lots if not lot.closed]
    available = sum(lot.remaining for lot in open_lots)
    if t.granted != t.spent + t.expired + t.refunded + available:
        reasons.append(
            f"balance not conserved: granted {t.granted} != spent {t.spent} + expired {t.expired}"
            f" + refunded {t.refunded} + available {available}"
        )
    if t.charged != t.spent + state.debt:
        reasons.append(f"balance not conserved: charged {t.charged} != spent {t.spent} + debt {state.debt}")
    open_ids = {lot.lot_id for lot in open_lots}
    available_l = sum(figures.lots[i].unspent for i in open_ids)
    expired_l = sum(lot.unspent for lot_id, lot in figures.lots.items() if lot_id not in open_ids)
    if figures.granted != figures.spent + expired_l + figures.refunded + available_l:
        reasons.append(
            f"ledger not conserved: granted {figures.granted} != spent {figures.spent} + expired {expired_l}"
            f" + refunded {figures.refunded} + available {available_l}"
        )
    if figures.charged != figures.spent + figures.debt:
        reasons.append(
            f"ledger not conserved: charged {figures.charged} != spent {figures.spent} + debt {figures.debt}"
        )
    for name, stored, derived in (
        ("granted", t.granted, figures.granted),
        ("spent", t.spent, figures.spent),
        ("expired", t.expired, expired_l),
        ("refunded", t.refunded, figures.refunded),
        ("charged", t.charged, figures.charged),
        ("debt", state.debt, figures.debt),
        ("available", available, available_l),
    ):
        if stored != derived:
            reasons.append(f"{name}: stored {stored} != ledger {derived}")
    for lot in state.lots:
        known = figures.lots.get(lot.lot_id)
        if known is None or (not known.has_grant and not lot.lot_id.startswith("correction-")):
            reasons.append(f"lot {lot.lot_id}: no grant in the ledger")
            continue
        if known.has_grant and lot.granted != known.granted:
            reasons.append(f"lot {lot.lot_id}: granted {lot.granted} != ledger {known.granted}")
        if lot.refunded != known.refunded:
            reasons.append(f"lot {lot.lot_id}: refunded {lot.refunded} != ledger {known.refunded}")
        if lot.remaining + lot.expired != known.unspent:
            reasons.append(
                f"lot {lot.lot_id}: remaining {lot.remaining} + expired {lot.expired} != ledger {known.unspent}"
            )
        if lot.remaining < 0 or (lot.closed and lot.remaining) or (not lot.closed and lot.expired):
            reasons.append(f"lot {lot.lot_id}: remaining {lot.remaining}, expired {lot.expired}, closed {lot.closed}")
        if not lot.closed and lot.expires_at is not None and lot.expires_at <= state.as_of:
            reasons.append(f"lot {lot.lot_id}: open after its expiry {format_time(lot.expires_at)}")
    if state.debt < 0:
        reasons.append(f"debt {state.debt} is negative")
    for month in sorted({month_key(state.as_of), month_key(state.as_of - SECOND)}):
        stored_month, derived_month = state.month_charged.get(month, 0), figures.month_charged.get(month, 0)
        if stored_month != derived_month:
            reasons.append(f"month {month} charged: stored {stored_month} != ledger {derived_month}")
    return reasons


def check_containers(state: AccountState, containers: Sequence[Container], catalog: PriceCatalog) -> list[str]:
    """The balance's aggregates against the container items, and each container's part against
    what its own facts give."""
    reasons: list[str] = []
    total, counted, listed = Accrual(), 0, []
    for c in containers:
        contribution = forecast.contribution(catalog, c)
        if _normal(c.accrual) != _normal(contribution):
            reasons.append(f"container {c.container_id}: stored accrual differs from its runs and storage")
        should_count = c.created_at is not None and c.deleted_at is None
        if c.counted != should_count:
            reasons.append(f"container {c.container_id}: counted {c.counted}, should be {should_count}")
        counted += should_count
        total = total.plus(contribution)
        if should_count or c.runs or not contribution.empty:
            listed.append(c.container_id)
    if state.containers_count != counted:
        reasons.append(f"containers_count: stored {state.containers_count} != {counted} container items")
    if _normal(state.accrual) != _normal(total):
        reasons.append("open accruals: the balance's sum differs from the container items'")
    if state.container_ids is not None and sorted(state.container_ids) != sorted(listed):
        reasons.append(f"container_ids: stored {sorted(state.container_ids)} != {sorted(listed)}")
    return reasons


def check_usage(stored: Usage, derived: Usage) -> list[str]:
    reasons = []
    for day, container in sorted(set(stored) | set(derived), key=lambda k: (k[0], k[1] or "")):
        mine, theirs = stored.get((day, container), {}), derived.get((day, container), {})
        if mine != theirs:
            cells = sum(1 for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            scope = f"container {container}" if container else "account"
            reasons.append(
                f"usage {day.isoformat()} ({scope}): {cells} cells differ, stored {sum(mine.values())}"
                f" != ledger {sum(theirs.values())}"
            )
    return reasons


def check_rollups(hourly: Usage, daily: DailyUsage) -> list[str]:
    """The month rollups' days against the day items' hours: the same µcr per day, scope and cell."""
    summed: DailyUsage = {}
    for key, cells in hourly.items():
        by_cell = summed.setdefault(key, {})
        for (_, cell), amount in cells.items():
            by_cell[cell] = by_cell.get(cell, 0) + amount
    reasons = []
    for day, container in sorted(set(summed) | set(daily), key=lambda k: (k[0], k[1] or "")):
        mine = {c: v for c, v in daily.get((day, container), {}).items() if v}
        theirs = {c: v for c, v in summed.get((day, container), {}).items() if v}
        if mine != theirs:
            differ = sum(1 for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            scope = f"container {container}" if container else "account"
            reasons.append(f"usage {day.isoformat()} ({scope}): {differ} cells of the month rollup differ, "
                           f"rollup {sum(mine.values())} != hours {sum(theirs.values())}")
    return reasons


def check_account(items: AccountItems, catalog: PriceCatalog) -> list[str]:
    """Every reason the account's stored items differ from its ledger (empty: it reconciles)."""
    if items.state.schema < SCHEMA:
        return [f"schema {items.state.schema} balance item: run python -m billing.store.migration"]
    return (
        check_books(items.state, ledger_figures(items.entries))
        + check_containers(items.state, items.containers, catalog)
        + check_usage(items.usage, ledger_usage(items.entries))
        + (check_rollups(items.usage, items.daily) if items.daily is not None else [])
        + check_spending(items.state, ledger_spending(items.entries))
    )
