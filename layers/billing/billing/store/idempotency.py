"""Exactly once: the one idempotency mechanism, for platform events and HTTP requests alike.

Whatever changes the table does it in one transaction that also puts the change's *record*
(``EVENT#<event id>`` in the account's partition, or ``IDEM#<event id>`` for an operator request
that belongs to no account) on the condition that it does not exist yet. A repeat finds the record:
it changes nothing and gets the stored result (and the effects the change asked for).

For requests, the event id comes from the ``Idempotency-Key`` header (:func:`request_key`); the
stored result carries a fingerprint of the request, so the same key with another request is a 422.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from pynamodb.exceptions import DoesNotExist
from pynamodb.models import Model

from billing.domain.errors import InvalidInput, RuleViolation
from billing.domain.model import Effect, Record, from_json, to_json
from billing.store import keys
from billing.store.tables import TableModels

RECORD_DAYS = 40  # duplicates arrive within 24 h; the record outlives that comfortably
KEY_ALPHABET = frozenset(chr(c) for c in range(0x21, 0x7F))


@dataclass
class Stored:
    """What a record keeps: the result of the change and the effects it asked for."""

    result: dict[str, Any] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)


def record_item(models: TableModels, pk: str, sk: str, stored: Stored) -> Model:
    return models.EventRecord(
        pk,
        sk,
        effects=to_json(stored.effects) if stored.effects else None,
        result=json.dumps(stored.result, default=str),
        expires=int(time.time()) + RECORD_DAYS * 86400,
    )


def lookup(models: TableModels, pk: str, sk: str) -> Stored | None:
    try:
        item = models.EventRecord.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None
    result = json.loads(item.result)
    effects = from_json(item.effects, list[Effect]) if item.effects else []
    return Stored(result if isinstance(result, dict) else {}, effects)


R = TypeVar("R", bound=Record)

# A first response stored before the services kept records to answer with (records live RECORD_DAYS):
# replayed to a repeat as it was rendered then.
Rendered = dict[str, Any]


def keep(record: Record) -> dict[str, Any]:
    """A change's result that keeps ``record`` (the API renders it, for the first answer and repeats)."""
    return {"record": msgspec.to_builtins(record)}


def kept(result: dict[str, Any], kind: type[R]) -> R | Rendered:
    """The record a change's result kept; a result an earlier version stored rendered is returned
    as it is."""
    return msgspec.convert(result["record"], kind) if "record" in result else result


@dataclass(frozen=True)
class RequestKey:
    """Who a request is (its event id) and what it asks (its fingerprint)."""

    event_id: str
    fingerprint: str
    keyed: bool

    def response_to_store(self, response: dict[str, Any]) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "response": response}

    def replay(self, stored: dict[str, Any]) -> dict[str, Any]:
        """The first response of this key; another request under the same key is a 422."""
        if stored.get("fingerprint") != self.fingerprint:
            raise RuleViolation("this Idempotency-Key was used with another request")
        response = stored.get("response")
        return response if isinstance(response, dict) else {}


def request_key(scope: str, idempotency_key: str | None, method: str, path: str, body: Any) -> RequestKey:
    """The request's event id (from its ``Idempotency-Key``, else a fresh one) and fingerprint
    (SHA-256 of method, path and canonical JSON body)."""
    canonical = json.dumps({"method": method, "path": path, "body": body}, sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    if idempotency_key is None:
        return RequestKey(keys.unkeyed_request_event_id(uuid.uuid4().hex), fingerprint, keyed=False)
    if not 1 <= len(idempotency_key) <= 255 or not set(idempotency_key) <= KEY_ALPHABET:
        raise InvalidInput("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return RequestKey(keys.request_event_id(scope, idempotency_key), fingerprint, keyed=True)
