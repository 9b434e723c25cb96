"""The outbox's side of the table: reading the effects of a committed change from its record (as
the table's stream delivers it), and remembering what became of each effect (``SENT#<effect_id>``).

An effect is remembered once delivered (EventBridge, the work queue or SES accepted it), so a
redelivered record repeats none that were; only a crash between the delivery and this record can
deliver one twice (at least once, as the rules ask; consumers drop repeats by ``effect_id``). An
effect refused for good is remembered as refused once it is dead-lettered.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pynamodb.exceptions import PutError

from billing.domain.model import Effect, from_json
from billing.store import keys
from billing.store.idempotency import RECORD_DAYS
from billing.store.tables import TableModels

BATCH_SLACK = timedelta(minutes=2)  # around a stream batch's arrival times


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


SENT = "sent"
REFUSED = "refused"


def delivered(models: TableModels, account_id: str, effect_ids: Sequence[str]) -> dict[str, str]:
    """What became of each of the effects that is remembered: ``sent`` (delivered) or ``refused``
    (refused for good and dead-lettered); one consistent BatchGetItem."""
    pk = keys.account_pk(account_id)
    found: dict[str, str] = {}
    wanted = list(dict.fromkeys(effect_ids))
    for start in range(0, len(wanted), 100):  # BatchGetItem reads at most 100 keys
        chunk = [(pk, keys.sent_sk(effect_id)) for effect_id in wanted[start : start + 100]]
        for item in models.EventRecord.batch_get(chunk, consistent_read=True):
            outcome = json.loads(item.result or "{}")
            refused = isinstance(outcome, dict) and "refused" in outcome
            found[str(item.sk).removeprefix(keys.sent_sk(""))] = REFUSED if refused else SENT
    return found


def _mark(models: TableModels, account_id: str, effect_id: str, outcome: dict[str, str], condition: Any) -> None:
    item = models.EventRecord(
        keys.account_pk(account_id), keys.sent_sk(effect_id), result=json.dumps(outcome),
        expires=int(time.time()) + RECORD_DAYS * 86400,
    )
    try:
        item.save(condition=condition)
    except PutError as exc:
        if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
            raise


def mark_sent(models: TableModels, account_id: str, effect_id: str) -> None:
    """Remember an effect delivered (also one refused before and delivered on a replay)."""
    record = models.EventRecord
    _mark(models, account_id, effect_id, {}, record.pk.does_not_exist() | record.result.startswith('{"refused"'))


def mark_refused(models: TableModels, account_id: str, effect_id: str, reason: str) -> None:
    """Remember an effect refused for good (it is in the dead-letter queue: not tried again but by
    a replay of that dead letter)."""
    _mark(models, account_id, effect_id, {"refused": reason}, models.EventRecord.pk.does_not_exist())


def committed_between(models: TableModels, first: datetime, last: datetime) -> list[OutboxRecord]:
    """The changes with effects committed in [first, last] (their records' TTL less its days), in
    commit order per account. A scan: replay is an operator's rare act."""
    m = models
    low = int((first - BATCH_SLACK).timestamp()) + RECORD_DAYS * 86400
    high = int((last + BATCH_SLACK).timestamp()) + RECORD_DAYS * 86400
    found: list[tuple[int, str, OutboxRecord]] = []
    condition = m.EventRecord.effects.exists() & m.EventRecord.expires.between(low, high)
    for item in m.EventRecord.scan(condition, consistent_read=True):
        pk, sk = str(item.pk), str(item.sk)
        if keys.is_account_pk(pk) and sk.startswith(keys.event_sk("")) and item.effects:
            record = OutboxRecord(keys.account_of(pk), sk.removeprefix(keys.event_sk("")),
                                         from_json(item.effects, list[Effect]))
            found.append((int(item.expires), sk, record))
    return [record for _, _, record in sorted(found, key=lambda f: (f[0], f[1]))]


def batch_window(info: dict[str, Any], sent_at: datetime) -> tuple[datetime, datetime]:
    """The commit window of a stream batch that OutboxDLQ holds (its ``DDBStreamBatchInfo``)."""

    def when(name: str) -> datetime | None:
        value = info.get(name)
        try:  # Lambda writes milliseconds: 2026-11-22T12:00:05.568Z
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC) if value else None
        except ValueError:
            return None

    first = when("approximateArrivalOfFirstRecord")
    last = when("approximateArrivalOfLastRecord")
    if first is None or last is None:  # a batch retried up to its record age: at most a day back
        return sent_at - timedelta(days=1), sent_at
    return first, last
