"""What an operator's replay may do beyond the rules, each named with an operator and a reason and
audited: settle an event older than the late-event window (``--allow-old``), and send dead letters
somewhere other than where they came from (``--force-destination``).

An audit item is ``AUDIT#<time>#<event id>#<nonce>`` under the account: the operator, the reason, the
message, when, and what was done (``applied``: ``new`` or ``duplicate`` for an old event, ``forced``
for a forced destination, with the ``destination``). Audit items are plain attributes written with
the table's client: the path is not reachable from the bus or the API (it needs the table's
credentials).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from billing.domain.clock import format_time
from billing.domain.errors import InvalidInput
from billing.domain.events import parse_platform_event
from billing.observability import logger
from billing.store import keys
from billing.store.ledger import Ledger

PLATFORM_SOURCES = ("platform.containers", "platform.accounts", "platform.ai")


@dataclass(frozen=True)
class OperatorAct:
    """Who asks for an act beyond the rules, and why (both required)."""

    operator: str
    reason: str

    def __post_init__(self) -> None:
        if not self.operator.strip() or not self.reason.strip():
            raise InvalidInput(f"the {self.act} needs an operator and a reason")

    @property
    def act(self) -> str:
        return "operator's act"


class OldEventPath(OperatorAct):
    """The operator's explicit permission to settle events older than the late-event window."""

    @property
    def act(self) -> str:
        return "old-event path"


class ForcedDestination(OperatorAct):
    """The operator's explicit permission to send dead letters where they did not come from."""

    @property
    def act(self) -> str:
        return "forced destination"


def _dynamodb(ledger: Ledger) -> Any:
    """The table's botocore client (the audit items are plain attributes, not a model of the ledger)."""
    return ledger.models.connection.client


def audit(ledger: Ledger, account_id: str, event_id: str, message: str, act: OperatorAct, now: datetime,
          **what: str) -> None:
    """Write an audit item of ``act`` on the message ``message`` (never overwritten)."""
    values = {
        "pk": keys.account_pk(account_id),
        "sk": keys.audit_sk(datetime.now(UTC), event_id, uuid.uuid4().hex[:8]),  # to the µs: in order
        "operator": act.operator, "reason": act.reason, "event_id": event_id, "event": message,
        "at": format_time(now), **what,
    }
    _dynamodb(ledger).put_item(
        TableName=ledger.models.table_name, Item={name: {"S": value} for name, value in values.items()},
        ConditionExpression="attribute_not_exists(pk)",
    )


def audit_items(ledger: Ledger, account_id: str) -> list[dict[str, Any]]:
    """The account's audit items (oldest first), as plain values."""
    answer = _dynamodb(ledger).query(
        TableName=ledger.models.table_name, ConsistentRead=True,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :audit)",
        ExpressionAttributeValues={":pk": {"S": keys.account_pk(account_id)}, ":audit": {"S": keys.AUDIT}},
    )
    return [{name: value["S"] for name, value in item.items()} for item in answer.get("Items", [])]


def settle_old_event(raw: dict[str, Any], ledger: Ledger, path: OldEventPath, now: datetime) -> bool:
    """Settle an old platform event with the time check lifted for it, and audit it; returns
    whether it was new (False: the ledger had it already, nothing changed).

    Applied already is what the event's idempotency record says, or, once that record has expired
    (it is kept 40 days, and these events are older than 30), the ledger's own entries of the event."""
    from billing.services.settlement import settle_platform_event  # the settlement path, only when used

    event = parse_platform_event(raw, PLATFORM_SOURCES)
    d = event.detail
    known = (ledger.stored(d.account_id, d.event_id) is not None
             or ledger.has_entries(d.account_id, d.event_id, d.occurred_at))
    duplicate = known or settle_platform_event(event, ledger, now, replayed=True).duplicate
    audit(ledger, d.account_id, d.event_id, json.dumps(raw, sort_keys=True), path, now,
          applied="duplicate" if duplicate else "new")
    logger.warning("old event replayed by an operator", account_id=d.account_id, event_id=d.event_id,
                   operator=path.operator, reason=path.reason, duplicate=duplicate)
    return not duplicate
