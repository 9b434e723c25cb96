"""The ledger on DynamoDB: atomic, idempotent changes to an account.

A change is one strongly consistent read of the account's balance item and the containers it needs
(one ``BatchGetItem``; an account-wide settlement may read the accruing containers the balance lists
with a second one) and one ``TransactWriteItems`` that puts the new balance (condition: the version
read, so concurrent changes never lose an update; every change writes the balance, so the version
guards the containers too), the containers it changed, the change's idempotency record (condition:
absent, so a repeated event changes nothing; :mod:`billing.store.idempotency`), the ledger entries,
the usage aggregates' additions, and any other record the change touched (a purchase, a coupon) on
its own version condition. A version conflict, a transaction conflict, throttling or a timeout
re-reads and recomputes the whole change.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from msgspec.structs import replace
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from billing.config import get_config
from billing.domain import controls, rollover
from billing.domain.account import DELETED_KEPT, Account, Containers
from billing.domain.catalog import PriceCatalog, load_catalog
from billing.domain.clock import format_time, month_key, next_month_start
from billing.domain.errors import ConcurrentUpdate, Conflict, ServiceBusy
from billing.domain.model import (
    SCHEMA,
    AccountState,
    Container,
    Effect,
    LabelDays,
    LedgerEntry,
    clone,
    from_json,
    to_json,
)
from billing.domain.posting import Book
from billing.observability import committed, logger
from billing.store import keys, usage, usage_fold
from billing.store.idempotency import RequestKey, Stored, lookup, record_item
from billing.store.migration import migrate_account
from billing.store.records import Write, purchase_write
from billing.store.tables import TableModels, table_models

TRANSACTION_ITEMS = 100  # a TransactWriteItems takes at most 100 items
CATCH_UP_ITEMS = 90  # leave room for extra writes
CATCH_UP_MONTHS = 12  # months caught up in one call at most (the invocation's time is bounded)
RETRYABLE_CODES = {
    "TransactionConflict",
    "TransactionConflictException",
    "ThrottlingError",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
}



@dataclass
class Change:
    """What an action decided: the changed account (its book), the result to keep with the record
    (replayed to a repeat), and other records saved in the same transaction. Without a book the
    change writes nothing and only answers ``result``."""

    book: Book | None
    result: dict[str, Any] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)


Action = Callable[[Account | None], Change | None]


@dataclass
class Applied:
    """What applying one event or request did (for a repeat: what the first one stored)."""

    state: AccountState | None
    entries: list[LedgerEntry] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    duplicate: bool = False
    result: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1


class _Duplicate(Exception):
    """The change's record exists: it was applied before."""


def _error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "cause_response_code", None)
    if code:
        return str(code)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def _cancelled(exc: BaseException) -> bool:
    """A transaction DynamoDB refused (a condition, a conflict, throttling): it did not land."""
    if isinstance(exc, ConcurrentUpdate | TransactWriteError) and getattr(exc, "cancellation_reasons", None):
        return True
    return isinstance(exc, ConcurrentUpdate) or _error_code(exc) in RETRYABLE_CODES - {"InternalServerError"}


def is_transient(exc: BaseException) -> bool:
    """A failure that a fresh attempt can get past (conflict, throttling, timeout, connection)."""
    if isinstance(exc, ConcurrentUpdate) or _error_code(exc) in RETRYABLE_CODES:
        return True
    cause = getattr(exc, "cause", None)
    name = type(cause or exc).__name__
    return any(word in name for word in ("Timeout", "ConnectionError", "EndpointConnection"))


class Ledger:
    """Reads and changes accounts. Collaborators (table, catalog, sleep) are arguments with defaults."""

    def __init__(
        self,
        table_name: str | None = None,
        catalog: PriceCatalog | None = None,
        max_attempts: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        config = get_config()
        self.models: TableModels = table_models(table_name or config.table_name)
        self.catalog = catalog or load_catalog(config.catalog_path)
        self.max_attempts = max_attempts or config.max_attempts
        self._sleep = sleep

    # ---------------------------------------------------------------- reads

    def load(self, account_id: str) -> AccountState | None:
        """The account's balance item (no container is read)."""
        account, _, _ = self._read(account_id, ())
        return account.state if account else None

    def container(self, account_id: str, container_id: str) -> Container | None:
        return self._containers(account_id, [container_id]).get(container_id)

    def _read(self, account_id: str, container_ids: Sequence[str]) -> tuple[Account | None, int | None, str | None]:
        """The balance, its label days and the given containers in one consistent BatchGetItem (the
        account's other containers are read on demand), and the label days as stored apart (None:
        not stored apart yet, though the balance has some)."""
        pk = keys.account_pk(account_id)
        wanted = [(pk, keys.STATE), (pk, keys.LABELS),
                  *((pk, keys.container_sk(cid)) for cid in dict.fromkeys(container_ids))]
        items = {item.sk: item for item in self.models.Account.batch_get(wanted, consistent_read=True)}
        balance, labels = items.pop(keys.STATE, None), items.pop(keys.LABELS, None)
        if balance is None:
            return None, None, None
        state = from_json(balance.body, AccountState)
        stored = None if state.label_days != LabelDays() else to_json(LabelDays())
        if labels is not None:  # kept apart from the balance (README, "Usage aggregates (issue 19)")
            state.label_days, stored = from_json(labels.body, LabelDays), labels.body
        if state.schema < SCHEMA:
            migrate_account(self.models, self.catalog, account_id)
            return self._read(account_id, container_ids)
        loaded = {c.container_id: c for c in (from_json(i.body, Container) for i in items.values())}
        containers = Containers(loader=lambda ids: self._containers(account_id, ids), loaded=loaded)
        return Account(state, containers), int(balance.version), stored

    def _containers(self, account_id: str, container_ids: Sequence[str]) -> dict[str, Container]:
        pk = keys.account_pk(account_id)
        found: dict[str, Container] = {}
        for start in range(0, len(container_ids), 100):  # BatchGetItem reads at most 100 keys
            chunk = [(pk, keys.container_sk(cid)) for cid in container_ids[start : start + 100]]
            for item in self.models.Account.batch_get(chunk, consistent_read=True):
                c = from_json(item.body, Container)
                found[c.container_id] = c
        return found

    def stored(self, account_id: str, event_id: str) -> Stored | None:
        """The record of an event or request applied to the account, if any."""
        return lookup(self.models, keys.account_pk(account_id), keys.event_sk(event_id))

    def has_entries(self, account_id: str, event_id: str, at: datetime) -> bool:
        """Whether the ledger holds entries of the event dated ``at``: what shows an event applied
        once its record has expired. An entry's key is ``LEDGER#<at>#<event id>:<n>``, and whatever
        an event deducts or gives back for its own month is dated at the event's time, so one query
        of that key prefix finds it (bounded: the event's entries of that second)."""
        m = self.models
        prefix = f"{keys.ledger_bound(at)}#{event_id}:"
        items = m.Entry.query(keys.account_pk(account_id), m.Entry.sk.startswith(prefix), consistent_read=True)
        # The prefix also matches an event whose id extends this one's with ":": compare the ids.
        return any(entry.event_id == event_id for entry in entries_from_items(items))

    # ---------------------------------------------------------------- writes

    def apply(self, account_id: str, event_id: str, action: Action, containers: Sequence[str] = ()) -> Applied:
        """Apply ``action`` to the account exactly once for ``event_id``.

        ``action`` gets the account as read (None for no account; ``containers`` are read with the
        balance, any other on demand) and returns the :class:`Change` it decided (None: nothing to
        write). Transient failures recompute the whole
        change from a fresh read, up to ``max_attempts`` times; when a commit's answer was lost (a
        timeout), the change's record is looked up first, so a change that did land is answered from
        its record instead of being decided again. Throttling that outlasts the attempts is a
        :class:`ServiceBusy`; conflicts that do are a :class:`ConcurrentUpdate`."""
        attempt, months_caught_up, maybe_committed = 0, 0, False
        while True:
            attempt += 1
            committing = False
            try:
                if maybe_committed and (stored := self.stored(account_id, event_id)) is not None:
                    return Applied(None, effects=stored.effects, duplicate=True, result=stored.result, attempts=attempt)
                account, version, labels_read = self._read(account_id, containers)
                state = clone(account.state) if account else None
                change = action(account)
                if change is None or change.book is None:
                    return Applied(state=state, result=change.result if change else {}, attempts=attempt)
                if state is not None and self._needs_catch_up(account_id, state, change.book):
                    months_caught_up += 1
                    if months_caught_up > CATCH_UP_MONTHS:
                        raise ServiceBusy("the account is being caught up month by month; retry shortly")
                    self._roll_one_month(account_id, state, version, labels_read)
                    attempt -= 1  # progress, not a failed attempt
                    continue
                committing = True
                self._commit(account_id, event_id, change, version, labels_read)
                book = change.book
                committed(book.entries, book.effects, state.debt if state else 0, book.state.debt)
                if book.state.usage_spills:
                    usage_fold.fold_spills_now(self.models, account_id)
                return Applied(book.state, book.entries, book.effects, result=change.result, attempts=attempt)
            except _Duplicate:
                stored = self.stored(account_id, event_id) or Stored()
                return Applied(None, effects=stored.effects, duplicate=True, result=stored.result, attempts=attempt)
            except Exception as exc:
                if isinstance(exc, ServiceBusy) or not is_transient(exc):
                    raise
                maybe_committed = maybe_committed or (committing and not _cancelled(exc))
                if attempt >= self.max_attempts:
                    if isinstance(exc, ConcurrentUpdate):
                        raise
                    raise ServiceBusy("the billing table is busy; retry shortly") from exc
                self._sleep(min(0.02 * 2**attempt, 1.0) * random.random())

    def request(
        self, account_id: str, req: RequestKey, action: Action, containers: Sequence[str] = ()
    ) -> tuple[dict[str, Any], Applied]:
        """Apply an HTTP request once: a keyed repeat replays the first response (or is a 422).
        The action's ``result`` is the response."""
        if req.keyed:
            stored = self.stored(account_id, req.event_id)
            if stored is not None:
                return req.replay(stored.result), Applied(None, effects=stored.effects, duplicate=True)

        def keep_response(account: Account | None) -> Change | None:
            change = action(account)
            if change is not None:
                change.result = req.response_to_store(change.result)
            return change

        applied = self.apply(account_id, req.event_id, keep_response, containers)
        return req.replay(applied.result), applied

    def operator_request(
        self, req: RequestKey, writes: list[Write], response: dict[str, Any], conflict: str
    ) -> dict[str, Any]:
        """An operator request that belongs to no account (a new coupon): its writes and its record
        (``IDEM#…``) in one transaction; a keyed repeat replays the first response. A failed
        condition of the writes is a :class:`Conflict` with the message ``conflict``."""
        pk, sk = keys.operator_request_pk(req.event_id), keys.IDEM

        def replayed() -> dict[str, Any] | None:
            stored = lookup(self.models, pk, sk) if req.keyed else None
            return req.replay(stored.result) if stored is not None else None

        if (first := replayed()) is not None:
            return first
        try:
            with TransactWrite(connection=self.models.connection) as tx:
                for item, condition in writes:
                    tx.save(item, condition=condition)
                if req.keyed:
                    record = record_item(self.models, pk, sk, Stored(req.response_to_store(response)))
                    tx.save(record, condition=self.models.EventRecord.pk.does_not_exist())
        except TransactWriteError:
            if (first := replayed()) is not None:  # a concurrent repeat of the same key committed first
                return first
            raise Conflict(conflict) from None
        return response

    # ---------------------------------------------------------------- commit

    def _needs_catch_up(self, account_id: str, state: AccountState, book: Book) -> bool:
        """An account untouched for months would roll every month in one transaction; past the
        transaction's item limit the months are committed one by one first."""
        if rollover.months_behind(state, book.state.as_of) < 2:
            return False  # the common path: at most one boundary crossed, no counting needed
        writes = 2 + len(book.entries) + len(book.containers.loaded)
        return writes + usage.count(book.entries) > CATCH_UP_ITEMS

    def _roll_one_month(self, account_id: str, state: AccountState, version: int | None, kept: str | None) -> None:
        boundary = next_month_start(state.as_of)
        event_id = keys.roll_event_id(month_key(boundary))
        containers = Containers(loader=lambda ids: self._containers(account_id, ids))
        roll = Book(Account(clone(state), containers), self.catalog, event_id)
        rollover.advance_to(roll, boundary)
        with suppress(_Duplicate, ConcurrentUpdate):  # someone else moved the account on: the caller re-reads
            self._commit(account_id, event_id, Change(roll), version, kept)
            committed(roll.entries, roll.effects, state.debt, roll.state.debt)
        logger.info("account caught up one month", account_id=account_id, boundary=format_time(boundary))

    def _commit(self, account_id: str, event_id: str, change: Change, version: int | None, kept: str | None) -> None:
        m = self.models
        pk = keys.account_pk(account_id)
        book = change.book
        assert book is not None
        state = book.state
        changed = controls.close(book)
        state.version = (version or 0) + 1
        first_entry = 2 + len(changed) + len(book.purchases)  # the entries' places in the transaction
        # The usage aggregates take the transaction's remaining room; past it, a spill item (usage.plan).
        # The day's label combinations live in an item of their own, written only when they change:
        # a labelled stop once the day's combinations are known writes what an unlabelled one does.
        labels = to_json(state.label_days)
        labels_item = m.Account(pk, keys.LABELS, body=labels) if labels != kept else None
        room = TRANSACTION_ITEMS - first_entry - len(book.entries) - len(change.writes) - (labels_item is not None)
        usage_writes = usage.writes(m, account_id, event_id, book.entries, room)
        state.usage_spills = sorted({*state.usage_spills, *usage_writes.spill_days})
        due = format_time(state.next_check_at) if state.next_check_at else None
        state_item = m.Account(
            pk,
            keys.STATE,
            body=to_json(replace(state, label_days=LabelDays())),
            version=state.version,
            as_of=format_time(state.as_of),
            active_shard=keys.active_shard(account_id) if state.containers_count else None,
            due_shard=keys.due_shard(account_id) if due else None,
            due_at=due,
        )
        condition = m.Account.version == version if version is not None else m.Account.pk.does_not_exist()
        record = record_item(m, pk, keys.event_sk(event_id), Stored(change.result, book.effects))
        # No ClientRequestToken of ours (botocore fills a fresh one per call): a retry after a timeout
        # re-reads the state, and if the first attempt did commit, the record turns the retry into a
        # recognised duplicate.
        try:
            with TransactWrite(connection=m.connection) as tx:
                tx.save(state_item, condition=condition)
                tx.save(record, condition=m.EventRecord.pk.does_not_exist())
                for c in changed:
                    tx.save(self._container_item(pk, c))
                for purchase in book.purchases:
                    item, purchase_condition = purchase_write(m, purchase, None)
                    tx.save(item, condition=purchase_condition)
                for entry in book.entries:
                    # Written only if absent: an event applied again after its record expired
                    # never overwrites (nor doubles) what the first application wrote.
                    tx.save(self._entry_item(account_id, entry), condition=m.Entry.pk.does_not_exist())
                for item, actions in usage_writes.updates:
                    tx.update(item, actions=actions)
                for spill in usage_writes.spills:
                    tx.save(spill)
                for number, activity in enumerate(book.activities, start=1):
                    sk = keys.activity_sk(activity.at, state.version, number)
                    tx.save(m.Item(pk, sk, body=to_json(activity)))
                for item, item_condition in change.writes:
                    tx.save(item, condition=item_condition)
                if labels_item is not None:
                    tx.save(labels_item)
        except TransactWriteError as exc:
            reasons = [getattr(r, "code", None) if r else None for r in exc.cancellation_reasons]
            entries = reasons[first_entry : first_entry + len(book.entries)]
            if (len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed") or "ConditionalCheckFailed" in entries:
                raise _Duplicate from exc
            if "ConditionalCheckFailed" in reasons or "TransactionConflict" in reasons:
                raise ConcurrentUpdate(account_id) from exc
            raise

    def _container_item(self, pk: str, c: Container) -> Model:
        # A deleted container's item expires a while after the deletion (DynamoDB TTL).
        expires = int((c.deleted_at + DELETED_KEPT).timestamp()) if c.deleted_at else None
        return self.models.Account(pk, keys.container_sk(c.container_id), body=to_json(c), expires=expires)

    def _entry_item(self, account_id: str, entry: LedgerEntry) -> Model:
        indexed = entry.type in ("deduction", "debt") and any(line.resource == "ai" for line in entry.lines)
        sk = keys.ledger_sk(entry.at, entry.entry_id)
        return self.models.Entry(
            keys.account_pk(account_id),
            sk,
            body=to_json(entry),
            entry_type=entry.type,
            gsi1pk=keys.ai_index_pk(account_id) if indexed else None,
            gsi1sk=sk if indexed else None,
        )


def entries_from_items(items: Iterable[Any]) -> list[LedgerEntry]:
    return [from_json(item.body, LedgerEntry) for item in items]
