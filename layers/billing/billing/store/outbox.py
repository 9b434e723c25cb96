"""The outbox's side of the table: reading the effects of a committed change from its record (as
the table's stream delivers it), and remembering the mails SES accepted.

A mail is remembered after SES accepts it, so a redelivered record does not mail again; only a crash
between SES accepting a mail and this record can send it twice (at least once, as the rules ask).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError

from billing.domain.model import Effect, from_json
from billing.store import keys
from billing.store.idempotency import RECORD_DAYS
from billing.store.tables import TableModels


@dataclass(frozen=True)
class OutboxRecord:
    """The effects of one committed change, from a stream record of its idempotency record."""

    account_id: str
    event_id: str
    effects: list[Effect]


def from_stream_record(record: dict[str, Any]) -> OutboxRecord | None:
    """The outbox of a stream record (DynamoDB JSON), or None for any other change of the table."""
    if record.get("eventName") != "INSERT":
        return None
    image = (record.get("dynamodb") or {}).get("NewImage") or {}
    pk, sk, effects = (image.get(name, {}).get("S") for name in ("pk", "sk", "effects"))
    event_prefix = keys.event_sk("")
    if not (pk and sk and effects) or not keys.is_account_pk(pk) or not sk.startswith(event_prefix):
        return None
    return OutboxRecord(keys.account_of(pk), sk.removeprefix(event_prefix), from_json(effects, list[Effect]))


def was_sent(models: TableModels, account_id: str, effect_id: str) -> bool:
    try:
        models.EventRecord.get(keys.account_pk(account_id), keys.sent_sk(effect_id), consistent_read=True)
    except DoesNotExist:
        return False
    return True


def mark_sent(models: TableModels, account_id: str, effect_id: str) -> None:
    item = models.EventRecord(
        keys.account_pk(account_id), keys.sent_sk(effect_id), expires=int(time.time()) + RECORD_DAYS * 86400
    )
    try:
        item.save(condition=models.EventRecord.pk.does_not_exist())
    except PutError as exc:
        if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise
