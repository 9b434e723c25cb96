"""The settlement engine: pure billing rules applied to one account's state. No I/O.

A :class:`Book` wraps an :class:`~billing.model.AccountState` for one event (its ``event_id`` seeds
the ids of every ledger entry it writes, so a retried event writes the very same entries). It rolls
the account over any month boundary first (a boundary is a fact of time), applies the event, and
collects ledger entries, aggregate deltas and outbound events for the ledger to commit atomically.

Decisions where the rules are silent (also in the README):
- The account's clock is event time: ``state.as_of`` is the latest event time applied. An event at
  or after it first rolls the account to its time; an older (late) event is applied in the past:
  its usage is priced and attributed at its own time and paid as of that time (a lot that has
  expired since still pays from its written-off remainder), then from today's lots, then debt.
- ``traffic_bytes`` of ``Container Stopped`` is, like a traffic report, the traffic since the run's
  last report (since its start when there was none): every event adds its bytes in its own month.
- Reported traffic is deducted with the run's next settlement (its stop, a month boundary, a plan
  change or an overuse settlement), priced against the allowance of the month it was reported in.
- A correction (something billed that a late event shows should not have been) is computed
  exactly for the over-billed interval and rounded once per line; it forgives debt first, then
  gives credits back to the lots in reverse burn order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import pairwise

from msgspec.structs import replace

from billing import burn_down
from billing.amounts import GIB, format_credits, to_micro
from billing.catalog import PriceCatalog
from billing.clock import SECOND, add_one_month, month_key, month_start, month_start_of_key, next_month_start
from billing.errors import UnknownAccount
from billing.model import (
    AccountState,
    ChargeLine,
    Container,
    CreditLot,
    LedgerEntry,
    LotAmount,
    LotKind,
    OutboundEvent,
    Plan,
    Run,
    clone,
)

Interval = tuple[datetime, datetime]
CLOSED_RUN_MEMORY = timedelta(days=3)  # late events arrive within 24 h; keep a margin
PRUNE_AFTER = timedelta(days=40)


class Book:
    """One account's state being changed by one event."""

    def __init__(self, state: AccountState, catalog: PriceCatalog, event_id: str) -> None:
        self.state = state
        self.catalog = catalog
        self.event_id = event_id
        self.entries: list[LedgerEntry] = []
        self.outbox: list[OutboundEvent] = []
        self._lines: list[ChargeLine] = []
        self._corrections: list[ChargeLine] = []
        self._seq = 0

    # ------------------------------------------------------------------ clock and months

    def advance_to(self, moment: datetime) -> None:
        """Roll the account forward to ``moment``: settle at each month boundary, expire, grant."""
        state = self.state
        while moment >= next_month_start(state.as_of):
            boundary = next_month_start(state.as_of)
            # Usage up to the boundary is settled as of the month's last second.
            self.settle_everything(boundary)
            self.flush(boundary - SECOND, "month_end_settlement")
            self._expire(boundary)
            self._grant_monthly(boundary)
            state.as_of = boundary
            self._prune(boundary)
        self._expire(moment)
        if moment > state.as_of:
            state.as_of = moment

    def _expire(self, until: datetime) -> None:
        for lot in burn_down.expire_lots(self.state, until):
            if lot.expired:
                assert lot.expires_at is not None
                self._entry("expiry", lot.expired, lot.expires_at, f"{lot.kind}_credits_expired", lot_id=lot.lot_id)

    def _grant_monthly(self, month_begins: datetime) -> None:
        plan = self.state.plan_at(month_begins)
        amount = self.catalog.at(month_begins).monthly_micro(plan)
        self.grant(
            "monthly",
            amount,
            month_begins,
            next_month_start(month_begins),
            f"monthly_credits_{plan}",
            lot_id=f"monthly-{month_key(month_begins)}",
        )

    def _prune(self, now: datetime) -> None:
        """Forget what no late event can touch any more (the ledger keeps the history)."""
        state = self.state
        horizon = now - PRUNE_AFTER
        state.lots = [
            lot
            for lot in state.lots
            if not ((lot.closed or lot.remaining == 0) and (lot.expires_at or lot.granted_at) < horizon)
        ]
        state.containers = {
            cid: c for cid, c in state.containers.items() if not (c.deleted_at and c.deleted_at < horizon)
        }
        keep = {month_key(now), month_key(now - SECOND)}
        state.traffic_used = {m: b for m, b in state.traffic_used.items() if m in keep}
        for c in state.containers.values():
            c.closed_runs = {r: t for r, t in c.closed_runs.items() if t >= now - CLOSED_RUN_MEMORY}
        state.check_ins = state.check_ins[-40:]

    # ------------------------------------------------------------------ pricing

    def _pieces(self, start: datetime, end: datetime) -> list[Interval]:
        """Cut [start, end) at month boundaries and catalog version changes."""
        cuts = sorted({*self._month_cuts(start, end), *self.catalog.split_points(start, end)})
        points = [start, *cuts, end]
        return [(a, b) for a, b in pairwise(points) if b > a]

    @staticmethod
    def _month_cuts(start: datetime, end: datetime) -> list[datetime]:
        cuts = []
        b = next_month_start(start)
        while b < end:
            cuts.append(b)
            b = next_month_start(b)
        return cuts

    def _run_lines(self, c: Container, run: Run, start: datetime, end: datetime) -> list[ChargeLine]:
        """Container time and Code Supporter for [start, end), one line each per month piece."""
        assert run.tier is not None
        lines = []
        for a, b in self._pieces(start, end):
            version = self.catalog.at(a)
            seconds = int((b - a).total_seconds())
            hours = Decimal(seconds) / 3600
            time_line = ChargeLine(
                resource="container", item=run.tier, month=month_key(a), container_id=c.container_id,
                run_id=run.run_id, tier=run.tier, seconds=seconds, code_supporter=run.code_supporter,
                start=a, end=b, amount=to_micro(version.tier(run.tier).credits_per_hour * hours),
            )
            lines.append(time_line)
            cs_rate = version.code_supporter_rate(run.tier)
            if run.code_supporter and cs_rate:
                lines.append(
                    replace(time_line, item="code_supporter", amount=to_micro(cs_rate * hours))
                )
        return lines

    def billable_gb_at(self, c: Container, moment: datetime) -> int:
        if c.created_at is None or moment < c.created_at or (c.deleted_at and moment >= c.deleted_at):
            return 0
        if not c.active_at(moment):
            return 0
        free = self.catalog.at(moment).free_storage(self.state.plan_at(moment))
        return max(0, c.size_at(moment) - free)

    def _storage_gb_seconds(self, c: Container, start: datetime, end: datetime) -> int:
        """Σ billable GB × seconds over [start, end), following every fact on the timeline."""
        points = {start, end}
        facts: Iterable[datetime] = [
            *(at for at, _ in c.sizes),
            *(at for at, _ in c.activity),
            *(at for at, _ in self.state.plans),
            *([c.created_at] if c.created_at else []),
            *([c.deleted_at] if c.deleted_at else []),
        ]
        points.update(t for t in facts if start < t < end)
        ordered = sorted(points)
        return sum(
            self.billable_gb_at(c, a) * int((b - a).total_seconds())
            for a, b in pairwise(ordered)
        )

    def _storage_exact(self, c: Container, start: datetime, end: datetime) -> dict[str, tuple[Decimal, Interval]]:
        """Exact storage credits for [start, end) by month (versions priced piece by piece)."""
        out: dict[str, tuple[Decimal, Interval]] = {}
        for a, b in self._pieces(start, end):
            rate = self.catalog.at(a).storage_credits_per_gb_hour
            value = rate * Decimal(self._storage_gb_seconds(c, a, b)) / 3600
            m = month_key(a)
            if m in out:
                prev, (pa, _) = out[m]
                out[m] = (prev + value, (pa, b))
            else:
                out[m] = (value, (a, b))
        return out

    def _storage_line(self, c: Container, month: str, amount: int, span: Interval) -> ChargeLine:
        a, b = span
        return ChargeLine(
            resource="storage", item="storage", amount=amount, month=month, container_id=c.container_id,
            seconds=int((b - a).total_seconds()), storage_gb=c.size_at(a), billable_gb=self.billable_gb_at(c, a),
            start=a, end=b,
        )

    # ------------------------------------------------------------------ settling

    def settle_storage(self, c: Container, until: datetime) -> None:
        if c.created_at is None or not c.sizes:
            return
        start = c.storage_billed_until or c.created_at
        end = min(until, c.deleted_at) if c.deleted_at else until
        if end > start:
            for month, (value, span) in self._storage_exact(c, start, end).items():
                self._lines.append(self._storage_line(c, month, to_micro(value), span))
        if c.storage_billed_until is None or until > c.storage_billed_until:
            c.storage_billed_until = max(until, c.created_at)

    def restate_storage(self, c: Container, since: datetime, change: Callable[[], None]) -> None:
        """Apply a storage fact that takes effect at ``since``; storage already billed past it is
        re-priced: the difference is charged, or written as a correction."""
        billed = c.storage_billed_until
        if billed is None or since >= billed or c.created_at is None:
            change()
            return
        start = max(since, c.created_at)
        before = self._storage_exact(c, start, billed)
        change()
        after = self._storage_exact(c, start, billed)
        for month in sorted(set(before) | set(after)):
            old, span = before.get(month, (Decimal(0), after[month][1] if month in after else (start, billed)))
            new = after[month][0] if month in after else Decimal(0)
            diff = to_micro(new) - to_micro(old)
            if diff > 0:
                self._lines.append(self._storage_line(c, month, diff, span))
            elif diff < 0:
                self._corrections.append(self._storage_line(c, month, -diff, span))

    def settle_run(self, c: Container, run: Run, until: datetime) -> None:
        """Charge a run's time up to ``until`` (never past its stop) and its reported traffic."""
        if run.started_at is not None and run.tier is not None:
            start = run.billed_until or run.started_at
            end = min(until, run.stopped_at) if run.stopped_at else until
            if end > start:
                self._lines.extend(self._run_lines(c, run, start, end))
                run.billed_until = end
        for month in sorted(run.pending_traffic):
            billable = run.pending_billable.get(month, 0)
            rate = self.catalog.at(month_start_of(month)).traffic_credits_per_gb
            self._lines.append(
                ChargeLine(
                    resource="traffic", item="traffic", month=month, container_id=c.container_id,
                    run_id=run.run_id, traffic_bytes=run.pending_traffic[month],
                    amount=to_micro(rate * Decimal(billable) / GIB),
                )
            )
        run.pending_traffic.clear()
        run.pending_billable.clear()
        if run.is_complete:
            self._close_run(c, run)

    def _close_run(self, c: Container, run: Run) -> None:
        del c.runs[run.run_id]
        assert run.stopped_at is not None
        c.closed_runs[run.run_id] = run.stopped_at

    def settle_container(self, c: Container, until: datetime) -> None:
        for run in list(c.runs.values()):
            self.settle_run(c, run, until)
        self.settle_storage(c, until)

    def settle_everything(self, until: datetime) -> None:
        for c in self.state.containers.values():
            self.settle_container(c, until)

    def _flush_corrections(self, at: datetime, reason: str) -> None:
        total = sum(line.amount for line in self._corrections)
        if total:
            back, _forgiven, written_off = burn_down.give_back(self.state, total, at)
            self._entry("correction", total, at, reason, lines=self._corrections, paid_by=back)
            if written_off:
                self._entry("expiry", written_off, at, "corrected_credits_of_expired_lots")
        self._corrections = []

    def flush(self, at: datetime, reason: str) -> None:
        """Deduct the collected lines: one deduction per month, each paid as of that month."""
        self._flush_corrections(at, reason)
        by_month: dict[str, list[ChargeLine]] = defaultdict(list)
        for line in self._lines:
            by_month[line.month].append(line)
        self._lines = []
        for month in sorted(by_month):
            lines = by_month[month]
            total = sum(line.amount for line in lines)
            if total == 0 and not any(line.resource == "container" for line in lines):
                continue  # nothing to deduct and nothing for the container log
            as_of = min(at, next_month_start(month_start_of(month)) - SECOND)
            paid_by, debt = burn_down.pay(self.state, total, as_of, max(self.state.as_of, at))
            self._entry("deduction", total - debt, as_of, reason, lines=lines, paid_by=paid_by)
            if debt:
                self._entry("debt", debt, as_of, "insufficient_credits")

    # ------------------------------------------------------------------ grants

    def grant(
        self,
        kind: LotKind,
        amount: int,
        at: datetime,
        expires_at: datetime | None,
        reason: str,
        *,
        lot_id: str | None = None,
        purchase_id: str | None = None,
    ) -> CreditLot:
        lot = CreditLot(
            lot_id=lot_id or f"{kind}-{self.event_id}",
            kind=kind,
            granted=amount,
            remaining=amount,
            granted_at=at,
            expires_at=expires_at,
            purchase_id=purchase_id,
            reason=reason,
        )
        repaid = burn_down.add_lot(self.state, lot)
        self._entry("grant", amount, at, reason, lot_id=lot.lot_id)
        if repaid:
            self._entry("debt", repaid, at, "debt_repaid", paid_by=[LotAmount(lot_id=lot.lot_id, amount=repaid)])
        return lot

    # ------------------------------------------------------------------ ledger entries

    def _entry(
        self,
        type_: str,
        amount: int,
        at: datetime,
        reason: str,
        *,
        lines: list[ChargeLine] | None = None,
        paid_by: list | None = None,
        lot_id: str | None = None,
    ) -> None:
        self._seq += 1
        self.entries.append(
            LedgerEntry(
                entry_id=f"{self.event_id}:{self._seq:03d}",
                type=type_,  # type: ignore[arg-type]
                amount=amount,
                at=at,
                reason=reason,
                event_id=self.event_id,
                lines=list(lines or []),
                paid_by=list(paid_by or []),
                lot_id=lot_id,
            )
        )

    # ------------------------------------------------------------------ overuse

    def running_container_ids(self) -> list[str]:
        return sorted(cid for cid, c in self.state.containers.items() if c.running_runs)

    def storage_billed_container_ids(self, at: datetime) -> list[str]:
        return sorted(
            cid
            for cid, c in self.state.containers.items()
            if c.deleted_at is None and self.billable_gb_at(c, max(at, c.created_at or at)) > 0
        )

    def exhaust(self, at: datetime) -> None:
        """Final settlement: everything up to ``at`` is deducted, all credits spent, the rest is debt;
        the account is marked exhausted and the platform is asked to stop and inactivate."""
        self.settle_everything(at)
        self.flush(at, "final_settlement")
        newly = not self.state.exhausted
        self.state.exhausted = True
        account_id = self.state.account_id
        running = self.running_container_ids()
        if running:
            self.outbox.append(
                OutboundEvent(
                    detail_type="Stop Containers Requested",
                    detail={"account_id": account_id, "container_ids": running, "reason": "credits_exhausted"},
                )
            )
        if newly:
            for cid in self.storage_billed_container_ids(at):
                self.outbox.append(
                    OutboundEvent(
                        detail_type="Container Inactivation Requested",
                        detail={"account_id": account_id, "container_id": cid, "reason": "credits_exhausted"},
                    )
                )
            self.outbox.append(
                OutboundEvent(
                    detail_type="Credits Exhausted",
                    detail={"account_id": account_id, "debt": format_credits(self.state.debt)},
                )
            )

    @classmethod
    def projection(cls, state: AccountState, catalog: PriceCatalog, now: datetime) -> tuple[Book, datetime]:
        """A copy of the account rolled to ``now`` in memory (never written), and the time it is at:
        what a read shows, exactly as the next settlement would find it."""
        book = cls(clone(state), catalog, "projection")
        if now >= book.state.as_of:
            book.advance_to(now)
        return book, max(now, book.state.as_of)

    def remaining(self, at: datetime) -> int:
        """Available balance less the usage accrued but not yet deducted (may be negative)."""
        return self.state.available(at) - self.accrued(at)

    def accrued(self, at: datetime) -> int:
        """Usage accrued but not yet deducted, as a settlement at ``at`` would price it."""
        probe = Book(clone(self.state), self.catalog, "probe")
        probe.settle_everything(at)
        return sum(line.amount for line in probe._lines) - sum(line.amount for line in probe._corrections)

    def hourly_burn(self, at: datetime) -> int:
        """µcr per hour: running containers (tier + Code Supporter) and billable storage."""
        version = self.catalog.at(at)
        total = Decimal(0)
        for c in self.state.containers.values():
            for run in c.running_runs:
                assert run.tier is not None
                total += version.tier(run.tier).credits_per_hour
                if run.code_supporter:
                    total += version.code_supporter_rate(run.tier)
            total += version.storage_credits_per_gb_hour * self.billable_gb_at(c, max(at, c.created_at or at))
        return to_micro(total)


def month_start_of(key: str) -> datetime:
    return month_start_of_key(key)


# ---------------------------------------------------------------------- account events


def open_account(
    account_id: str, email: str, plan: Plan, at: datetime, catalog: PriceCatalog, event_id: str,
    credit_price_usd: str | None = None,
) -> Book:
    """A new account gets the full monthly credits of its plan for the month it is created in."""
    state = AccountState(
        account_id=account_id,
        email=email,
        created_at=at,
        plans=[(at, plan)],
        as_of=at,
        credit_price_usd=credit_price_usd or str(catalog.at(at).credit_price_usd),
    )
    book = Book(state, catalog, event_id)
    book.grant(
        "monthly", catalog.at(at).monthly_micro(plan), at, next_month_start(at), f"monthly_credits_{plan}",
        lot_id=f"monthly-{month_key(at)}",
    )
    return book


def require(state: AccountState | None, account_id: str) -> AccountState:
    if state is None:
        raise UnknownAccount(f"no account {account_id}: no Account Created event was received")
    return state


def begin(book: Book, at: datetime) -> datetime:
    """Roll to the event's time when it is not late; return the time payments are made at."""
    if at >= book.state.as_of:
        book.advance_to(at)
    return at


def finish(book: Book, at: datetime, reason: str, debt_before: int) -> None:
    """Deduct what the event settled; a deduction that runs into debt triggers the final settlement.
    Once the account is exhausted, further usage (the platform's stops) simply adds to the debt."""
    book.flush(at, reason)
    if book.state.debt > debt_before and not book.state.exhausted:
        book.exhaust(max(at, book.state.as_of))


def change_plan(book: Book, at: datetime, plan: Plan) -> None:
    """Everything accrued is settled at once; the new allowance applies from the change."""
    debt_before = book.state.debt
    begin(book, at)
    book.settle_everything(at)
    state = book.state

    def insert() -> None:
        state.plans = sorted([*state.plans, (at, plan)], key=lambda p: p[0])

    changes = list(state.containers.values())
    if changes:
        # The plan is one fact shared by all containers: insert it once, re-price each against it.
        before = {c.container_id: c.storage_billed_until for c in changes}
        inserted = False

        def once() -> None:
            nonlocal inserted
            if not inserted:
                insert()
                inserted = True

        for c in changes:
            if before[c.container_id] is not None and at < before[c.container_id]:  # type: ignore[operator]
                book.restate_storage(c, at, once)
        once()
    else:
        insert()
    finish(book, at, "plan_change", debt_before)


def container(book: Book, container_id: str, at: datetime) -> Container:
    c = book.state.containers.get(container_id)
    if c is None:
        c = Container(container_id=container_id)
        book.state.containers[container_id] = c
    c.seen_until = max(c.seen_until or at, at)
    return c


def container_created(book: Book, at: datetime, container_id: str, storage_gb: int) -> None:
    debt_before = book.state.debt
    begin(book, at)
    c = container(book, container_id, at)
    if c.created_at is not None:
        return  # already known: another delivery of the same fact
    c.created_at = at
    c.sizes = sorted([*c.sizes, (at, storage_gb)], key=lambda s: s[0])
    # Storage accrues from creation, also when this event arrives after the container was used.
    assert c.seen_until is not None
    book.settle_storage(c, c.seen_until)
    finish(book, at, "container_created", debt_before)


def storage_fact(book: Book, at: datetime, container_id: str, change: Callable[[Container], None], reason: str) -> None:
    """Resize, inactivation, reactivation, deletion: storage is settled up to the fact, which then
    applies from its own time (re-pricing whatever was billed past it)."""
    debt_before = book.state.debt
    begin(book, at)
    c = container(book, container_id, at)
    book.settle_storage(c, at)
    book.restate_storage(c, at, lambda: change(c))
    if reason == "container_deleted":
        # A deleted container runs no more: a run still open ends with the deletion.
        for run in list(c.runs.values()):
            if run.is_running and run.started_at is not None and run.started_at <= at:
                run.stopped_at = at
            book.settle_run(c, run, at)
    finish(book, at, reason, debt_before)


def container_started(
    book: Book, at: datetime, container_id: str, run_id: str, tier: str, code_supporter: bool
) -> None:
    book.catalog.at(at).tier(tier)  # an unknown tier is an error, never a free run
    debt_before = book.state.debt
    begin(book, at)
    c = container(book, container_id, at)
    run = open_run(c, run_id)
    if run is None or run.started_at is not None:
        return  # another delivery of a run already known
    run.started_at, run.tier, run.code_supporter = at, tier, code_supporter
    run.billed_until = at
    if run.stopped_at is not None:  # the stop came first: the whole run is settled now
        book.settle_run(c, run, run.stopped_at)
    book.settle_storage(c, at)
    finish(book, at, "container_started", debt_before)
    if book.state.exhausted and run.is_running and not any(
        e.detail_type == "Stop Containers Requested" for e in book.outbox
    ):
        book.outbox.append(
            OutboundEvent(
                detail_type="Stop Containers Requested",
                detail={"account_id": book.state.account_id, "container_ids": [container_id],
                        "reason": "credits_exhausted"},
            )
        )


def open_run(c: Container, run_id: str) -> Run | None:
    """The run, created on its first event (start or stop, whichever comes first); None when it was
    settled and closed already."""
    run = c.runs.get(run_id)
    if run is None and run_id not in c.closed_runs:
        run = c.runs[run_id] = Run(run_id=run_id)
    return run


def _record_traffic(book: Book, run: Run, at: datetime, traffic_bytes: int) -> None:
    """Count bytes against the allowance of the event's month; only bytes beyond it are billable."""
    if traffic_bytes <= 0:
        return
    month = month_key(at)
    free = book.catalog.at(at).traffic_free_bytes_per_month
    used = book.state.traffic_used.get(month, 0)
    billable = max(0, used + traffic_bytes - free) - max(0, used - free)
    book.state.traffic_used[month] = used + traffic_bytes
    run.pending_traffic[month] = run.pending_traffic.get(month, 0) + traffic_bytes
    run.pending_billable[month] = run.pending_billable.get(month, 0) + billable


def container_stopped(book: Book, at: datetime, container_id: str, run_id: str, traffic_bytes: int) -> None:
    debt_before = book.state.debt
    begin(book, at)
    c = container(book, container_id, at)
    run = open_run(c, run_id)
    if run is None or run.stopped_at is not None:
        return  # another delivery of a run already known
    _record_traffic(book, run, at, traffic_bytes)
    run.stopped_at = at
    if run.billed_until is not None and run.billed_until > at:
        # Billed past the stop (a boundary or final settlement ran first): give that time back.
        assert run.tier is not None
        book._corrections.extend(book._run_lines(c, run, at, run.billed_until))
        run.billed_until = at
    book.settle_run(c, run, at)
    book.settle_storage(c, at)
    finish(book, at, "container_stopped", debt_before)


def traffic_reported(book: Book, at: datetime, container_id: str, run_id: str, traffic_bytes: int) -> None:
    debt_before = book.state.debt
    begin(book, at)
    c = container(book, container_id, at)
    run = c.runs.get(run_id)
    if run is None and run_id in c.closed_runs:
        # The run was settled already: its late traffic is deducted at once.
        run = Run(run_id=run_id)
        _record_traffic(book, run, at, traffic_bytes)
        c.runs[run_id] = run
        book.settle_run(c, run, at)
        c.runs.pop(run_id, None)
        finish(book, at, "late_traffic", debt_before)
        return
    if run is None:
        run = c.runs[run_id] = Run(run_id=run_id)
    _record_traffic(book, run, at, traffic_bytes)


def ai_used(
    book: Book, at: datetime, feature: str, model: str, input_tokens: int, output_tokens: int,
    container_id: str | None,
) -> ChargeLine:
    price = book.catalog.at(at).model(model)
    debt_before = book.state.debt
    begin(book, at)
    line = ChargeLine(
        resource="ai", item=feature, month=month_key(at), container_id=container_id, model=model,
        input_tokens=input_tokens, output_tokens=output_tokens, start=at, end=at,
        amount=to_micro(price.input * input_tokens + price.output * output_tokens),
    )
    book._lines.append(line)
    finish(book, at, "ai_usage", debt_before)
    return line


def grant_credits(
    book: Book, at: datetime, kind: LotKind, amount: int, expires_at: datetime | None, reason: str,
    purchase_id: str | None = None,
) -> CreditLot:
    begin(book, at)
    return book.grant(kind, amount, at, expires_at, reason, purchase_id=purchase_id)


def check_in_expiry(at: datetime) -> datetime:
    return add_one_month(at)


def monthly_due(book: Book, at: datetime) -> None:
    """The monthly job and the periodic check: roll to ``at``, then end the account's credits if the
    usage accrued by running containers has reached the available balance."""
    begin(book, at)
    state = book.state
    if book.running_container_ids() and book.accrued(at) >= state.available(at) and not state.exhausted:
        book.exhaust(at)


__all__ = [
    "Book",
    "ai_used",
    "change_plan",
    "container_created",
    "container_started",
    "container_stopped",
    "grant_credits",
    "month_start",
    "monthly_due",
    "open_account",
    "require",
    "storage_fact",
    "traffic_reported",
]
