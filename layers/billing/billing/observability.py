"""The one observability module: Powertools logger, metrics and tracer shared by every handler, and
the few helpers that name what the operators' dashboard and alarms read (``template.yaml``,
``BillingDashboard`` and the alarms after ``AlarmTopic``).

Metrics are CloudWatch embedded metric format (EMF) records in the ``CreditBilling`` namespace with
the ``service`` dimension; :func:`refused` adds one with a ``reason`` dimension as well (its own EMF
record, since a flush's dimensions apply to all of its metrics). Log lines of a unit of work carry
``account_id``, ``event_id`` and ``correlation_id`` (:func:`log_context`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from billing.domain.amounts import MICRO
from billing.domain.model import Effect, LedgerEntry, OutboundEvent

NAMESPACE = "CreditBilling"

logger = Logger()
metrics = Metrics(namespace=NAMESPACE)
# Only botocore is patched: every AWS call (PynamoDB's included) goes through it, and patching all
# the libraries the X-Ray SDK knows (sqlite3, httplib, requests...) costs cold-start time for nothing.
tracer = Tracer(patch_modules=("botocore",))
# Metrics with a dimension of their own, flushed at once as EMF records of their own (the shared
# ``metrics`` flush has the ``service`` dimension alone).
_by_reason = EphemeralMetrics(namespace=NAMESPACE)

# The metric names the dashboard and the alarms read (template.yaml); tests/test_operations.py
# checks that each is emitted and named by the template.
EVENTS_SETTLED = "EventsSettled"
EVENTS_REJECTED = "EventsRejected"
SETTLEMENT_LATENCY = "SettlementLatency"
CREDITS_CHARGED = "CreditsCharged"
DEBTS_OPENED = "DebtsOpened"
AUTO_TOP_UPS = "AutoTopUps"
MAILS_SENT = "MailsSent"
OUTBOX_DELIVERY_FAILURES = "OutboxDeliveryFailures"
MONTH_CLOSE_STARTED = "MonthCloseStarted"
MONTH_CLOSE_LATE = "MonthCloseLate"
MONTH_CLOSE_BEHIND = "MonthCloseBehind"


@contextmanager
def log_context(account_id: str | None, event_id: str | None, correlation_id: str | None) -> Iterator[None]:
    """Every log line inside carries the unit of work's account, event and correlation id (the keys
    are removed on the way out, so the next record of a batch starts clean)."""
    with logger.append_context_keys(account_id=account_id, event_id=event_id, correlation_id=correlation_id):
        yield


@contextmanager
def settlement_timer(clock: Callable[[], float] = time.perf_counter) -> Iterator[None]:
    """``SettlementLatency`` (ms): how long settling one event took, recorded when it succeeded."""
    start = clock()
    yield
    metrics.add_metric(name=SETTLEMENT_LATENCY, unit="Milliseconds", value=round((clock() - start) * 1000, 3))


def refused(reason: str) -> None:
    """One refused platform event: ``EventsRejected`` in total and by ``reason`` (an error code)."""
    metrics.add_metric(name=EVENTS_REJECTED, unit="Count", value=1)
    _by_reason.add_dimension(name="reason", value=reason)
    _by_reason.add_metric(name=EVENTS_REJECTED, unit=MetricUnit.Count, value=1)
    _by_reason.flush_metrics()
    _by_reason.clear_metrics()  # also when metrics are disabled (tests), when the flush keeps them


def committed(entries: Sequence[LedgerEntry], effects: Sequence[Effect], debt_before: int, debt_after: int) -> None:
    """What one committed change did, for the dashboard: credits charged (the deductions' charge
    lines, paid or into debt, in credits), a debt opened (none before, some after), auto top-ups
    requested."""
    charged = sum(line.amount for e in entries if e.type == "deduction" for line in e.lines)
    if charged:
        metrics.add_metric(name=CREDITS_CHARGED, unit="Count", value=charged / MICRO)
    if debt_before == 0 and debt_after > 0:
        metrics.add_metric(name=DEBTS_OPENED, unit="Count", value=1)
    top_ups = sum(1 for e in effects if isinstance(e, OutboundEvent) and e.detail_type == "Auto Top-up Requested")
    if top_ups:
        metrics.add_metric(name=AUTO_TOP_UPS, unit="Count", value=top_ups)


def month_close_checked(checked: int, behind: int) -> None:
    """One page of the month-close check (01:00 UTC on the 1st): ``MonthCloseLate`` is 1 when an
    account of the page has not been rolled into the month yet, 0 otherwise; ``MonthCloseBehind``
    counts those accounts."""
    metrics.add_metric(name=MONTH_CLOSE_LATE, unit="Count", value=1 if behind else 0)
    metrics.add_metric(name=MONTH_CLOSE_BEHIND, unit="Count", value=behind)
    logger.info("month close checked", accounts=checked, behind=behind)
