"""Replay (issue 14): what a dead-letter queue holds goes back where it came from once the cause is
fixed, through the template's wiring (``local_stack``), and nothing is applied twice.

Figures (billing-rules.md): a Free account has 50 monthly credits. An AI chat with claude-haiku-4.5
of 1,000 input and 500 output tokens costs 1000 x 0.00008 + 500 x 0.0004 = 0.08 + 0.2 = 0.28 credits;
one with claude-sonnet-4.5 and 50,000 output tokens 50,000 x 0.0012 = 60 credits (10 more than 50:
a debt of 10 and ``Credits Exhausted``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from billing.domain.errors import InvalidInput
from billing.services import replay
from billing.services.replay import OldEventPath, Replayer, audit_items
from localsam.runner import StackRunner
from tests.helpers import C, assert_conserved
from tests.test_effects_faults import Account, AwsFaults, drain, mentions, now, throttled
from tests.test_effects_faults import faults as faults

HAIKU = {"feature": "chat", "model": "claude-haiku-4.5", "input_tokens": 1000, "output_tokens": 500}


class LocalBus:
    """PutEvents onto the local stack's default bus: the template's rules route what it puts."""

    def __init__(self, stack: StackRunner) -> None:
        self.stack = stack
        self.entries: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        for entry in Entries:
            self.entries.append(entry)
            result = self.stack.put_event(entry["Source"], entry["DetailType"], json.loads(entry["Detail"]),
                                          entry.get("Time"))
            assert result.ok, result.failures
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "local"} for _ in Entries]}


@pytest.fixture(scope="module")
def stack(local_stack: StackRunner) -> Iterator[StackRunner]:
    yield local_stack


def replayer(stack: StackRunner, bus: LocalBus | None = None) -> Replayer:
    account = Account(stack, "unused")
    publisher_deliver = replay._delivery(account.ledger, lambda service: stack.client(service))
    return Replayer(sqs=stack.client("sqs"), events=bus or LocalBus(stack), ledger=account.ledger,
                    deliver=publisher_deliver)


def waiting(stack: StackRunner, queue: str) -> list[Any]:
    """The bodies waiting in a queue."""
    return [message["body"] for message in stack.queue_messages(queue)]


def test_a_platform_event_dead_lettered_by_a_fault_is_replayed_once(stack: StackRunner, faults: AwsFaults) -> None:
    account = Account(stack, "rp-bus")
    account.create(now() - timedelta(hours=1))
    drain(stack)
    # The settlement queue refuses every send for this account: the intake fails, the event ends in
    # PlatformEventsDLQ (the function's DLQ once Lambda's retries are spent).
    settlement_queue = stack.queue_urls["SettlementQueue"]
    faults.fail("sqs", "SendMessage", throttled, times=None,
                match=lambda params: params.get("QueueUrl") == settlement_queue and account.id in params["MessageBody"])
    chat = f"{account.id}-chat"
    detail = {"event_id": chat, "account_id": account.id,
              "occurred_at": (now() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"), **HAIKU}
    assert not stack.put_event("platform.ai", "AI Usage Recorded", detail).ok
    drain(stack)
    faults.clear()
    assert [m["detail"]["event_id"] for m in waiting(stack, "PlatformEventsDLQ")] == [chat]
    assert account.ledger.load(account.id).available() == 50 * C  # nothing charged yet

    dry = replayer(stack).replay(stack.queue_urls["PlatformEventsDLQ"], dry_run=True)
    assert (dry.received, dict(dry.moved), dry.ids) == (1, {"bus": 1}, [chat])
    assert len(waiting(stack, "PlatformEventsDLQ")) == 1  # a dry run moves nothing

    moved = replayer(stack).replay(stack.queue_urls["PlatformEventsDLQ"])
    assert (moved.received, dict(moved.moved), moved.ids) == (1, {"bus": 1}, [chat])
    drain(stack)
    assert waiting(stack, "PlatformEventsDLQ") == []
    state = account.ledger.load(account.id)
    assert state.available() == 50 * C - 280_000  # 50 - 0.28
    assert_conserved(state)

    # The same event dead-lettered again (a second copy) and replayed: the ledger has it already.
    stack.client("sqs").send_message(QueueUrl=stack.queue_urls["PlatformEventsDLQ"], MessageBody=json.dumps({
        "version": "0", "id": "copy", "source": "platform.ai", "detail-type": "AI Usage Recorded",
        "detail": {"event_id": chat, "account_id": account.id,
                   "occurred_at": state.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"), **HAIKU}}))
    assert replayer(stack).replay(stack.queue_urls["PlatformEventsDLQ"]).moved["bus"] == 1
    drain(stack)
    assert account.ledger.load(account.id).available() == 50 * C - 280_000  # charged once


def test_a_settlement_that_kept_failing_goes_back_to_its_fifo_queue(stack: StackRunner, faults: AwsFaults) -> None:
    account = Account(stack, "rp-fifo")
    account.create(now() - timedelta(hours=1))
    drain(stack)
    # DynamoDB throttles every write of this account: the settlement fails until SettlementQueue's
    # redrive policy moves the message to SettlementDLQ.
    faults.fail("dynamodb", "TransactWriteItems", throttled, times=None, match=mentions(account.id))
    chat = account.put("AI Usage Recorded", now() - timedelta(minutes=5), **HAIKU)
    drain(stack)
    faults.clear()
    assert [m["detail"]["event_id"] for m in waiting(stack, "SettlementDLQ")] == [chat]
    report = replayer(stack).replay(stack.queue_urls["SettlementDLQ"])
    assert (dict(report.moved), report.ids) == ({"queue": 1}, [chat])
    drain(stack)
    assert waiting(stack, "SettlementDLQ") == []
    assert account.ledger.load(account.id).available() == 50 * C - 280_000


def test_two_copies_of_a_settlement_dead_letter_sent_through_the_intake_again_apply_once(stack: StackRunner) -> None:
    account = Account(stack, "rp-to-bus")
    account.create(now() - timedelta(hours=1))
    drain(stack)
    chat = f"{account.id}-chat"
    occurred = (now() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    envelope = {"version": "0", "id": "lost-1", "time": occurred, "source": "platform.ai",
                "detail-type": "AI Usage Recorded",
                "detail": {"event_id": chat, "account_id": account.id, "occurred_at": occurred, **HAIKU}}
    sqs = stack.client("sqs")
    for copy in ("a", "b"):  # the same event dead-lettered twice (two deliveries that both kept failing)
        sqs.send_message(QueueUrl=stack.queue_urls["SettlementDLQ"], MessageBody=json.dumps(envelope),
                         MessageGroupId=account.id, MessageDeduplicationId=f"{chat}-{copy}")
    bus = LocalBus(stack)
    to_bus = replayer(stack, bus)
    to_bus.to_bus = True  # --to default: through the intake again, not straight to SettlementQueue
    report = to_bus.replay(stack.queue_urls["SettlementDLQ"])
    assert (dict(report.moved), report.ids) == ({"bus": 2}, [chat, chat])
    assert {entry["Time"].strftime("%Y-%m-%dT%H:%M:%SZ") for entry in bus.entries} == {occurred}  # its time kept
    drain(stack)
    assert waiting(stack, "SettlementDLQ") == []
    state = account.ledger.load(account.id)
    assert state.available() == 50 * C - 280_000  # 50 - 0.28, charged once for two copies
    assert_conserved(state)


def test_effects_that_kept_failing_are_delivered_again_from_the_table(stack: StackRunner, faults: AwsFaults) -> None:
    account = Account(stack, "rp-outbox")
    account.create(now() - timedelta(hours=1))
    drain(stack)
    # EventBridge refuses every PutEvents that names this account: the dispatcher's record keeps
    # failing and its batch goes to OutboxDLQ. The charge itself is committed.
    faults.fail("events", "PutEvents", throttled, times=None, match=mentions(account.id))
    account.put("AI Usage Recorded", now() - timedelta(minutes=5), feature="chat", model="claude-sonnet-4.5",
                input_tokens=0, output_tokens=50_000)
    _, streams = stack.drain()
    assert len(streams.given_up) == 1  # the record's retries are spent: its batch info to OutboxDLQ
    faults.clear()
    assert account.ledger.load(account.id).debt == 10 * C  # 60 charged against 50
    assert account.published("Credits Exhausted") == []
    assert len(waiting(stack, "OutboxDLQ")) == 1

    report = replayer(stack).replay(stack.queue_urls["OutboxDLQ"])
    assert dict(report.moved) == {"outbox": 1} and report.redelivered_changes >= 1
    [exhausted] = account.published("Credits Exhausted")
    assert exhausted["debt"] == "10.000000"
    assert waiting(stack, "OutboxDLQ") == []
    assert account.ledger.load(account.id).debt == 10 * C  # delivering again changes no balance


def test_an_event_older_than_30_days_needs_the_audited_operator_path(stack: StackRunner) -> None:
    account = Account(stack, "rp-old")
    created = (now() - timedelta(days=31)).strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = {"event_id": f"{account.id}-created", "account_id": account.id, "occurred_at": created,
              "email": account.email, "plan": "free"}
    refusal = stack.put_event("platform.accounts", "Account Created", detail)  # older than the window
    assert "EventTimeRefused" in (refusal.deliveries[0].error or "")
    drain(stack)
    [refused] = [m for m in waiting(stack, "PlatformEventsDLQ") if m["detail"]["account_id"] == account.id]
    assert account.ledger.load(account.id) is None

    kept = replayer(stack).replay(stack.queue_urls["PlatformEventsDLQ"])
    assert dict(kept.moved) == {} and kept.kept[0][1] == "older than 30 days: replay it with --allow-old"
    assert len(waiting(stack, "PlatformEventsDLQ")) == 1  # it stays

    with pytest.raises(SystemExit) as no_reason:
        replay.main(["--dlq", stack.queue_urls["PlatformEventsDLQ"], "--table", stack.table_name,
                     "--allow-old", "--operator", "ops-1"], clients=lambda service, _: stack.client(service))
    assert no_reason.value.code == 2
    with pytest.raises(InvalidInput):
        OldEventPath("ops-1", " ")

    path = OldEventPath("ops-1", "platform outage 2026-10: events resent by the platform team")
    report = replayer(stack).replay(stack.queue_urls["PlatformEventsDLQ"], old_events=path)
    assert (dict(report.moved), report.ids) == ({"old-event path": 1}, [refused["detail"]["event_id"]])
    drain(stack)
    state = account.ledger.load(account.id)
    assert state is not None and state.email == account.email
    assert state.available() == 50 * C  # the Free plan's 50 monthly credits, granted at its creation 31 days ago
    assert_conserved(state)
    [audit] = audit_items(account.ledger, account.id)
    assert (audit["operator"], audit["reason"], audit["applied"]) == ("ops-1", path.reason, "new")
    assert json.loads(audit["event"])["detail"]["event_id"] == refused["detail"]["event_id"]
    assert waiting(stack, "PlatformEventsDLQ") == []

    # Replayed again (a second copy): applied once; the second attempt is audited as a duplicate.
    stack.client("sqs").send_message(QueueUrl=stack.queue_urls["PlatformEventsDLQ"], MessageBody=json.dumps(refused))
    code = replay.main(["--dlq", stack.queue_urls["PlatformEventsDLQ"], "--table", stack.table_name, "--allow-old",
                        "--operator", "ops-1", "--reason", "again"], clients=lambda service, _: stack.client(service))
    assert code == 0
    assert [a["applied"] for a in audit_items(account.ledger, account.id)] == ["new", "duplicate"]
    again = account.ledger.load(account.id)
    assert (again.available(), again.totals) == (state.available(), state.totals)

    # The account lives on: a chat today rolls it over each month boundary since its creation (one,
    # or two early in March: each month's 50 expire, the next month's 50 are granted) and is charged
    # 0.28 of this month's lot: 50 - 0.28 = 49.72 available, 50 expired per boundary.
    chat_at = now() - timedelta(minutes=1)
    born = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")
    boundaries = (chat_at.year * 12 + chat_at.month) - (born.year * 12 + born.month)
    account.put("AI Usage Recorded", chat_at, **HAIKU)
    drain(stack)
    today = account.ledger.load(account.id)
    assert today.available() == 49_720_000
    assert today.totals.expired == boundaries * 50 * C
    assert_conserved(today)
