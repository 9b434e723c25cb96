"""The ledger on DynamoDB (single table, through PynamoDB): atomic, idempotent settlement.

Items of an account share the partition ``ACCOUNT#<id>``:

========================  =====================================================================
sort key                  item
========================  =====================================================================
``STATE``                 the :class:`~billing.model.AccountState` (JSON) and its ``version``
``EVENT#<event_id>``      idempotency record of an applied event, with its outbound events
``LEDGER#<at>#<entry>``   one ledger entry (credit movement); AI entries are also indexed by GSI1
``USAGE#<YYYY-MM>``       the month's usage aggregate (totals per resource and per day)
``USAGE#<YYYY-MM>#C#<c>`` the same for one container
========================  =====================================================================

A settlement is one strongly consistent ``GetItem`` of the state and one ``TransactWriteItems``
that puts the new state (condition: the version read, so concurrent settlements never lose an
update), puts the event's record (condition: absent, so a repeated ``event_id`` changes nothing),
puts the ledger entries and adds to the usage aggregates. A conflict re-reads and recomputes.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.expressions.update import Action
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from billing.catalog import PriceCatalog, load_catalog
from billing.clock import format_time, month_key, next_month_start
from billing.engine import Book
from billing.errors import ConcurrentUpdate
from billing.model import RESOURCES, AccountState, LedgerEntry, OutboundEvent, clone, from_json, to_json
from billing.observability import logger
from billing.settings import get_settings

ACTIVE_SHARDS = 8
CATCH_UP_ITEMS = 90  # a TransactWriteItems takes at most 100 items; leave room for extra writes
EVENT_RECORD_DAYS = 40  # duplicates arrive within 24 h; the record outlives that comfortably
RETRYABLE_CODES = {
    "TransactionConflict",
    "TransactionConflictException",
    "ThrottlingError",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
}


def account_pk(account_id: str) -> str:
    return f"ACCOUNT#{account_id}"


def ledger_sk(entry: LedgerEntry) -> str:
    return f"LEDGER#{format_time(entry.at)}#{entry.entry_id}"


def day_attr(day: int, resource: str) -> str:
    return f"d{day:02d}_{resource}"


class _AiIndex(GlobalSecondaryIndex["EntryItem"]):
    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class _ActiveIndex(GlobalSecondaryIndex["StateItem"]):
    class Meta:
        index_name = "active"
        projection = KeysOnlyProjection()

    active_shard = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class StateItem(Model):
    """``STATE``: the account's state as JSON, with the version that guards concurrent writes."""

    class Meta:
        table_name = "billing"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default="STATE")
    body = UnicodeAttribute()
    version = NumberAttribute()
    as_of = UnicodeAttribute()
    active_shard = UnicodeAttribute(null=True)  # set while containers use resources
    active = _ActiveIndex()


class EventRecordItem(Model):
    """``EVENT#<event_id>``: an applied event, its result, and the events it asked to publish."""

    class Meta:
        table_name = "billing"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    outbox = UnicodeAttribute(default="[]")
    result = UnicodeAttribute(default="{}")
    expires = NumberAttribute()  # DynamoDB TTL


class EntryItem(Model):
    """``LEDGER#<at>#<entry_id>``: one ledger entry as JSON."""

    class Meta:
        table_name = "billing"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    body = UnicodeAttribute()
    entry_type = UnicodeAttribute()
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    ai = _AiIndex()


class UsageItem(Model):
    """``USAGE#<month>[#C#<container>]``: µcr charged by resource and by day (added atomically)."""

    class Meta:
        table_name = "billing"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    total = NumberAttribute(default=0)
    # r_<resource> and d<DD>_<resource>, one number attribute each
    for _resource in RESOURCES:
        locals()[f"r_{_resource}"] = NumberAttribute(default=0)
        for _day in range(1, 32):
            locals()[day_attr(_day, _resource)] = NumberAttribute(null=True)
    del _resource, _day


class RecordItem(Model):
    """Other records of the table (purchases, coupons): a JSON body under pk/sk."""

    class Meta:
        table_name = "billing"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    body = UnicodeAttribute()
    version = NumberAttribute(default=0)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)


_M = TypeVar("_M", bound=Model)


def _bound(model: type[_M], table_name: str) -> type[_M]:
    """A subclass of ``model`` bound to ``table_name`` (with a connection of its own)."""
    meta = type("Meta", (), {"table_name": table_name, "max_retry_attempts": 3})
    return type(model.__name__, (model,), {"Meta": meta, "_connection": None})


@dataclass
class TableModels:
    """The PynamoDB models of one table (tests and the local stack use their own tables)."""

    table_name: str
    connection: Connection
    State: type[StateItem]
    EventRecord: type[EventRecordItem]
    Entry: type[EntryItem]
    Usage: type[UsageItem]
    Item: type[RecordItem]


@lru_cache(maxsize=16)
def table_models(table_name: str) -> TableModels:
    """The models bound to ``table_name``, built once per table name."""
    return TableModels(
        table_name,
        Connection(),
        _bound(StateItem, table_name),
        _bound(EventRecordItem, table_name),
        _bound(EntryItem, table_name),
        _bound(UsageItem, table_name),
        _bound(RecordItem, table_name),
    )


@dataclass
class Applied:
    """What applying one event did."""

    state: AccountState | None
    entries: list[LedgerEntry] = field(default_factory=list)
    outbox: list[OutboundEvent] = field(default_factory=list)
    duplicate: bool = False
    result: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1


Action_ = Callable[[AccountState | None], Book | None]
# Adds more writes to a settlement's transaction (a purchase marked paid with the credits it grants,
# a coupon's redemption count...). A failed condition among them re-reads and recomputes.
ExtraWrites = Callable[[Book, TransactWrite], None]


def _error_code(exc: BaseException) -> str | None:
    code = getattr(exc, "cause_response_code", None)
    if code:
        return str(code)
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def _is_transient(exc: BaseException) -> bool:
    if _error_code(exc) in RETRYABLE_CODES:
        return True
    cause = getattr(exc, "cause", None)
    name = type(cause or exc).__name__
    return any(word in name for word in ("Timeout", "ConnectionError", "EndpointConnection"))


class Ledger:
    """Reads and settles accounts. Collaborators (table, catalog) are arguments with defaults."""

    def __init__(
        self,
        table_name: str | None = None,
        catalog: PriceCatalog | None = None,
        max_attempts: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        settings = get_settings()
        self.models = table_models(table_name or settings.table_name)
        self.catalog = catalog or load_catalog(settings.catalog_path)
        self.max_attempts = max_attempts or settings.max_attempts
        self._sleep = sleep

    # ---------------------------------------------------------------- reads

    def load(self, account_id: str) -> AccountState | None:
        state, _ = self._read(account_id)
        return state

    def _read(self, account_id: str) -> tuple[AccountState | None, int | None]:
        try:
            item = self.models.State.get(account_pk(account_id), "STATE", consistent_read=True)
        except DoesNotExist:
            return None, None
        return from_json(item.body, AccountState), int(item.version)

    def event_record(self, account_id: str, event_id: str) -> Any | None:
        try:
            return self.models.EventRecord.get(account_pk(account_id), f"EVENT#{event_id}", consistent_read=True)
        except DoesNotExist:
            return None

    # ---------------------------------------------------------------- writes

    def apply(
        self,
        account_id: str,
        event_id: str,
        action: Action_,
        result: dict[str, Any] | None = None,
        extra: ExtraWrites | None = None,
    ) -> Applied:
        """Apply ``action`` to the account exactly once for ``event_id``.

        ``action`` gets the current state (None for no account) and returns the :class:`Book` it
        changed (or None for nothing to write). On a version conflict, a transaction conflict,
        throttling or a timeout, the whole settlement is recomputed from a fresh read and retried.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                state, version = self._read(account_id)
                book = action(clone(state) if state else None)
                if book is None:
                    return Applied(state=state, attempts=attempt)
                if state is not None and self._needs_catch_up(account_id, state, book):
                    self._roll_one_month(account_id, state, version)
                    attempt -= 1  # progress, not a failed attempt
                    continue
                self._commit(account_id, event_id, book, version, result or {}, extra)
                return Applied(book.state, book.entries, book.outbox, result=result or {}, attempts=attempt)
            except _Duplicate:
                record = self.event_record(account_id, event_id)
                outbox = from_json(record.outbox, list[OutboundEvent]) if record else []
                stored = json.loads(record.result) if record else {}
                return Applied(state=None, outbox=outbox, duplicate=True, result=stored, attempts=attempt)
            except Exception as exc:
                if not (isinstance(exc, ConcurrentUpdate) or _is_transient(exc)) or attempt >= self.max_attempts:
                    raise
                self._sleep(min(0.02 * 2**attempt, 1.0) * random.random())

    def _needs_catch_up(self, account_id: str, state: AccountState, book: Book) -> bool:
        """An account untouched for months would roll every month in one transaction; past the
        transaction's item limit the months are committed one by one first."""
        if book.state.as_of < next_month_start(next_month_start(state.as_of)):
            return False  # the common path: at most one boundary crossed, no counting needed
        items = 2 + len(book.entries) + sum(1 for _ in self._usage_updates(account_pk(account_id), book.entries))
        return items > CATCH_UP_ITEMS

    def _roll_one_month(self, account_id: str, state: AccountState, version: int | None) -> None:
        boundary = next_month_start(state.as_of)
        event_id = f"roll:{month_key(boundary)}"
        roll = Book(clone(state), self.catalog, event_id)
        roll.advance_to(boundary)
        with suppress(_Duplicate, ConcurrentUpdate):  # someone else moved the account on: the caller re-reads
            self._commit(account_id, event_id, roll, version, {})
        logger.info("account caught up one month", account_id=account_id, boundary=format_time(boundary))

    def _commit(
        self,
        account_id: str,
        event_id: str,
        book: Book,
        version: int | None,
        result: dict[str, Any],
        extra: ExtraWrites | None = None,
    ) -> None:
        m = self.models
        pk = account_pk(account_id)
        state = book.state
        new_version = (version or 0) + 1
        state.version = new_version
        uses_resources = any(
            c.deleted_at is None and (c.runs or c.created_at) for c in state.containers.values()
        )
        shard = int(hashlib.sha256(account_id.encode()).hexdigest(), 16) % ACTIVE_SHARDS
        state_item = m.State(
            pk,
            "STATE",
            body=to_json(state),
            version=new_version,
            as_of=format_time(state.as_of),
            active_shard=f"ACTIVE#{shard}" if uses_resources else None,
        )
        condition = m.State.version == version if version is not None else m.State.pk.does_not_exist()
        record = m.EventRecord(
            pk,
            f"EVENT#{event_id}",
            outbox=to_json(book.outbox),
            result=json.dumps(result, default=str),
            expires=int(time.time()) + EVENT_RECORD_DAYS * 86400,
        )
        # No ClientRequestToken of ours (botocore fills a fresh one per call): a retry after a timeout
        # re-reads the state, and if the first attempt did commit, the event's record turns the retry
        # into a recognised duplicate.
        try:
            with TransactWrite(connection=m.connection) as tx:
                tx.save(state_item, condition=condition)
                tx.save(record, condition=m.EventRecord.pk.does_not_exist())
                for entry in book.entries:
                    tx.save(self._entry_item(pk, entry))
                for item, actions in self._usage_updates(pk, book.entries):
                    tx.update(item, actions=actions)
                if extra:
                    extra(book, tx)
        except TransactWriteError as exc:
            reasons = [getattr(r, "code", None) if r else None for r in exc.cancellation_reasons]
            if len(reasons) > 1 and reasons[1] == "ConditionalCheckFailed":
                raise _Duplicate from exc
            if "ConditionalCheckFailed" in reasons or "TransactionConflict" in reasons:
                raise ConcurrentUpdate(account_id) from exc
            raise

    def _entry_item(self, pk: str, entry: LedgerEntry) -> Model:
        is_ai = any(line.resource == "ai" for line in entry.lines)
        return self.models.Entry(
            pk,
            ledger_sk(entry),
            body=to_json(entry),
            entry_type=entry.type,
            gsi1pk=f"{pk}#AI" if is_ai and entry.type in ("deduction", "debt") else None,
            gsi1sk=ledger_sk(entry) if is_ai and entry.type in ("deduction", "debt") else None,
        )

    def _usage_updates(self, pk: str, entries: Iterable[LedgerEntry]) -> Iterator[tuple[Model, list[Action]]]:
        """The month aggregates: what was charged (deductions incl. their debt part) less corrections,
        by resource and by day of the deduction, for the account and for each container."""
        deltas: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for entry in entries:
            if entry.type not in ("deduction", "correction"):
                continue
            sign = -1 if entry.type == "correction" else 1
            day = entry.at.day
            for line in entry.lines:
                if not line.amount:
                    continue
                keys = [f"USAGE#{line.month}"]
                if line.container_id:
                    keys.append(f"USAGE#{line.month}#C#{line.container_id}")
                for key in keys:
                    d = deltas[key]
                    d["total"] += sign * line.amount
                    d[f"r_{line.resource}"] += sign * line.amount
                    d[day_attr(day, line.resource)] += sign * line.amount
        usage = self.models.Usage
        for key, delta in sorted(deltas.items()):
            item = usage(pk, key)
            actions = [getattr(usage, name).add(value) for name, value in sorted(delta.items()) if value]
            if actions:
                yield item, actions


class _Duplicate(Exception):
    """The event's record exists: the event was applied before."""


def entries_from_items(items: Iterable[Any]) -> list[LedgerEntry]:
    return [from_json(item.body, LedgerEntry) for item in items]
