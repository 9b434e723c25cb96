"""The read side of the credit-usage page: balance, monthly usage, container log, AI log, audit log.

Nothing here writes. The balance is the account rolled to the wall clock in memory
(:func:`billing.domain.projection.project`). The monthly usage report reads the account's state and
one month aggregate item: two ``GetItem`` requests whatever the size of the history. Logs are pages of
ledger entries (:mod:`billing.store.queries`) behind signed cursors bound to the account. Decisions
where the contract is silent are in the README ("Usage report").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from billing.api.models import (
    AiLog,
    AiLogEntry,
    BalanceView,
    ContainerLog,
    ContainerLogEntry,
    Expiration,
    LedgerCsv,
    LedgerEntryView,
    LedgerPage,
    LotView,
)
from billing.api.views import entry_view, lot_view, time_or_none
from billing.domain.amounts import format_credits, hours_left
from billing.domain.clock import Clock, format_time, next_month_start, utc_now
from billing.domain.errors import InvalidInput, UnknownAccount
from billing.domain.lots import burn_order
from billing.domain.model import AccountState, ChargeLine, LedgerEntry
from billing.domain.projection import project
from billing.domain.spreadsheet import csv_text
from billing.services.usage import EARLIEST, MAX_ANSWER_BYTES, Form, UsageQuery, parse_bound, parse_day, usage_report
from billing.store import keys, queries
from billing.store.cursors import CursorCodec
from billing.store.ledger import Ledger

CSV_MAX_ROWS = 1_000  # an answer reads at most 1,000 items (billing-rules.md); the rest is behind X-Next-Cursor
DEFAULT_LIMIT = 50
AI_TYPES = {"chat": "Chat", "snap": "Snap", "ai_supporter": "AI Supporter"}
CSV_COLUMNS = ("entry_id", "type", "amount", "at", "reason", "event_id", "lot_id", "paid_by", "lines")


def ledger_csv(entries: list[LedgerEntry]) -> str:
    def row(e: LedgerEntry) -> list[str]:
        paid_by = ";".join(f"{p.lot_id}:{format_credits(p.amount)}" for p in e.paid_by)
        lines = ";".join(
            f"{ln.resource}:{ln.item}:{ln.container_id or ''}:{format_credits(ln.amount)}" for ln in e.lines
        )
        return [e.entry_id, e.type, format_credits(e.amount), format_time(e.at), e.reason, e.event_id,
                e.lot_id or "", paid_by, lines]

    return csv_text([list(CSV_COLUMNS), *(row(e) for e in entries)])


class UsageReports:
    """The usage page's reads for one table. Collaborators are arguments (tests inject a clock)."""

    def __init__(self, ledger: Ledger, cursors: CursorCodec, clock: Clock = utc_now) -> None:
        self.ledger = ledger
        self.cursors = cursors
        self.clock = clock

    def _state(self, account_id: str) -> AccountState:
        state = self.ledger.load(account_id)
        if state is None:
            raise UnknownAccount(f"no account {account_id}")
        return state

    # ------------------------------------------------------------ balance

    def balance(self, account_id: str) -> BalanceView:
        return self.balance_of(self._state(account_id), self.clock())

    def balance_of(self, state: AccountState, now: datetime) -> BalanceView:
        seen = project(state, self.ledger.catalog, now)
        s, at = seen.state, seen.at
        open_lots = sorted((lot for lot in s.usable_lots(at) if lot.remaining > 0), key=burn_order)
        free = sum(lot.remaining for lot in open_lots if lot.is_free)
        purchased = sum(lot.remaining for lot in open_lots if not lot.is_free)
        accrued = seen.accrued
        remaining = free + purchased - accrued
        burn = seen.hourly_burn
        expiring = sorted((lot for lot in open_lots if lot.expires_at), key=lambda lot: (lot.expires_at, lot.lot_id))
        return BalanceView(
            account_id=s.account_id,
            plan=s.plan_at(at),
            available=format_credits(free + purchased),
            free=format_credits(free),
            purchased=format_credits(purchased),
            debt=format_credits(s.debt),
            exhausted=s.exhausted,
            credit_mail=s.credit_mail,
            accrued=format_credits(accrued),
            remaining=format_credits(remaining),
            hourly_burn=format_credits(burn),
            hours_left=hours_left(remaining, burn),
            next_monthly_grant_at=format_time(next_month_start(at)),
            lots=[LotView(**lot_view(lot)) for lot in open_lots],
            upcoming_expirations=[
                Expiration(lot_id=lot.lot_id, kind=lot.kind, amount=format_credits(lot.remaining),
                           expires_at=format_time(lot.expires_at))  # type: ignore[arg-type]
                for lot in expiring
            ],
            credit_price_usd=s.credit_price_usd,
            at=format_time(at),
        )

    # ------------------------------------------------------------ monthly usage

    def usage(self, account_id: str, query: UsageQuery, form: Form = "json", user: str | None = None) -> dict[str, Any]:
        """The usage report of a range (see :mod:`billing.services.usage`), to be sent as ``form``;
        ``user``: only that user's usage (a ``member`` reads their own only)."""
        return usage_report(self.ledger, account_id, query, self.clock(), form, user=user)

    # ------------------------------------------------------------ logs

    def container_log(self, account_id: str, day: str, user: str | None = None) -> ContainerLog:
        parse_day(day)
        rows = [row for entry in queries.deductions_of_day(self.ledger.models, account_id, day)
                for row in _container_rows(_of_user(entry, user))]
        return ContainerLog(date=day, entries=rows)

    def ai_log(
        self, account_id: str, limit: int = DEFAULT_LIMIT, cursor: str | None = None, user: str | None = None
    ) -> AiLog:
        after = self.cursors.decode(account_id, cursor)
        entries, next_key = queries.ai_page(self.ledger.models, account_id, limit, after)
        # (a member's page holds only their uses, so it may be shorter than ``limit``; the cursor goes on)
        rows = [row for entry in entries for row in _ai_rows(_of_user(entry, user))]
        return AiLog(entries=rows, next_cursor=self.cursors.encode(account_id, next_key))

    def _range(self, from_: str | None, to: str | None) -> tuple[datetime, datetime | None]:
        # Without a range the audit log is the whole history (paged), not a guess at a window.
        end = parse_bound(to, "to", True) if to else None
        # Without ``from``: from the earliest entry, or ``to`` when that is earlier still (year 1 is a date).
        start = parse_bound(from_, "from", False) if from_ else min(EARLIEST, end or EARLIEST)
        if end is not None and end < start:
            raise InvalidInput("from must not be after to")
        return start, end

    def _ledger_entries(
        self, account_id: str, start: datetime, end: datetime | None, limit: int, cursor: str | None
    ) -> tuple[list[LedgerEntry], str | None]:
        after = self.cursors.decode(account_id, cursor)
        entries, next_key = queries.ledger_page(self.ledger.models, account_id, start, end, limit, after)
        return entries, self.cursors.encode(account_id, next_key)

    def audit_log(
        self, account_id: str, from_: str | None = None, to: str | None = None,
        limit: int = DEFAULT_LIMIT, cursor: str | None = None,
    ) -> LedgerPage:
        start, end = self._range(from_, to)
        entries, next_cursor = self._ledger_entries(account_id, start, end, limit, cursor)
        return LedgerPage(
            entries=[LedgerEntryView(**entry_view(e)) for e in entries], next_cursor=next_cursor,
            from_=format_time(start), to=time_or_none(end),
        )

    def audit_csv(
        self, account_id: str, from_: str | None = None, to: str | None = None,
        limit: int | None = None, cursor: str | None = None,
    ) -> LedgerCsv:
        start, end = self._range(from_, to)
        entries, next_cursor = self._ledger_entries(account_id, start, end, limit or CSV_MAX_ROWS, cursor)
        body = ledger_csv(entries)
        while len(body.encode()) > MAX_ANSWER_BYTES and len(entries) > 1:
            # Entries with many lines: the page ends earlier, and the cursor goes on from its last row.
            entries = entries[: len(entries) * MAX_ANSWER_BYTES // len(body.encode())] or entries[:1]
            last = entries[-1]
            after = {"pk": keys.account_pk(account_id), "sk": keys.ledger_sk(last.at, last.entry_id)}
            body, next_cursor = ledger_csv(entries), self.cursors.encode(account_id, after)
        return LedgerCsv(body=body, next_cursor=next_cursor)


def _of_user(entry: LedgerEntry, user: str | None) -> LedgerEntry:
    """The entry with only ``user``'s lines (None: all of them)."""
    if user is None:
        return entry
    return msgspec.structs.replace(entry, lines=[line for line in entry.lines if line.user_id == user])


def _container_rows(entry: LedgerEntry) -> list[ContainerLogEntry]:
    """One row per container of a deduction: its run's time and features, its storage and traffic,
    and the credits deducted for all of them."""
    groups: dict[str, list[ChargeLine]] = {}
    for line in entry.lines:
        if line.container_id and line.resource != "ai":
            groups.setdefault(line.container_id, []).append(line)
    rows = []
    for container_id, lines in groups.items():
        time_lines = [ln for ln in lines if ln.resource == "container" and ln.item != "code_supporter"]
        run_lines = [ln for ln in lines if ln.resource == "container"]
        storage = [ln for ln in lines if ln.resource == "storage"]
        traffic = [ln for ln in lines if ln.resource == "traffic"]
        run_ids = [ln.run_id for ln in run_lines + traffic if ln.run_id]
        rows.append(
            ContainerLogEntry(
                container_id=container_id,
                run_id=run_ids[0] if run_ids else None,
                tier=run_lines[0].tier if run_lines else None,
                seconds=sum(ln.seconds or 0 for ln in time_lines) if time_lines else None,
                code_supporter=bool(run_lines[0].code_supporter) if run_lines else None,
                storage_gb=storage[-1].storage_gb if storage else None,
                billable_gb=storage[-1].billable_gb if storage else None,
                traffic_bytes=sum(ln.traffic_bytes or 0 for ln in traffic) if traffic else None,
                credits=format_credits(sum(ln.amount for ln in lines)),
                deducted_at=format_time(entry.at),
                storage_seconds=sum(ln.seconds or 0 for ln in storage) if storage else None,
                entry_id=entry.entry_id,
            )
        )
    return rows


def _ai_rows(entry: LedgerEntry) -> list[AiLogEntry]:
    return [
        AiLogEntry(
            type=AI_TYPES[line.item],  # type: ignore[arg-type]
            container_id=line.container_id,
            model=line.model if line.item == "chat" else None,
            input_tokens=line.input_tokens or 0,
            output_tokens=line.output_tokens or 0,
            credits=format_credits(line.amount),
            at=format_time(line.start or entry.at),
            entry_id=entry.entry_id,
        )
        for line in entry.lines
        if line.resource == "ai" and line.item in AI_TYPES
    ]
