"""The monthly job and the periodic check: find every account whose containers use resources and
enqueue one sweep per account; a sweep settles that account up to the scheduled time.

A sweep is idempotent twice over: its id names the month (or the check's time), and settling an
account that is already past the time changes nothing. Running the job late, twice, or halfway and
again gives the same result.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, Any, Literal

from msgspec import Meta

from billing.adapters import MessageQueue
from billing.domain.clock import format_time, month_key
from billing.domain.events import Message, UtcTime, parse_message
from billing.domain.model import to_json
from billing.observability import logger, metrics
from billing.store import keys
from billing.store.ledger import Ledger

SweepKind = Literal["month_boundary", "periodic_check"]


class SweepRequest(Message, frozen=True, kw_only=True):
    """What the scheduler hands the monthly job (the Input of its ScheduleV2 events)."""

    sweep: SweepKind
    scheduled_time: UtcTime


class AccountSweep(Message, frozen=True, kw_only=True):
    """One account to settle up to ``at``: the message body of the sweep queue."""

    account_id: Annotated[str, Meta(min_length=1)]
    at: UtcTime
    sweep: SweepKind

    @property
    def event_id(self) -> str:
        """The idempotency key: one month-boundary sweep per month, one check per scheduled time."""
        if self.sweep == "month_boundary":
            return keys.month_sweep_event_id(month_key(self.at))
        return keys.check_sweep_event_id(self.at)

    def body(self) -> str:
        return to_json(self)


def accounts_using_resources(ledger: Ledger) -> Iterator[str]:
    """Every account with containers that use resources (the sparse, sharded ``active`` index)."""
    state = ledger.models.State
    for shard in keys.active_shards():
        for item in state.active.query(shard):
            yield keys.account_of(str(item.pk))


def enqueue_sweeps(account_ids: Iterable[str], request: SweepRequest, queue: MessageQueue) -> int:
    """Send one sweep message per account, in batches of 10; returns how many were sent."""
    sent = 0
    batch: list[str] = []
    for account_id in account_ids:
        batch.append(AccountSweep(account_id=account_id, at=request.scheduled_time, sweep=request.sweep).body())
        if len(batch) == 10:
            queue.send_batch(batch)
            sent, batch = sent + len(batch), []
    if batch:
        queue.send_batch(batch)
        sent += len(batch)
    return sent


def queue_sweeps(raw: Any, ledger: Ledger, queue: MessageQueue) -> dict[str, Any]:
    """The scheduled job: one sweep per account whose containers use resources."""
    request = parse_message(raw, SweepRequest, "sweep request")
    queued = enqueue_sweeps(accounts_using_resources(ledger), request, queue)
    logger.info(
        "sweeps queued", sweep=request.sweep, scheduled_time=format_time(request.scheduled_time), accounts=queued
    )
    metrics.add_metric(name="SweepsQueued", unit="Count", value=queued)
    return {"sweep": request.sweep, "queued": queued}
