"""Replay: the operator's way to send what a dead-letter queue holds back where it came from, once
the cause is fixed, and the one path for platform events older than the late-event window.

What each dead-letter queue holds, and where a replay sends it (every message is judged alone):

* ``PlatformEventsDLQ``: platform events the intake refused or could not take (EventBridge events,
  with ``ErrorCode``/``ErrorMessage``). Replayed with ``PutEvents`` on the default bus, as the
  platform sent them: the intake validates them again.
* ``SettlementDLQ`` and ``WorkDLQ``: messages of a queue whose redrive policy names the DLQ
  (``ListDeadLetterSourceQueues``). Sent back to that queue, in their message group for a FIFO
  queue (with a new deduplication id: SQS would drop a repeat of the original's within 5 minutes),
  without the intake's acceptance time (a replayed event is checked with the settlement's clock).
* ``OutboxDLQ``: a stream batch whose effects kept failing (``DDBStreamBatchInfo``). The stream
  keeps records for 24 hours only, so the effects are delivered again from the table: every change
  committed in the batch's time window (its idempotency record keeps them) goes through the same
  delivery as the dispatcher's, which repeats no effect delivered already. And an effect refused for
  good (``RefusedEffect``: a mail SES rejects), tried again; refused again, it stays, with its reason.

``--to`` overrides where they go: a queue's URL, or an event bus (its name or ARN) for platform events
whatever DLQ holds them (``--to default`` sends what ``SettlementDLQ`` holds through the intake again).
A destination the messages did not come from (not the DLQ's redrive source; for platform events, not
the default bus) is refused: a message sent where it does not belong is lost to another DLQ. Only
``--force-destination --operator NAME --reason TEXT`` sends them there, each audited.

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
(:mod:`billing.services.operator_acts`). Its idempotency record may have expired by then: the
ledger's own entries of the event say whether it was applied; if so nothing changes and the report
lists it as a duplicate.

    python -m billing.services.replay --dlq <url or name> [--to <queue url | event bus>] [--max N]
        [--dry-run] [--json] [--endpoint-url URL] [--region R] [--table T]
        [--allow-old | --force-destination] [--operator NAME --reason TEXT]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from billing.adapters import MessageQueue
from billing.domain.clock import parse_time, utc_now
from billing.domain.errors import BillingError, InvalidInput
from billing.domain.events import OLDEST_ACCEPTED
from billing.observability import logger
from billing.services.intake import ACCEPTED_AT, message_group
from billing.services.operator_acts import PLATFORM_SOURCES as PLATFORM_SOURCES
from billing.services.operator_acts import ForcedDestination, OldEventPath, audit, settle_old_event
from billing.services.operator_acts import audit_items as audit_items  # the old-event path's audit, read
from billing.services.outbox import Deliver, Refusal
from billing.services.outbox import configured_delivery as _delivery
from billing.store import outbox
from billing.store.ledger import Ledger

PLATFORM_BUS = "default"  # the bus the platform puts its events on (the intake's rules)


@dataclass
class ReplayReport:
    """What a replay did, message by message."""

    received: int = 0
    moved: Counter[str] = field(default_factory=Counter)  # by where it went: bus, queue, outbox, old-event path
    kept: list[tuple[str, str]] = field(default_factory=list)  # (message id, why it stays in the DLQ)
    ids: list[str] = field(default_factory=list)  # the event ids (or message ids, effect ids) moved
    duplicates: list[str] = field(default_factory=list)  # old events applied already: nothing changed
    refused: list[str] = field(default_factory=list)  # effects refused for good: dead-lettered alone
    redelivered_changes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"received": self.received, "moved": dict(self.moved), "kept": self.kept, "ids": self.ids,
                "duplicates": self.duplicates, "refused": self.refused,
                "redelivered_changes": self.redelivered_changes}


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


def _account_id(raw: Any) -> str:
    """The account a message is about: a platform event's, or a work message's."""
    detail = raw.get("detail") if isinstance(raw, dict) else None
    value = (detail if isinstance(detail, dict) else raw if isinstance(raw, dict) else {}).get("account_id")
    return value if isinstance(value, str) else ""


@dataclass
class Replayer:
    """Moves one DLQ's messages on. Collaborators are arguments: the SQS and EventBridge clients,
    the ledger (for the outbox, the old-event path and the audit), the effects' delivery, and the clock."""

    sqs: Any
    events: Any
    ledger: Ledger | None = None
    deliver: Deliver | None = None
    clock: Callable[[], datetime] = utc_now
    event_bus: str = PLATFORM_BUS
    target_queue: str | None = None  # instead of the DLQ's redrive source (--to a queue URL)
    to_bus: bool = False  # platform events to ``event_bus`` whatever DLQ holds them (--to a bus)
    forced: ForcedDestination | None = None  # --force-destination: anywhere, each message audited
    _audited: bool = field(default=False, init=False)  # the destination is not the messages' origin

    def source_queue(self, dlq_url: str) -> str | None:
        sources = self.sqs.list_dead_letter_source_queues(QueueUrl=dlq_url).get("queueUrls") or []
        return str(sources[0]) if sources else None

    def destination(self, dlq_url: str) -> str | None:
        """The queue the DLQ's messages go to (None: the bus). A destination they did not come from
        (not the DLQ's redrive source; for platform events, not the bus the platform puts them on)
        is refused unless forced: a message sent where it does not belong is lost to another DLQ."""
        source = self.source_queue(dlq_url)
        if self.to_bus:
            bus = self.event_bus
            wrong = bus != PLATFORM_BUS and not bus.endswith(f":event-bus/{PLATFORM_BUS}")
            where, origin = bus, f"the {PLATFORM_BUS} bus, where platform events come from"
        else:
            wrong = self.target_queue is not None and self.target_queue != source
            where, origin = str(self.target_queue), source or "no queue: the DLQ is no queue's redrive target"
        self._audited = wrong
        if wrong and self.forced is None:
            raise InvalidInput(f"--to {where} is not where the messages of {dlq_url} came from ({origin}); "
                               "--force-destination with --operator and --reason sends them there, audited")
        if wrong and self.ledger is None:
            raise InvalidInput("a forced destination is audited: it needs the table (--table)")
        return None if self.to_bus else (self.target_queue or source)

    def replay(self, dlq_url: str, max_messages: int = 1000, dry_run: bool = False,
               old_events: OldEventPath | None = None) -> ReplayReport:
        report = ReplayReport()
        source = self.destination(dlq_url)
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
            return self._outbox(raw["DDBStreamBatchInfo"], message, dlq_url, dry_run, report)
        if isinstance(raw, dict) and "RefusedEffect" in raw:
            return self._refused_effect(raw, message_id, dry_run, report)
        platform_event = isinstance(raw, dict) and "detail-type" in raw and "detail" in raw
        if platform_event and _is_old(raw, self.clock()):
            if old_events is None:
                report.kept.append((message_id, "older than 30 days: replay it with --allow-old"))
                return False
            if self.ledger is None:
                raise InvalidInput("the old-event path needs the table (--table)")
            if dry_run or settle_old_event(raw, self.ledger, old_events, self.clock()):
                report.moved["old-event path"] += 1
                report.ids.append(_event_id(raw))
            else:  # applied already: nothing changed
                report.duplicates.append(_event_id(raw))
            return True
        if source is None and not platform_event:
            report.kept.append((message_id, "not a platform event, a queue's message or a stream batch"))
            return False
        if self._audited and not dry_run and not self._audit(raw, body, message_id, source, report):
            return False
        if source is not None:
            if not dry_run:
                self._to_queue(source, message, raw)
            report.moved["queue"] += 1
            report.ids.append(_event_id(raw) or message_id)
            return True
        if not dry_run:
            self._to_bus(raw, message_id)
        report.moved["bus"] += 1
        report.ids.append(_event_id(raw))
        return True

    def _audit(self, raw: Any, body: str, message_id: str, queue: str | None, report: ReplayReport) -> bool:
        """Audit a forced move under the message's account (before the move: never one unaudited)."""
        account_id = _account_id(raw)
        if not account_id:
            report.kept.append((message_id, "a forced move is audited under the message's account: it names none"))
            return False
        assert self.ledger is not None and self.forced is not None  # destination() checked both
        audit(self.ledger, account_id, _event_id(raw) or message_id, body, self.forced, self.clock(),
              applied="forced", destination=queue or self.event_bus)
        logger.warning("dead letter sent to a forced destination", account_id=account_id, message_id=message_id,
                       destination=queue or self.event_bus, operator=self.forced.operator, reason=self.forced.reason)
        return True

    def _to_queue(self, queue_url: str, message: dict[str, Any], raw: Any) -> None:
        kwargs: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": message["Body"]}
        # Not the refusal's reason, nor the intake's acceptance time: only the intake sets that one
        # (a replayed event is checked with the settlement's clock).
        attributes = {name: {"DataType": value["DataType"], "StringValue": value["StringValue"]}
                      for name, value in (message.get("MessageAttributes") or {}).items()
                      if name not in ("ErrorCode", "ErrorMessage", ACCEPTED_AT) and "StringValue" in value}
        if attributes:
            kwargs["MessageAttributes"] = attributes
        group = (message.get("Attributes") or {}).get("MessageGroupId")
        if queue_url.endswith(".fifo"):
            if not group:
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

    def _outbox(self, info: dict[str, Any], message: dict[str, Any], dlq_url: str, dry_run: bool,
                report: ReplayReport) -> bool:
        if self.ledger is None or self.deliver is None:
            raise InvalidInput("replaying the outbox needs the table (--table)")
        sent_ms = int((message.get("Attributes") or {}).get("SentTimestamp", 0)) or int(time.time() * 1000)
        first, last = outbox.batch_window(info, datetime.fromtimestamp(sent_ms / 1000, UTC))
        records = outbox.committed_between(self.ledger.models, first, last)
        if not dry_run:
            dead_letters = MessageQueue(dlq_url, client=self.sqs)  # an effect refused for good: its own dead letter
            for record in records:
                report.refused += [r.effect.effect_id for r in self.deliver(record, dead_letters)]
        report.moved["outbox"] += 1
        report.redelivered_changes += len(records)
        report.ids.append(message["MessageId"])
        return True

    def _refused_effect(self, raw: dict[str, Any], message_id: str, dry_run: bool, report: ReplayReport) -> bool:
        """A dead letter of one effect refused for good: tried again (once its cause is fixed)."""
        if self.ledger is None or self.deliver is None:
            raise InvalidInput("replaying the outbox needs the table (--table)")
        try:
            refusal = Refusal.of_body(raw)
        except (KeyError, TypeError, ValueError, msgspec.ValidationError):
            report.kept.append((message_id, "an unreadable refused effect"))
            return False
        if not dry_run:
            record = outbox.OutboxRecord(refusal.account_id, refusal.event_id, [refusal.effect])
            again = self.deliver(record, retry_refused=True)
            if again:
                report.kept.append((message_id, f"refused again: {again[0].reason}"))
                return False
        report.moved["effect"] += 1
        report.ids.append(refusal.effect.effect_id)
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
    parser.add_argument("--force-destination", action="store_true",
                        help="--to where the messages did not come from (audited)")
    parser.add_argument("--operator", default="", help="who replays (required with --allow-old, --force-destination)")
    parser.add_argument("--reason", default="", help="why (required with --allow-old, --force-destination)")
    parser.add_argument("--endpoint-url", help="DynamoDB Local / a local stack's endpoint for every service")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    for flag, given in (("--allow-old", args.allow_old), ("--force-destination", args.force_destination)):
        if given and not (args.operator.strip() and args.reason.strip()):
            parser.error(f"{flag} needs --operator and --reason")
        if given and not args.table:
            parser.error(f"{flag} needs --table")
    if args.force_destination and not args.to:
        parser.error("--force-destination needs --to")

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
    if args.force_destination:
        replayer.forced = ForcedDestination(args.operator, args.reason)
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


def _render(report: ReplayReport, dry_run: bool) -> str:
    verb = "would move" if dry_run else "moved"
    lines = [f"received {report.received}; {verb} {sum(report.moved.values())} "
             f"({', '.join(f'{k}: {v}' for k, v in sorted(report.moved.items())) or 'none'})"]
    if report.redelivered_changes:
        lines.append(f"outbox: {report.redelivered_changes} committed changes' effects delivered again")
    lines += [f"  {i}" for i in report.ids[:50]]
    lines += [f"duplicate {event_id}: applied already, nothing changed" for event_id in report.duplicates]
    lines += [f"refused for good {effect_id}: dead-lettered alone" for effect_id in report.refused]
    lines += [f"kept {message_id}: {why}" for message_id, why in report.kept]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
