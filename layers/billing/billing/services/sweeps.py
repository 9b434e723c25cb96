"""The work queue: the monthly job, the forecast checks, and account-wide container work, split into
messages that each do a bounded amount of work, whatever the number of accounts or containers.

* The schedules (:func:`queue_sweeps`) put one :class:`ShardPage` per shard of an index on the queue:
  the ``active`` index (accounts with containers) for the month boundary, the ``due`` index
  (accounts whose forecast check is due) for the periodic check.
* A :class:`ShardPage` reads one page of its shard, queues one :class:`AccountSweep` per account on
  it, and queues the next page (the checkpoint): no invocation reads more than a page.
* The month-close check (01:00 UTC on the 1st) pages the ``active`` index the same way and, for
  each page, counts the accounts not rolled into the month yet (``MonthCloseLate``/``MonthCloseBehind``
  metrics, :func:`billing.observability.month_close_checked`; an alarm acts on them).
* An :class:`AccountSweep` settles one account up to the sweep's time (month boundary: settle,
  expire, grant; the forecast check: overuse, low-credit mail).
* A :class:`ContainerWork` settles one chunk of an account's containers (an account with too many
  accruing containers for one change) and queues the next chunk.

Every message is idempotent (its changes carry event ids derived from what it does), so a message
delivered twice, a job run late, twice, or halfway and again gives the same result.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta

from billing.adapters import MessageQueue
from billing.domain import accrual, members, overuse
from billing.domain.account import LISTED, Account
from billing.domain.clock import SECOND, format_time, month_key, month_start
from billing.domain.events import Message, UtcTime, parse_message
from billing.domain.model import WorkKind, to_json
from billing.domain.posting import Book
from billing.observability import MONTH_CLOSE_STARTED, log_context, logger, metrics, month_close_checked
from billing.services.settlement import settle_account
from billing.store import keys, queries
from billing.store.ledger import Change, Ledger

SweepKind = Literal["month_boundary", "periodic_check", "month_close_check"]
PAGE = 50  # accounts per shard page: 6 SendMessageBatch calls (its sweeps and the next page)
AccountId = Annotated[str, Meta(min_length=1, max_length=300)]


class SweepRequest(Message, frozen=True, kw_only=True):
    """What the scheduler hands the monthly job (the Input of its ScheduleV2 events)."""

    sweep: SweepKind
    scheduled_time: UtcTime


class ShardPage(Message, frozen=True, kw_only=True, tag="shard_page", tag_field="work"):
    """One page of one shard of an index: queue its accounts' sweeps, then the next page."""

    sweep: SweepKind
    shard: str
    at: UtcTime
    cursor: dict[str, str] | None = None


class AccountSweep(Message, frozen=True, kw_only=True, tag="account", tag_field="work"):
    """One account to settle up to ``at``."""

    account_id: AccountId
    at: UtcTime
    sweep: SweepKind

    @property
    def event_id(self) -> str:
        """The idempotency key: one month-boundary sweep per month, one check per scheduled time."""
        if self.sweep == "month_boundary":
            return keys.month_sweep_event_id(month_key(self.at))
        return keys.check_sweep_event_id(self.at)


class ContainerWork(Message, frozen=True, kw_only=True, tag="containers", tag_field="work"):
    """One chunk of an account's containers to settle up to ``at`` (``kind`` says why)."""

    account_id: AccountId
    kind: WorkKind
    at: UtcTime
    cursor: str | None = None  # the last container of the previous chunk
    skip: tuple[str, ...] = ()  # containers the change that asked for the work settled and asked about
    user_id: str | None = None  # member_limit: only this member's running containers


WorkMessage = ShardPage | AccountSweep | ContainerWork


def body(message: WorkMessage) -> str:
    return to_json(message)


def queue_sweeps(raw: Any, queue: MessageQueue) -> dict[str, Any]:
    """The scheduled job: one page message per shard of the index the sweep goes through."""
    request = parse_message(raw, SweepRequest, "sweep request")
    index = "due" if request.sweep == "periodic_check" else "active"
    pages = [ShardPage(sweep=request.sweep, shard=shard, at=request.scheduled_time) for shard in keys.shards(index)]
    queue.send_batch([body(p) for p in pages])
    if request.sweep == "month_boundary":
        metrics.add_metric(name=MONTH_CLOSE_STARTED, unit="Count", value=1)
    logger.info("sweep started", sweep=request.sweep, scheduled_time=format_time(request.scheduled_time),
                shards=len(pages))
    return {"sweep": request.sweep, "shards": len(pages)}


def handle_work(raw: str, ledger: Ledger, queue: MessageQueue) -> None:
    """One message of the work queue."""
    message: WorkMessage = parse_message(raw, WorkMessage, "work message")  # type: ignore[arg-type]
    # The correlation id is the job's: every line of one month close (or one check) shares it.
    job = message.kind if isinstance(message, ContainerWork) else message.sweep
    correlation_id = f"{job}:{format_time(message.at)}"
    if isinstance(message, ShardPage):
        with log_context(None, None, correlation_id):
            sweep_page(message, ledger, queue)
    elif isinstance(message, AccountSweep):
        with log_context(message.account_id, message.event_id, correlation_id):
            applied = settle_account(message.account_id, message.at, message.event_id, ledger)
            logger.info("account swept", sweep=message.sweep, entries=len(applied.entries))
    else:
        with log_context(message.account_id, None, correlation_id):
            settle_containers(message, ledger, queue)


def sweep_page(page: ShardPage, ledger: Ledger, queue: MessageQueue) -> int:
    """Queue the sweeps of one page of accounts, then the next page; returns how many (the
    month-close check counts the page's accounts not rolled into the month instead)."""
    if page.sweep == "month_close_check":
        accounts, after = queries.active_accounts(ledger.models, page.shard, PAGE, page.cursor)
        month_close_checked(len(accounts), len(queries.accounts_behind(ledger.models, accounts, month_start(page.at))))
        if after:
            queue.send_batch([body(ShardPage(sweep=page.sweep, shard=page.shard, at=page.at, cursor=after))])
        return len(accounts)
    if page.sweep == "month_boundary":
        accounts, after = queries.active_accounts(ledger.models, page.shard, PAGE, page.cursor)
    else:
        accounts, after = queries.due_accounts(ledger.models, page.shard, page.at, PAGE, page.cursor)
    messages = [body(AccountSweep(account_id=a, at=page.at, sweep=page.sweep)) for a in accounts]
    if after:  # the checkpoint: the rest of the shard is another message's work
        messages.append(body(ShardPage(sweep=page.sweep, shard=page.shard, at=page.at, cursor=after)))
    queue.send_batch(messages)
    metrics.add_metric(name="SweepsQueued", unit="Count", value=len(accounts))
    return len(accounts)


def settle_containers(work: ContainerWork, ledger: Ledger, queue: MessageQueue) -> None:
    """Settle one chunk of the account's accruing containers up to ``work.at``, then queue the next."""
    ids, last = queries.accruing_containers(ledger.models, work.account_id, LISTED, work.cursor, work.user_id)
    # The last chunk (even an empty one) ends the work: the month's check, or Credits Exhausted.
    event_id = keys.container_work_event_id(work.kind, work.at, ids[0] if ids else "#end", work.user_id)

    def action(account: Account | None) -> Change | None:
        if account is None:
            return None
        book = Book(account, ledger.catalog, event_id)
        if work.kind == "member_limit":
            members.finish_limit(book, work.user_id or "", work.at, frozenset(work.skip))
        elif work.kind == "month_close":
            for c in book.containers.loaded.values():
                accrual.settle_container(book, c, work.at)
            book.flush(work.at - SECOND, "month_end_settlement")
            if last is None and book.state.month_closing == work.at:
                book.state.month_closing = None
                overuse.check(book, max(work.at, book.state.as_of))
        elif book.state.exhausted:
            overuse.finish_exhaustion(book, work.at, skip=frozenset(work.skip))
            if last is None:
                overuse.end_of_final_settlement(book)
        else:  # credits came back before this chunk: it only settles (nothing to stop any more)
            accrual.settle_everything(book, work.at)
            book.flush(work.at, "final_settlement")
        return Change(book)

    ledger.apply(work.account_id, event_id, action, ids)
    if last:
        queue.send_batch([body(ContainerWork(account_id=work.account_id, kind=work.kind, at=work.at, cursor=last,
                                             skip=work.skip, user_id=work.user_id))])
    logger.info("containers settled", account_id=work.account_id, event_id=event_id, kind=work.kind,
                containers=len(ids), more=bool(last))

