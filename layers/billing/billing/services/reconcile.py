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

The checks are pure (:mod:`billing.domain.reconciliation`), the reads bounded
(:mod:`billing.store.reconcile_reads`). A snapshot of an account is consistent: the balance's
version is read before and after its other items, and an account that changed in between is read
again (every change writes the balance).

Operator command (exits 1 when an account differs, 0 otherwise)::

    python -m billing.services.reconcile --table billing [--endpoint-url http://127.0.0.1:8000]
        [--region eu-west-1] [--account ID ...] [--read-rate 100] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from billing.domain.catalog import PriceCatalog, load_catalog
from billing.domain.errors import InvalidInput
from billing.domain.model import OutboundEvent
from billing.domain.reconciliation import check_account
from billing.observability import logger, metrics
from billing.store.reconcile_reads import DEFAULT_READ_RATE, Busy, ReadBudget, TableReader
from billing.store.tables import TableModels, table_models

FIRST_DIFFERENCES = 20  # account ids published with the result
DETAILED_ACCOUNTS = 100  # accounts whose reasons the report keeps
REASONS_PER_ACCOUNT = 10
STOP_MARGIN_MS = 120_000  # an invocation stops this long before its timeout and continues in another
MAX_ROUNDS = 200  # invocations of one run at most (a continuation that never ends is a bug)
MAX_ACCOUNTS_NAMED = 1000  # accounts an on-demand run may name
FINISHED = "Reconciliation Finished"


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
