"""Replay: the operator's way to send what a dead-letter queue holds back where it came from, once
the cause is fixed, and the one path for platform events older than the late-event window.

What each dead-letter queue holds, and where a replay sends it (every message is judged alone):

* ``PlatformEventsDLQ``: platform events the intake refused or could not take (EventBridge events,
  with ``ErrorCode``/``ErrorMessage``). Replayed with ``PutEvents`` on the default bus, as the
  platform sent them: the intake validates them again.
* ``SettlementDLQ`` and ``WorkDLQ``: messages of a queue whose redrive policy names the DLQ
  (``ListDeadLetterSourceQueues``). Sent back to that queue, in their message group for a FIFO
  queue (with a new deduplication id: SQS would drop a repeat of the original's within 5 minutes).
* ``OutboxDLQ``: a stream batch whose effects kept failing (``DDBStreamBatchInfo``). The stream
  keeps records for 24 hours only, so the effects are delivered again from the table: every change
  committed in the batch's time window (its idempotency record keeps them) goes through the same
  delivery as the dispatcher's. Consumers drop repeated events by ``effect_id``; a mail SES
  accepted is never sent again.

``--to`` overrides where they go: a queue's URL, or an event bus (its name or ARN) for platform events
whatever DLQ holds them (``--to default`` sends what ``SettlementDLQ`` holds through the intake again).

Why not SQS's own redrive (``StartMessageMoveTask``): it moves from a queue that is another queue's
dead-letter queue only (not ``PlatformEventsDLQ``, the DLQ of an EventBridge rule and a function, nor
``OutboxDLQ``, whose messages describe stream batches), it would move the old events that must stay,
it reports counts but not which events moved, and moto (the local stack) does not implement it. So a
replay receives, sends and deletes each message itself; the DLQ keeps a message until it was sent on.

Nothing is applied twice: a platform event is settled once per ``event_id`` (the ledger's
idempotency record), whatever number of times it is replayed. A message is deleted from the DLQ only
after it was sent on; ``--dry-run`` only reports.

An event dated more than 30 days before now would be refused again. Such a message stays in the DLQ
unless the operator names it for the old-event path: ``--allow-old --operator NAME --reason TEXT``
settles it directly on the table, with the time check lifted for it alone, and writes an audit item
(``AUDIT#<time>#<event id>#<nonce>`` under the account: operator, reason, the event, when) in the same
command. The path is not reachable from the bus or the API: it needs the table's credentials.

    python -m billing.services.replay --dlq <url or name> [--to <queue url | event bus>] [--max N]
        [--dry-run] [--json] [--endpoint-url URL] [--region R] [--table T]
        [--allow-old --operator NAME --reason TEXT]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from billing.domain.clock import format_time, parse_time, utc_now
from billing.domain.errors import BillingError, InvalidInput
from billing.domain.events import OLDEST_ACCEPTED, parse_platform_event
from billing.domain.model import Effect, from_json
from billing.observability import logger
from billing.store import keys, outbox
from billing.store.idempotency import RECORD_DAYS
from billing.store.ledger import Ledger

PLATFORM_SOURCES = ("platform.containers", "platform.accounts", "platform.ai")
WINDOW_SLACK = timedelta(minutes=2)  # around a stream batch's arrival times


@dataclass
class ReplayReport:
    """What a replay did, message by message."""

    received: int = 0
    moved: Counter[str] = field(default_factory=Counter)  # by where it went: bus, queue, outbox, old-event path
    kept: list[tuple[str, str]] = field(default_factory=list)  # (message id, why it stays in the DLQ)
    ids: list[str] = field(default_factory=list)  # the event ids (or message ids) moved
    redelivered_changes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"received": self.received, "moved": dict(self.moved), "kept": self.kept, "ids": self.ids,
                "redelivered_changes": self.redelivered_changes}


@dataclass(frozen=True)
class OldEventPath:
    """The operator's explicit permission to settle events older than the late-event window."""

    operator: str
    reason: str

    def __post_init__(self) -> None:
        if not self.operator.strip() or not self.reason.strip():
            raise InvalidInput("the old-event path needs an operator and a reason")


def _event_id(raw: Any) -> str:
    detail = raw.get("detail") if isinstance(raw, dict) else None
    value = detail.get("event_id") if isinstance(detail, dict) else None
    return str(value) if value else ""


def _is_old(raw: Any, now: datetime) -> bool:
    detail = raw.get("detail") if isinstance(raw, dict) else None
    try:
        occurred = parse_time(str(detail["occurred_at"]))  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return False  # unreadable: the intake says why when it refuses it again
    return occurred < now - OLDEST_ACCEPTED


def settle_old_event(raw: dict[str, Any], ledger: Ledger, path: OldEventPath, now: datetime) -> bool:
    """Settle an old platform event with the time check lifted for it, and audit it; returns
    whether it was new (False: the ledger had it already, nothing changed)."""
    from billing.services.settlement import settle_platform_event  # the settlement path, only when used

    event = parse_platform_event(raw, PLATFORM_SOURCES)
    account_id, event_id = event.detail.account_id, event.detail.event_id
    known = ledger.stored(account_id, event_id) is not None  # the ledger's idempotency record
    applied = settle_platform_event(event, ledger, now, replayed=True)
    duplicate = known or applied.duplicate
    values = {
        "pk": keys.account_pk(account_id),
        "sk": keys.audit_sk(datetime.now(UTC), event_id, uuid.uuid4().hex[:8]),  # to the µs: in order
        "operator": path.operator, "reason": path.reason, "event_id": event_id,
        "event": json.dumps(raw, sort_keys=True), "at": format_time(now),
        "applied": "duplicate" if duplicate else "new",
    }
    _dynamodb(ledger).put_item(
        TableName=ledger.models.table_name, Item={name: {"S": value} for name, value in values.items()},
        ConditionExpression="attribute_not_exists(pk)",  # an audit item is never overwritten
    )
    logger.warning("old event replayed by an operator", account_id=account_id, event_id=event_id,
                   operator=path.operator, reason=path.reason, duplicate=duplicate)
    return not duplicate


def _dynamodb(ledger: Ledger) -> Any:
    """The table's botocore client (the audit items are plain attributes, not a model of the ledger)."""
    return ledger.models.connection.client


def audit_items(ledger: Ledger, account_id: str) -> list[dict[str, Any]]:
    """The account's audit items of the old-event path (oldest first), as plain values."""
    answer = _dynamodb(ledger).query(
        TableName=ledger.models.table_name, ConsistentRead=True,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :audit)",
        ExpressionAttributeValues={":pk": {"S": keys.account_pk(account_id)}, ":audit": {"S": keys.AUDIT}},
    )
    return [{name: value["S"] for name, value in item.items()} for item in answer.get("Items", [])]


def committed_between(ledger: Ledger, first: datetime, last: datetime) -> list[outbox.OutboxRecord]:
    """The changes with effects committed in [first, last] (their records' TTL less its days), in
    commit order per account. A scan: replay is an operator's rare act."""
    m = ledger.models
    low = int((first - WINDOW_SLACK).timestamp()) + RECORD_DAYS * 86400
    high = int((last + WINDOW_SLACK).timestamp()) + RECORD_DAYS * 86400
    found: list[tuple[int, str, outbox.OutboxRecord]] = []
    condition = m.EventRecord.effects.exists() & m.EventRecord.expires.between(low, high)
    for item in m.EventRecord.scan(condition, consistent_read=True):
        pk, sk = str(item.pk), str(item.sk)
        if keys.is_account_pk(pk) and sk.startswith(keys.event_sk("")) and item.effects:
            record = outbox.OutboxRecord(keys.account_of(pk), sk.removeprefix(keys.event_sk("")),
                                         from_json(item.effects, list[Effect]))
            found.append((int(item.expires), sk, record))
    return [record for _, _, record in sorted(found, key=lambda f: (f[0], f[1]))]


def _batch_window(info: dict[str, Any], sent_at: datetime) -> tuple[datetime, datetime]:
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


@dataclass
class Replayer:
    """Moves one DLQ's messages on. Collaborators are arguments: the SQS and EventBridge clients,
    the ledger (for the outbox and the old-event path), the effects' delivery, and the clock."""

    sqs: Any
    events: Any
    ledger: Ledger | None = None
    deliver: Callable[[outbox.OutboxRecord], None] | None = None
    clock: Callable[[], datetime] = utc_now
    event_bus: str = "default"
    target_queue: str | None = None  # instead of the DLQ's redrive source (--to a queue URL)
    to_bus: bool = False  # platform events to ``event_bus`` whatever DLQ holds them (--to a bus)

    def source_queue(self, dlq_url: str) -> str | None:
        sources = self.sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get("queueUrls") or []
        return str(sources[0]) if sources else None

    def replay(self, dlq_url: str, max_messages: int = 1000, dry_run: bool = False,
               old_events: OldEventPath | None = None) -> ReplayReport:
        report = ReplayReport()
        source = None if self.to_bus else (self.target_queue or self.source_queue(dlq_url))
        seen: set[str] = set()
        while report.received < max_messages:
            answer = self.sqs.receive_message(
                QueueUrl=dlq_url, MaxNumberOfMessages=min(10, max_messages - report.received), WaitTimeSeconds=0,
                VisibilityTimeout=60, AttributeNames=["All"], MessageAttributeNames=["All"],
            )
            received = answer.get("Messages") or []
            messages = [msg for msg in received if msg["MessageId"] not in seen]
            for again in (msg for msg in received if msg["MessageId"] in seen):  # kept ones come round again
                self.sqs.change_message_visibility(QueueUrl=dlq_url, ReceiptHandle=again["ReceiptHandle"],
                                                   VisibilityTimeout=0)
            if not messages:
                break
            for message in messages:
                seen.add(message["MessageId"])
                report.received += 1
                moved = self._one(message, dlq_url, source, dry_run, old_events, report)
                if moved and not dry_run:
                    self.sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
                else:  # back in the queue at once (a dry run, or what stays)
                    self.sqs.change_message_visibility(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"],
                                                       VisibilityTimeout=0)
        logger.info("dead letters replayed", dlq=dlq_url, **{k: v for k, v in report.to_dict().items() if k != "ids"})
        return report

    def _one(self, message: dict[str, Any], dlq_url: str, source: str | None, dry_run: bool,
             old_events: OldEventPath | None, report: ReplayReport) -> bool:
        message_id, body = message["MessageId"], message["Body"]
        try:
            raw = json.loads(body)
        except ValueError:
            raw = None
        if isinstance(raw, dict) and "DDBStreamBatchInfo" in raw:
            return self._outbox(raw["DDBStreamBatchInfo"], message, dry_run, report)
        platform_event = isinstance(raw, dict) and "detail-type" in raw and "detail" in raw
        if platform_event and _is_old(raw, self.clock()):
            if old_events is None:
                report.kept.append((message_id, "older than 30 days: replay it with --allow-old"))
                return False
            if self.ledger is None:
                raise InvalidInput("the old-event path needs the table (--table)")
            if not dry_run:
                settle_old_event(raw, self.ledger, old_events, self.clock())
            report.moved["old-event path"] += 1
            report.ids.append(_event_id(raw))
            return True
        if source is not None:
            if not dry_run:
                self._to_queue(source, message, raw)
            report.moved["queue"] += 1
            report.ids.append(_event_id(raw) or message_id)
            return True
        if platform_event:
            if not dry_run:
                self._to_bus(raw, message_id)
            report.moved["bus"] += 1
            report.ids.append(_event_id(raw))
            return True
        report.kept.append((message_id, "not a platform event, a queue's message or a stream batch"))
        return False

    def _to_queue(self, queue_url: str, message: dict[str, Any], raw: Any) -> None:
        kwargs: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": message["Body"]}
        attributes = {name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
                      for name, value in (message.get("MessageAttributes") or {}).items()
                      if name not in ("ErrorCode", "ErrorMessage") and "StringValue" in value}
        if attributes:
            kwargs["MessageAttributes"] = attributes
        group = (message.get("Attributes") or {}).get("MessageGroupId")
        if queue_url.endswith(".fifo"):
            if not group:
                from billing.services.intake import message_group  # the settlement queue's groups

                detail = raw.get("detail") if isinstance(raw, dict) else None
                group = message_group(str((detail or {}).get("account_id", "replay")))
            kwargs["MessageGroupId"] = group
            kwargs["MessageDeduplicationId"] = hashlib.sha256(
                f"replay:{message['MessageId']}:{time.time_ns()}".encode()).hexdigest()
        self.sqs.send_message(**kwargs)

    def _to_bus(self, raw: dict[str, Any], message_id: str) -> None:
        entry: dict[str, Any] = {"Source": raw["source"], "DetailType": raw["detail-type"],
                                 "Detail": json.dumps(raw["detail"]), "EventBusName": self.event_bus}
        if raw.get("resources"):
            entry["Resources"] = raw["resources"]
        with contextlib.suppress(KeyError, TypeError, ValueError):
            entry["Time"] = parse_time(str(raw["time"]))  # the envelope's time; the id is EventBridge's own
        answer = self.events.put_events(Entries=[entry])
        if answer.get("FailedEntryCount"):
            raise RuntimeError(f"PutEvents refused the replay of {message_id}: {answer['Entries']}")

    def _outbox(self, info: dict[str, Any], message: dict[str, Any], dry_run: bool, report: ReplayReport) -> bool:
        if self.ledger is None or self.deliver is None:
            raise InvalidInput("replaying the outbox needs the table (--table)")
        sent_ms = int((message.get("Attributes") or {}).get("SentTimestamp", 0)) or int(time.time() * 1000)
        first, last = _batch_window(info, datetime.fromtimestamp(sent_ms / 1000, UTC))
        records = committed_between(self.ledger, first, last)
        if not dry_run:
            for record in records:
                self.deliver(record)
        report.moved["outbox"] += 1
        report.redelivered_changes += len(records)
        report.ids.append(message["MessageId"])
        return True


def _queue_url(sqs: Any, name_or_url: str) -> str:
    if name_or_url.startswith(("https://", "http://")):
        return name_or_url
    return str(sqs.get_queue_url(QueueName=name_or_url)["QueueUrl"])


def main(argv: Sequence[str] | None = None, clients: Callable[[str, str | None], Any] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m billing.services.replay", description=__doc__.splitlines()[0])
    parser.add_argument("--dlq", required=True, help="the dead-letter queue's URL or name")
    parser.add_argument("--to", help="where to instead of the source: a queue URL, or an event bus name or ARN")
    parser.add_argument("--max", type=int, default=1000, help="messages at most (1000)")
    parser.add_argument("--dry-run", action="store_true", help="report what would move; move nothing")
    parser.add_argument("--table", help="the billing table (the outbox and the old-event path need it)")
    parser.add_argument("--allow-old", action="store_true", help="settle events older than 30 days (audited)")
    parser.add_argument("--operator", default="", help="who replays (required with --allow-old)")
    parser.add_argument("--reason", default="", help="why (required with --allow-old)")
    parser.add_argument("--endpoint-url", help="DynamoDB Local / a local stack's endpoint for every service")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.allow_old and not (args.operator.strip() and args.reason.strip()):
        parser.error("--allow-old needs --operator and --reason")
    if args.allow_old and not args.table:
        parser.error("--allow-old needs --table")

    def client(service: str) -> Any:
        if clients is not None:
            return clients(service, args.endpoint_url)
        import boto3

        return boto3.client(service, region_name=args.region, endpoint_url=args.endpoint_url)  # type: ignore[call-overload]

    ledger = None
    deliver = None
    if args.table:
        if args.endpoint_url:
            os.environ.setdefault("AWS_ENDPOINT_URL_DYNAMODB", args.endpoint_url)
        ledger = Ledger(table_name=args.table)
        deliver = _delivery(ledger, client)
    sqs = client("sqs")
    replayer = Replayer(sqs=sqs, events=client("events"), ledger=ledger, deliver=deliver)
    if args.to and args.to.startswith(("https://", "http://")):
        replayer.target_queue = args.to
    elif args.to:
        replayer.event_bus, replayer.to_bus = args.to, True
    old = OldEventPath(args.operator, args.reason) if args.allow_old else None
    try:
        report = replayer.replay(_queue_url(sqs, args.dlq), args.max, args.dry_run, old)
    except BillingError as exc:
        print(f"replay stopped: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(_render(report, args.dry_run))
    return 0


def _delivery(ledger: Ledger, client: Callable[[str], Any]) -> Callable[[outbox.OutboxRecord], None]:
    """The dispatcher's delivery, with the deployment's settings (SES sender, work queue, bus)."""
    from billing.adapters import EventPublisher, MailSender, MessageQueue
    from billing.config import get_config
    from billing.services import outbox as outbox_service

    config = get_config()
    publisher = EventPublisher(config.event_bus_name, client=client("events"))
    mailer = MailSender(config.sender_address, client=client("sesv2"), configuration_set=config.ses_configuration_set)
    work = MessageQueue(config.work_queue_url, client=client("sqs"))

    def deliver(record: outbox.OutboxRecord) -> None:
        outbox_service.deliver(record, ledger, publisher, mailer, work, config.buy_credits_url)

    return deliver


def _render(report: ReplayReport, dry_run: bool) -> str:
    verb = "would move" if dry_run else "moved"
    lines = [f"received {report.received}; {verb} {sum(report.moved.values())} "
             f"({', '.join(f'{k}: {v}' for k, v in sorted(report.moved.items())) or 'none'})"]
    if report.redelivered_changes:
        lines.append(f"outbox: {report.redelivered_changes} committed changes' effects delivered again")
    lines += [f"  {i}" for i in report.ids[:50]]
    lines += [f"kept {message_id}: {why}" for message_id, why in report.kept]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
