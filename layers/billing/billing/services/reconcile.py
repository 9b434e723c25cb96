"""Reconciliation: proof that the books balance, account by account, from the stored ledger.

For every account (a scan of the balance items, or the accounts named) it reads, read-only and at a
bounded rate of read capacity, the balance item, the container items, the ledger entries and the
usage day items, and checks (``../shared/spec/billing-rules.md``, "Credit lots"):

* conservation, on the balance (granted = spent + expired + refunded + available, and charged =
  spent + debt) and on what the ledger gives;
* that the balance's totals, debt and every lot it keeps (granted, refunded, remaining and expired)
  equal what the ledger entries give, that a lot past its expiry is closed, and that the month's
  charges (the spend cap and the alerts read them) equal the month's deductions less corrections;
* that the balance's summable aggregates (the containers' count, their open accruals and pending
  traffic, the containers listed) equal the sum of the container items, and that each container's
  part equals what its runs and storage give (:func:`billing.domain.forecast.contribution`);
* that the usage day items (account and container) equal what the ledger's charge lines give
  (:func:`billing.domain.usage.days_of`, the rebuild of ``python -m billing.store.migration --usage``).

A snapshot of an account is consistent: the balance's version is read before and after its other
items, and an account that changed in between is read again (every change writes the balance).

Operator command (exits 1 when an account differs, 0 otherwise)::

    python -m billing.services.reconcile --table billing [--endpoint-url http://127.0.0.1:8000]
        [--region eu-west-1] [--account ID ...] [--read-rate 100] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from billing.domain import forecast
from billing.domain.catalog import PriceCatalog, load_catalog
from billing.domain.clock import SECOND, format_time, month_key
from billing.domain.errors import InvalidInput
from billing.domain.model import SCHEMA, AccountState, Accrual, Container, LedgerEntry, OutboundEvent, from_json
from billing.domain.usage import Cell, days_of
from billing.observability import logger, metrics
from billing.store import keys
from billing.store.tables import TableModels, table_models
from billing.store.usage import parse_attribute

DEFAULT_READ_RATE = 100.0  # read capacity units per second (strongly consistent: 1 unit per 4 KB)
FIRST_DIFFERENCES = 20  # account ids published with the result
DETAILED_ACCOUNTS = 100  # accounts whose reasons the report keeps
REASONS_PER_ACCOUNT = 10
SNAPSHOT_ATTEMPTS = 3  # reads of an account that keeps changing before it is reported busy
SCAN_PAGE = 200  # items a scan page evaluates
STOP_MARGIN_MS = 120_000  # an invocation stops this long before its timeout and continues in another
MAX_ROUNDS = 200  # invocations of one run at most (a continuation that never ends is a bug)
MAX_ACCOUNTS_NAMED = 1000  # accounts an on-demand run may name
FINISHED = "Reconciliation Finished"

Usage = dict[tuple[date, str | None], dict[tuple[int, Cell], int]]


# ---------------------------------------------------------------------------------- the read rate


class ReadBudget:
    """A token bucket over consumed read capacity: ``rate`` units a second, bursts of ``burst``.
    Reads are charged after the fact (DynamoDB says what they consumed); a bucket in debt sleeps."""

    def __init__(
        self,
        rate: float = DEFAULT_READ_RATE,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("the read rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._last = clock()
        self.consumed = 0.0
        self.waited = 0.0

    def spend(self, units: float) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate) - units
        self._last = now
        self.consumed += units
        if self._tokens < 0:
            pause = -self._tokens / self.rate
            self.waited += pause
            self._sleep(pause)
            self._tokens = 0.0
            self._last = self._clock()


def _units(response: Mapping[str, Any]) -> float:
    """What a read consumed: DynamoDB's figure, or an estimate by size when it gives none."""
    consumed = response.get("ConsumedCapacity")
    if consumed and "CapacityUnits" in consumed:
        return float(consumed["CapacityUnits"])
    items = response.get("Items") or ([response["Item"]] if response.get("Item") else [])
    return float(max(1, math.ceil(len(json.dumps(items)) / 4096)))


# ---------------------------------------------------------------------------------- the snapshot


@dataclass
class AccountItems:
    """What an account's check reads: its balance, containers, ledger and usage, as one snapshot."""

    state: AccountState
    containers: list[Container]
    entries: list[LedgerEntry]
    usage: Usage


class Busy(Exception):
    """The account kept changing while it was read."""


class TableReader:
    """Read-only access to the billing table, each request charged to the read budget."""

    def __init__(self, models: TableModels, budget: ReadBudget) -> None:
        self.models = models
        self.budget = budget
        self.client: Any = models.connection.client

    def _read(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = getattr(self.client, operation)(
            TableName=self.models.table_name, ReturnConsumedCapacity="TOTAL", **kwargs
        )
        self.budget.spend(_units(response))
        return response

    def account_ids(self, after: str | None = None) -> Iterator[str]:
        """Every account with a balance item, in the scan's order, from the one after ``after``."""
        start = {"pk": {"S": keys.account_pk(after)}, "sk": {"S": keys.STATE}} if after else None
        while True:
            kwargs: dict[str, Any] = {
                "FilterExpression": "sk = :state",
                "ExpressionAttributeValues": {":state": {"S": keys.STATE}},
                "ProjectionExpression": "pk",
                "Limit": SCAN_PAGE,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self._read("scan", **kwargs)
            for item in page.get("Items", []):
                pk = item["pk"]["S"]
                if pk.startswith("ACCOUNT#"):
                    yield keys.account_of(pk)
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _balance(self, account_id: str) -> dict[str, Any] | None:
        key = {"pk": {"S": keys.account_pk(account_id)}, "sk": {"S": keys.STATE}}
        item: dict[str, Any] | None = self._read("get_item", Key=key, ConsistentRead=True).get("Item")
        return item

    def _range(self, account_id: str, low: str, high: str) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
                "ExpressionAttributeValues": {
                    ":pk": {"S": keys.account_pk(account_id)}, ":low": {"S": low}, ":high": {"S": high},
                },
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self._read("query", **kwargs)
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def snapshot(self, account_id: str) -> AccountItems | None:
        """The account's items as of one version of its balance (None: no such account); raises
        :class:`Busy` when every attempt saw the balance change while the rest was read."""
        for _ in range(SNAPSHOT_ATTEMPTS):
            before = self._balance(account_id)
            if before is None:
                return None
            containers = [
                from_json(i["body"]["S"], Container)
                for i in self._range(account_id, keys.CONTAINER, keys.CONTAINER + "~")
            ]
            ledger = self._range(account_id, keys.LEDGER, keys.LEDGER_END)
            entries = [from_json(i["body"]["S"], LedgerEntry) for i in ledger]
            usage = stored_usage(self._range(account_id, keys.USAGE, keys.USAGE_END))
            after = self._balance(account_id)
            if after is not None and after.get("version") == before.get("version"):
                state = from_json(before["body"]["S"], AccountState)
                return AccountItems(state, containers, entries, usage)
        raise Busy(account_id)


def stored_usage(items: Iterable[Mapping[str, Any]]) -> Usage:
    """The usage day items as {(day, container or None): {(hour, cell): µcr}}, zeros left out."""
    days: Usage = {}
    for item in items:
        sk = item["sk"]["S"]
        day = date.fromisoformat(sk[-10:])
        container = sk.removeprefix("USAGE#C#")[:-11] if sk.startswith("USAGE#C#") else None
        cells = days.setdefault((day, container), {})
        for name, value in item.items():
            parsed = parse_attribute(name)
            if parsed and "N" in value and int(value["N"]):
                cells[parsed] = cells.get(parsed, 0) + int(value["N"])
    return {key: cells for key, cells in days.items() if cells}


def ledger_usage(entries: Iterable[LedgerEntry]) -> Usage:
    """What the ledger's charge lines give, in the shape of :func:`stored_usage`."""
    days: Usage = {}
    for (day, container), usage_day in days_of(entries).items():
        cells = {(hour, cell): amount for hour, hc in usage_day.hours.items() for cell, amount in hc.items() if amount}
        if cells:
            days[(day, container)] = cells
    return days


# ---------------------------------------------------------------------------------- the checks


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
            f.month_charged[month_key(e.at)] -= e.amount
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


def check_account(items: AccountItems, catalog: PriceCatalog) -> list[str]:
    """Every reason the account's stored items differ from its ledger (empty: it reconciles)."""
    if items.state.schema < SCHEMA:
        return [f"schema {items.state.schema} balance item: run python -m billing.store.migration"]
    return (
        check_books(items.state, ledger_figures(items.entries))
        + check_containers(items.state, items.containers, catalog)
        + check_usage(items.usage, ledger_usage(items.entries))
    )


# ---------------------------------------------------------------------------------- the run


@dataclass
class ReconciliationReport:
    """What a reconciliation found; ``resume_after`` is where an interrupted run goes on (None: done)."""

    accounts_checked: int = 0
    differences: int = 0
    first_differences: list[str] = field(default_factory=list)
    details: dict[str, list[str]] = field(default_factory=dict)
    busy: list[str] = field(default_factory=list)
    read_units: float = 0.0
    resume_after: str | None = None

    @property
    def complete(self) -> bool:
        return self.resume_after is None

    def add(self, account_id: str, reasons: list[str]) -> None:
        self.accounts_checked += 1
        if reasons:
            self.differences += 1
            if len(self.first_differences) < FIRST_DIFFERENCES:
                self.first_differences.append(account_id)
            if len(self.details) < DETAILED_ACCOUNTS:
                self.details[account_id] = reasons[:REASONS_PER_ACCOUNT]

    def then(self, later: ReconciliationReport) -> ReconciliationReport:
        """This report followed by ``later`` (the next part of the same run)."""
        return ReconciliationReport(
            accounts_checked=self.accounts_checked + later.accounts_checked,
            differences=self.differences + later.differences,
            first_differences=(self.first_differences + later.first_differences)[:FIRST_DIFFERENCES],
            details=dict(list({**self.details, **later.details}.items())[:DETAILED_ACCOUNTS]),
            busy=(self.busy + later.busy)[:DETAILED_ACCOUNTS],
            read_units=self.read_units + later.read_units,
            resume_after=later.resume_after,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "accounts_checked": self.accounts_checked,
            "differences": self.differences,
            "first_differences": list(self.first_differences),
            "details": {k: list(v) for k, v in self.details.items()},
            "busy": list(self.busy),
            "read_units": round(self.read_units, 1),
            "resume_after": self.resume_after,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReconciliationReport:
        return cls(
            accounts_checked=int(data.get("accounts_checked", 0)),
            differences=int(data.get("differences", 0)),
            first_differences=[str(a) for a in data.get("first_differences", [])],
            details={str(k): [str(r) for r in v] for k, v in dict(data.get("details", {})).items()},
            busy=[str(a) for a in data.get("busy", [])],
            read_units=float(data.get("read_units", 0.0)),
            resume_after=data.get("resume_after"),
        )


def never() -> bool:
    return False


def reconcile(
    models: TableModels,
    catalog: PriceCatalog,
    accounts: Sequence[str] | None = None,
    read_rate: float = DEFAULT_READ_RATE,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    resume_after: str | None = None,
    should_stop: Callable[[], bool] = never,
) -> ReconciliationReport:
    """Check every account (or the ``accounts`` named), read-only, at most ``read_rate`` read units
    a second; when ``should_stop`` says so (checked between accounts), stop and say where to resume."""
    budget = ReadBudget(read_rate, clock=clock, sleep=sleep)
    reader = TableReader(models, budget)
    report = ReconciliationReport()
    ids: Iterable[str] = accounts if accounts is not None else reader.account_ids(resume_after)
    last: str | None = None  # the last account of this pass (at least one is read: progress)
    for account_id in ids:
        if accounts is None and last is not None and should_stop():
            report.resume_after = last
            break
        last = account_id
        try:
            items = reader.snapshot(account_id)
        except Busy:
            report.busy.append(account_id)
            logger.warning("account kept changing while reconciled", account_id=account_id)
            continue
        if items is None:
            report.add(account_id, ["no balance item"])
            continue
        reasons = check_account(items, catalog)
        report.add(account_id, reasons)
        if reasons:
            logger.warning("account does not reconcile", account_id=account_id, reasons=reasons[:REASONS_PER_ACCOUNT])
    report.read_units = budget.consumed
    logger.info(
        "reconciliation pass", accounts_checked=report.accounts_checked, differences=report.differences,
        read_units=round(budget.consumed, 1), waited_seconds=round(budget.waited, 1), resume_after=report.resume_after,
    )
    return report


# ---------------------------------------------------------------------------------- the function


def parse_request(event: Any) -> tuple[list[str] | None, float | None, dict[str, Any] | None]:
    """(accounts named, read rate asked for, the continuation) of an invocation's event; a malformed
    one is an :class:`~billing.domain.errors.InvalidInput` (nothing is read)."""
    if not isinstance(event, dict):
        raise InvalidInput("the event must be a JSON object")
    accounts = event.get("accounts")
    if accounts is not None and not (
        isinstance(accounts, list) and 0 < len(accounts) <= MAX_ACCOUNTS_NAMED
        and all(isinstance(a, str) and 0 < len(a) <= 128 for a in accounts)
    ):
        raise InvalidInput(f"accounts: a list of 1 to {MAX_ACCOUNTS_NAMED} account ids")
    rate = event.get("read_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate <= 40_000):
        raise InvalidInput("read_rate: read units a second, above 0 and at most 40000")
    carried = event.get("continuation")
    if carried is not None and not (
        isinstance(carried, dict) and isinstance(carried.get("run_id"), str)
        and isinstance(carried.get("round"), int) and isinstance(carried.get("report"), dict)
    ):
        raise InvalidInput("continuation: run_id, round and report")
    return accounts, float(rate) if rate is not None else None, carried


def run_id_of(event: Mapping[str, Any], request_id: str) -> str:
    """A run's id: the schedule's time (one run per scheduled time, whatever the retries) or the
    request that started it."""
    scheduled = event.get("scheduled_time") or event.get("time")
    return f"scheduled:{scheduled}" if scheduled else f"request:{request_id}"


def scheduled_run(
    event: Any,
    request_id: str,
    models: TableModels,
    catalog: PriceCatalog,
    publish: Callable[[Sequence[OutboundEvent]], None],
    continue_with: Callable[[dict[str, Any]], None],
    remaining_ms: Callable[[], int],
    read_rate: float = DEFAULT_READ_RATE,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """One invocation of ReconciliationFunction: a daily run (schedule), an on-demand one (an event
    naming ``accounts`` or not), or the continuation of a run that an earlier invocation could not
    finish in its time (``continuation``: the report so far, where to resume, the run's id). Near
    its timeout it hands the rest to a new invocation (``continue_with``); the last one publishes
    ``Reconciliation Finished`` and the metrics."""
    accounts, rate, carried = parse_request(event)
    so_far = ReconciliationReport.from_dict(carried["report"]) if carried else ReconciliationReport()
    run_id = str(carried["run_id"]) if carried else run_id_of(event, request_id)
    round_number = int(carried["round"]) + 1 if carried else 1
    part = reconcile(
        models, catalog, accounts=accounts, read_rate=rate or read_rate, clock=clock, sleep=sleep,
        resume_after=so_far.resume_after, should_stop=lambda: remaining_ms() < STOP_MARGIN_MS,
    )
    report = so_far.then(part)
    if not report.complete and round_number < MAX_ROUNDS:
        continue_with({"continuation": {"run_id": run_id, "round": round_number, "report": report.to_dict()}})
        logger.info("reconciliation continues", run_id=run_id, round=round_number, resume_after=report.resume_after)
        return {"continued": True, **report.to_dict()}
    if not report.complete:
        logger.error("reconciliation gave up", run_id=run_id, rounds=round_number, resume_after=report.resume_after)
    detail: dict[str, object] = {
        "accounts_checked": report.accounts_checked,
        "differences": report.differences,
        "first_differences": report.first_differences,
        "effect_id": hashlib.sha256(f"reconciliation|{run_id}".encode()).hexdigest()[:32],
    }
    publish([OutboundEvent(detail_type=FINISHED, detail=detail)])
    metrics.add_metric(name="ReconciliationAccountsChecked", unit="Count", value=report.accounts_checked)
    metrics.add_metric(name="ReconciliationDifferences", unit="Count", value=report.differences)
    log = logger.warning if report.differences else logger.info
    log("reconciliation finished", run_id=run_id, accounts_checked=report.accounts_checked,
        differences=report.differences, first_differences=report.first_differences, details=report.details)
    return {"continued": False, **report.to_dict()}


# ---------------------------------------------------------------------------------- the command


def render(report: ReconciliationReport) -> str:
    lines = [
        f"accounts checked: {report.accounts_checked}",
        f"accounts with a difference: {report.differences}",
        f"read units consumed: {report.read_units:.1f}",
    ]
    if report.busy:
        lines.append(f"accounts that kept changing (not checked): {', '.join(report.busy)}")
    for account_id, reasons in report.details.items():
        lines.append(f"{account_id}:")
        lines.extend(f"  - {reason}" for reason in reasons)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m billing.services.reconcile",
        description="Check every account's stored balance and aggregates against its ledger (read-only). "
        "Exits 1 when an account differs.",
    )
    parser.add_argument("--table", required=True, help="the billing table's name")
    parser.add_argument("--endpoint-url", help="DynamoDB endpoint (DynamoDB Local); default: the SDK's")
    parser.add_argument("--region", help="AWS region; default: the SDK's")
    parser.add_argument("--account", action="append", dest="accounts", help="check only this account (repeatable)")
    parser.add_argument("--read-rate", type=float, default=DEFAULT_READ_RATE,
                        help=f"read capacity units per second at most (default {DEFAULT_READ_RATE:g})")
    parser.add_argument("--catalog", help="price catalog JSON (default: the packaged one)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = args.endpoint_url
    if args.region:
        os.environ["AWS_DEFAULT_REGION"] = os.environ["AWS_REGION"] = args.region
    report = reconcile(table_models(args.table), load_catalog(args.catalog), accounts=args.accounts,
                       read_rate=args.read_rate)
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report))
    return 1 if report.differences else 0


if __name__ == "__main__":
    sys.exit(main())
