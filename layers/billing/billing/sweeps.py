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

from billing.clock import format_time, month_key
from billing.events import Message, UtcTime
from billing.ledger import ACTIVE_SHARDS, Ledger
from billing.model import to_json

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
            return f"sweep:month:{month_key(self.at)}"
        return f"sweep:check:{format_time(self.at)}"

    def body(self) -> str:
        return to_json(self)


def accounts_using_resources(ledger: Ledger) -> Iterator[str]:
    """Every account with containers that use resources (the sparse, sharded ``active`` index)."""
    state = ledger.models.State
    for shard in range(ACTIVE_SHARDS):
        for item in state.active.query(f"ACTIVE#{shard}"):
            yield str(item.pk).removeprefix("ACCOUNT#")


def enqueue_sweeps(account_ids: Iterable[str], request: SweepRequest, queue_url: str, sqs: Any) -> int:
    """Send one sweep message per account, in batches of 10; returns how many were sent."""
    sent = 0
    batch: list[dict[str, str]] = []

    def flush() -> None:
        nonlocal sent, batch
        if not batch:
            return
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=batch)
        if response.get("Failed"):
            raise RuntimeError(f"{len(response['Failed'])} sweep messages were not queued")
        sent += len(batch)
        batch = []

    for account_id in account_ids:
        sweep = AccountSweep(account_id=account_id, at=request.scheduled_time, sweep=request.sweep)
        batch.append({"Id": str(len(batch)), "MessageBody": sweep.body()})
        if len(batch) == 10:
            flush()
    flush()
    return sent
