"""The PynamoDB models of the single billing table (key formats in :mod:`billing.store.keys`).

Models are declared once with a placeholder table name and bound to a real table by
:func:`table_models` (tests and the local stack use tables of their own).

Every PynamoDB connection of a thread shares one botocore session. PynamoDB asks botocore for a new
session per connection, and it has one connection per model (pynamodb/PynamoDB#1245): each new
session reads and parses botocore's JSON data again before its first client (0.1–0.2 s each, five
or six times per table). Clients stay one per connection; sessions stay one per thread, the reason
PynamoDB made them per connection (botocore's client creation is not thread-safe).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import botocore.session
import pynamodb.connection.base
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from billing.store.keys import STATE


class EntryByGsi1(GlobalSecondaryIndex["EntryItem"]):
    """GSI1 over ledger entries: an account's AI entries (``ACCOUNT#<id>#AI``)."""

    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class RecordByGsi1(GlobalSecondaryIndex["RecordItem"]):
    """GSI1 over other records: an account's purchases (``ACCOUNT#<id>#PURCHASES``)."""

    class Meta:
        index_name = "gsi1"
        projection = AllProjection()

    gsi1pk = UnicodeAttribute(hash_key=True)
    gsi1sk = UnicodeAttribute(range_key=True)


class ActiveIndex(GlobalSecondaryIndex["AccountItem"]):
    """The sparse index of accounts whose containers use resources, by shard."""

    class Meta:
        index_name = "active"
        projection = KeysOnlyProjection()

    active_shard = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class DueIndex(GlobalSecondaryIndex["AccountItem"]):
    """The sparse index of accounts by the time they next need a check (forecast), by shard."""

    class Meta:
        index_name = "due"
        projection = KeysOnlyProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    due_at = UnicodeAttribute(range_key=True)


class AccountItem(Model):
    """The account's items with a versioned JSON body: ``STATE`` (the balance item; its ``version``
    guards every change of the account) and ``CONTAINER#<id>`` (one container)."""

    class Meta:
        table_name = "billing"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default=STATE)
    body = UnicodeAttribute()
    version = NumberAttribute(default=0)
    as_of = UnicodeAttribute(null=True)
    active_shard = UnicodeAttribute(null=True)  # balance: set while the account has containers
    due_shard = UnicodeAttribute(null=True)  # balance: set while a check is due at due_at
    due_at = UnicodeAttribute(null=True)
    expires = NumberAttribute(null=True)  # DynamoDB TTL: a container deleted long ago
    active = ActiveIndex()
    due = DueIndex()


class EventRecordItem(Model):
    """``EVENT#<event_id>`` (or an operator request's ``IDEM#…``): an applied event or request, its
    stored result, and the effects it asked for (the outbox: the table's stream delivers a record
    with ``effects`` to the outbox dispatcher)."""

    class Meta:
        table_name = "billing"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    effects = UnicodeAttribute(null=True)  # JSON list of effects; absent when there are none
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
    ai = EntryByGsi1()


class UsageItem(Model):
    """``USAGE#D#<day>`` and ``USAGE#C#<container>#<day>``: µcr per hour and cell, one number attribute
    each, named by :mod:`billing.store.usage` (added atomically in the settlement's transaction)."""

    class Meta:
        table_name = "billing"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class RecordItem(Model):
    """Other records of the table (purchases, coupons): a JSON body under pk/sk, versioned."""

    class Meta:
        table_name = "billing"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    body = UnicodeAttribute()
    version = NumberAttribute(default=0)
    gsi1pk = UnicodeAttribute(null=True)
    gsi1sk = UnicodeAttribute(null=True)
    by_gsi1 = RecordByGsi1()


_M = TypeVar("_M", bound=Model)
_sessions = threading.local()


def thread_session(env_vars: dict[str, tuple[Any, Any, Any, Any]] | None = None) -> botocore.session.Session:
    """This thread's botocore session, made once (see the module's docstring); ``env_vars``, which
    PynamoDB never passes, makes a session of its own as botocore's ``get_session`` does."""
    if env_vars is not None:
        return botocore.session.get_session(env_vars)
    session: botocore.session.Session | None = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = botocore.session.get_session()
    return session


pynamodb.connection.base.get_session = thread_session  # what Connection.session calls


def _bound(model: type[_M], table_name: str) -> type[_M]:
    """A subclass of ``model`` bound to ``table_name`` (with a connection of its own)."""
    meta = type("Meta", (), {"table_name": table_name, "max_retry_attempts": 3})
    return type(model.__name__, (model,), {"Meta": meta, "_connection": None})


@dataclass
class TableModels:
    """The PynamoDB models of one table."""

    table_name: str
    connection: Connection
    Account: type[AccountItem]
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
        _bound(AccountItem, table_name),
        _bound(EventRecordItem, table_name),
        _bound(EntryItem, table_name),
        _bound(UsageItem, table_name),
        _bound(RecordItem, table_name),
    )
