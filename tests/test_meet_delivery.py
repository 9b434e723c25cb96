"""Where features meet (issue 18), delivery and replay: defects 2, 4, 10 and 11, through the template's
wiring (``local_stack``: EventBridge rule -> PlatformEventsFunction -> SettlementQueue (FIFO) ->
SettlementFunction -> the table's stream -> OutboxDispatcherFunction -> EventBridge / SES / OutboxDLQ)
and the operator's replay command.

No test here reads the wall clock: every function of the stack gets a clock of the test
(:class:`Clocks`), and every time is derived from the fixed date ``T0``.

Figures (billing-rules.md): a Free account has 50 monthly credits. An AI chat with claude-haiku-4.5 of
1,000 input and 500 output tokens costs 1000 x 0.00008 + 500 x 0.0004 = 0.08 + 0.2 = 0.28 credits;
one with claude-sonnet-4.5 and 25,000 output tokens 25,000 x 0.0012 = 30 credits.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from billing import wiring
from billing.domain.clock import format_time
from billing.domain.errors import InvalidInput
from billing.domain.events import parse_platform_event
from billing.services import replay
from billing.services.replay import OldEventPath, Replayer, audit_items
from billing.services.settlement import settle_platform_event
from billing.store import keys
from localsam.runner import StackRunner
from localsam.sqs import _sqs_record
from tests.helpers import C, assert_conserved
from tests.test_effects_faults import Account, AwsFaults, mentions, throttled
from tests.test_effects_faults import faults as faults

T0 = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
HAIKU = {"feature": "chat", "model": "claude-haiku-4.5", "input_tokens": 1000, "output_tokens": 500}
SONNET_30 = {"feature": "chat", "model": "claude-sonnet-4.5", "input_tokens": 0, "output_tokens": 25_000}
CLOCKED = ("PlatformEventsFunction", "SettlementFunction", "AccountApiFunction", "WorkFunction",
           "OutboxDispatcherFunction")


class Clocks:
    """The stack's functions' clocks: ``now`` for all, ``skew`` per function (a clock ahead or behind)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.skew: dict[str, timedelta] = {}

    def of(self, function: str) -> Callable[[], datetime]:
        return lambda: self.now + self.skew.get(function, timedelta(0))


@pytest.fixture(scope="module")
def stack(local_stack: StackRunner) -> StackRunner:
    return local_stack


@pytest.fixture()
def clocks(stack: StackRunner) -> Iterator[Clocks]:
    runtime = stack.runtime
    assert runtime is not None
    fixed = Clocks(T0)
    overridden = []
    for function in CLOCKED:
        deps = sys.modules[runtime.handler(function).__module__].deps
        clock = fixed.of(function)
        deps.dependency_overrides[wiring.clock] = lambda clock=clock: clock
        overridden.append(deps)
    yield fixed
    for deps in overridden:
        deps.dependency_overrides.pop(wiring.clock, None)


def drain(stack: StackRunner) -> None:
    _, streams = stack.drain()
    assert streams.ok, streams.given_up


def envelope(account: Account, detail_type: str, source: str, at: datetime, event_id: str,
             **fields: Any) -> dict[str, Any]:
    return {"version": "0", "id": uuid.uuid4().hex, "time": format_time(at), "source": source,
            "detail-type": detail_type,
            "detail": {"event_id": event_id, "account_id": account.id, "occurred_at": format_time(at), **fields}}


def replayer(stack: StackRunner, ledger: Any, now: datetime) -> Replayer:
    return Replayer(sqs=stack.client("sqs"), events=stack.client("events"), ledger=ledger,
                    deliver=replay._delivery(ledger, lambda service: stack.client(service)), clock=lambda: now)


def waiting(stack: StackRunner, queue: str) -> list[dict[str, Any]]:
    return stack.queue_messages(queue)


def cli(stack: StackRunner, *args: str) -> int:
    return replay.main([*args, "--table", stack.table_name], clients=lambda service, _: stack.client(service))


# ------------------------------------------------------------------------------- 2: old events replayed


def test_an_old_event_whose_record_expired_is_found_in_the_ledger_and_not_charged_again(
        stack: StackRunner, clocks: Clocks) -> None:
    """Created 2026-11-05, a chat on 2026-11-10 (0.28 charged: 49.72 left). Its idempotency record
    expires (TTL, 40 days). On 2026-12-15 a copy of the event (35 days old) is replayed with
    --allow-old: the ledger's own entries show it applied, so nothing changes (one deduction of
    0.28, 49.72 left) and the replay reports it as a duplicate."""
    account = Account(stack, "old-dup")
    clocks.now = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
    account.create(clocks.now)
    chat_at = clocks.now = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
    chat = account.put("AI Usage Recorded", chat_at, **HAIKU)
    drain(stack)
    assert account.ledger.load(account.id).available() == 50 * C - 280_000
    account.ledger.models.EventRecord(keys.account_pk(account.id), keys.event_sk(chat)).delete()  # TTL expiry
    assert account.ledger.stored(account.id, chat) is None

    clocks.now = T0
    copy = envelope(account, "AI Usage Recorded", "platform.ai", chat_at, chat, **HAIKU)
    stack.client("sqs").send_message(QueueUrl=stack.queue_urls["PlatformEventsDLQ"], MessageBody=json.dumps(copy))
    path = OldEventPath("ops-1", "events resent after the outage")
    report = replayer(stack, account.ledger, T0).replay(stack.queue_urls["PlatformEventsDLQ"], old_events=path)
    assert report.duplicates == [chat] and dict(report.moved) == {}
    assert [m for m in waiting(stack, "PlatformEventsDLQ") if m["body"]["detail"]["account_id"] == account.id] == []
    state = account.ledger.load(account.id)
    assert state.available() == 50 * C - 280_000  # 50 - 0.28, charged once
    assert state.totals.charged == 280_000
    assert [e.amount for e in account.entries("deduction")] == [280_000]
    assert_conserved(state)
    [audit] = audit_items(account.ledger, account.id)
    assert (audit["operator"], audit["applied"]) == ("ops-1", "duplicate")


def test_a_ledger_entry_is_never_overwritten_a_repeat_whose_record_expired_is_a_duplicate(
        stack: StackRunner, clocks: Clocks) -> None:
    """The same chat applied again after its record expired (the settlement called directly, as the
    old-event path does): its entries exist, the transaction's condition on them refuses it, and the
    repeat is a duplicate: one 0.28 charged."""
    account = Account(stack, "old-cond")
    clocks.now = T0 - timedelta(hours=2)
    account.create(clocks.now)
    clocks.now = T0 - timedelta(hours=1)
    raw = envelope(account, "AI Usage Recorded", "platform.ai", clocks.now, f"{account.id}-chat", **HAIKU)
    chat = account.put("AI Usage Recorded", clocks.now, raw["detail"]["event_id"], **HAIKU)
    drain(stack)
    account.ledger.models.EventRecord(keys.account_pk(account.id), keys.event_sk(chat)).delete()
    applied = settle_platform_event(parse_platform_event(raw, replay.PLATFORM_SOURCES), account.ledger, T0,
                                    replayed=True)
    assert applied.duplicate
    state = account.ledger.load(account.id)
    assert (state.available(), state.totals.charged) == (50 * C - 280_000, 280_000)
    assert [e.amount for e in account.entries("deduction")] == [280_000]


# ------------------------------------------------------------------------------- 11: the intake's time


def test_an_event_accepted_at_30_days_less_10_s_is_settled_11_s_later(stack: StackRunner, clocks: Clocks) -> None:
    """Accepted at T0 when it was 30 days less 10 s old; settled at T0 + 11 s (30 days and 1 s old by
    the settlement's clock): the time bounds apply at the acceptance, so it is charged 0.28."""
    account = Account(stack, "skew-old")
    clocks.now = T0 - timedelta(days=30)
    account.create(clocks.now)
    drain(stack)
    clocks.now = T0
    account.put("AI Usage Recorded", T0 - timedelta(days=30) + timedelta(seconds=10), **HAIKU)
    [queued] = [m for m in waiting(stack, "SettlementQueue") if m["body"]["detail"]["account_id"] == account.id]
    assert queued["attributes"]["AcceptedAt"] == {"StringValue": format_time(T0), "DataType": "String"}
    clocks.skew["SettlementFunction"] = timedelta(seconds=11)
    drain(stack)
    assert [m for m in waiting(stack, "PlatformEventsDLQ") if m["body"]["detail"]["account_id"] == account.id] == []
    assert account.ledger.load(account.id).available() == 50 * C - 280_000  # 50 - 0.28


def test_an_event_4_59_ahead_is_settled_by_a_settlement_whose_clock_is_2_s_behind(
        stack: StackRunner, clocks: Clocks) -> None:
    account = Account(stack, "skew-ahead")
    account.create(T0 - timedelta(hours=1))
    account.put("AI Usage Recorded", T0 + timedelta(minutes=4, seconds=59), **HAIKU)
    clocks.skew["SettlementFunction"] = timedelta(seconds=-2)
    drain(stack)
    assert [m for m in waiting(stack, "PlatformEventsDLQ") if m["body"]["detail"]["account_id"] == account.id] == []
    assert account.ledger.load(account.id).available() == 50 * C - 280_000


def test_a_queued_event_without_the_intakes_time_is_checked_with_the_settlements_clock(
        stack: StackRunner, clocks: Clocks) -> None:
    """A message from before the change (no AcceptedAt) 30 days and 1 s old by the settlement's
    clock is refused as before; and a replay from SettlementDLQ never carries AcceptedAt back (only
    the intake sets it)."""
    account = Account(stack, "skew-none")
    clocks.now = T0 - timedelta(days=30, hours=1)
    account.create(clocks.now)
    drain(stack)
    clocks.now = T0
    old = envelope(account, "AI Usage Recorded", "platform.ai", T0 - timedelta(days=30, seconds=1),
                   f"{account.id}-old", **HAIKU)
    sqs = stack.client("sqs")
    sqs.send_message(QueueUrl=stack.queue_urls["SettlementQueue"], MessageBody=json.dumps(old),
                     MessageGroupId=account.id, MessageDeduplicationId=f"{account.id}-old")
    drain(stack)
    [refused] = [m for m in waiting(stack, "PlatformEventsDLQ") if m["body"]["detail"]["account_id"] == account.id]
    assert refused["attributes"]["ErrorCode"]["StringValue"] == "event_time_refused"
    assert account.ledger.load(account.id).available() == 50 * C

    # A dead letter that carries an AcceptedAt (forged, or the intake's) goes back without it.
    recent = envelope(account, "AI Usage Recorded", "platform.ai", T0 - timedelta(minutes=1), f"{account.id}-new",
                      **HAIKU)
    sqs.send_message(QueueUrl=stack.queue_urls["SettlementDLQ"], MessageBody=json.dumps(recent),
                     MessageGroupId=account.id, MessageDeduplicationId=f"{account.id}-new",
                     MessageAttributes={"AcceptedAt": {"DataType": "String", "StringValue": "2026-01-01T00:00:00Z"}})
    report = replayer(stack, account.ledger, T0).replay(stack.queue_urls["SettlementDLQ"])
    assert dict(report.moved) == {"queue": 1}
    [queued] = [m for m in waiting(stack, "SettlementQueue") if m["body"]["detail"]["account_id"] == account.id]
    assert "AcceptedAt" not in queued["attributes"]
    drain(stack)
    assert account.ledger.load(account.id).available() == 50 * C - 280_000


def test_the_local_runner_hands_message_attributes_to_the_function_as_lambda_does() -> None:
    message = {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "MD5OfBody": "x",
               "Attributes": {"SentTimestamp": "1", "MessageGroupId": "g"},
               "MessageAttributes": {"AcceptedAt": {"StringValue": "2026-12-15T12:00:00Z", "DataType": "String"}}}
    record = _sqs_record(message, "arn:aws:sqs:us-east-1:123456789012:q.fifo")
    assert record["messageAttributes"] == {"AcceptedAt": {"stringValue": "2026-12-15T12:00:00Z",
                                                          "stringListValues": [], "binaryListValues": [],
                                                          "dataType": "String"}}


# ------------------------------------------------------------------------------- 10: replay --to


def test_replay_to_a_queue_the_messages_did_not_come_from_is_refused_unless_forced_and_audited(
        stack: StackRunner, clocks: Clocks) -> None:
    """A WorkDLQ message (a chunk of container work) sent to the settlement queue would be refused
    there and lost to PlatformEventsDLQ: --to that queue is refused and the message stays; forced
    (--force-destination with an operator and a reason) it moves, and an audit item says who and why."""
    account = Account(stack, "to-work")
    sqs = stack.client("sqs")
    work = json.dumps({"work": "containers", "account_id": account.id, "kind": "final_settlement",
                       "at": format_time(T0)})
    sqs.send_message(QueueUrl=stack.queue_urls["WorkDLQ"], MessageBody=work)
    settlement = stack.queue_urls["SettlementQueue"]

    def in_work_dlq() -> list[Any]:
        return [m for m in waiting(stack, "WorkDLQ") if m["body"]["account_id"] == account.id]

    assert cli(stack, "--dlq", stack.queue_urls["WorkDLQ"], "--to", settlement) == 2
    with pytest.raises(InvalidInput, match="not where"):
        Replayer(sqs=sqs, events=stack.client("events"), ledger=account.ledger, target_queue=settlement,
                 clock=lambda: T0).replay(stack.queue_urls["WorkDLQ"])
    assert len(in_work_dlq()) == 1 and waiting(stack, "SettlementQueue") == []
    # A bus is where platform events come from only: not another bus.
    assert cli(stack, "--dlq", stack.queue_urls["PlatformEventsDLQ"], "--to", "another-bus") == 2
    # Forcing needs an operator and a reason.
    with pytest.raises(SystemExit):
        cli(stack, "--dlq", stack.queue_urls["WorkDLQ"], "--to", settlement, "--force-destination")

    scratch = sqs.create_queue(QueueName=f"scratch-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    assert cli(stack, "--dlq", stack.queue_urls["WorkDLQ"], "--to", scratch, "--force-destination",
               "--operator", "ops-2", "--reason", "inspect the chunk by hand") == 0
    assert in_work_dlq() == []
    [moved] = sqs.receive_message(QueueUrl=scratch, MaxNumberOfMessages=10)["Messages"]
    assert moved["Body"] == work
    [audit] = audit_items(account.ledger, account.id)
    assert (audit["operator"], audit["reason"], audit["applied"], audit["destination"]) == (
        "ops-2", "inspect the chunk by hand", "forced", scratch)

    # Back where it came from (the WorkQueue, its redrive source) needs nothing more.
    sqs.send_message(QueueUrl=stack.queue_urls["WorkDLQ"], MessageBody=work)
    report = Replayer(sqs=sqs, events=stack.client("events"), ledger=account.ledger,
                      target_queue=stack.queue_urls["WorkQueue"], clock=lambda: T0).replay(stack.queue_urls["WorkDLQ"])
    assert dict(report.moved) == {"queue": 1}
    assert len([m for m in waiting(stack, "WorkQueue") if m["body"].get("account_id") == account.id]) == 1
    sqs.purge_queue(QueueUrl=stack.queue_urls["WorkQueue"])  # no account to settle: not for the work function


# ------------------------------------------------------------------------------- 4: refused for good


def rejected() -> Exception:
    return ClientError({"Error": {"Code": "MessageRejected", "Message": "Address is on the suppression list"}},
                       "SendEmail")


def ses_unavailable() -> Exception:
    return ClientError({"Error": {"Code": "InternalFailure", "Message": "try again"},
                        "ResponseMetadata": {"HTTPStatusCode": 500}}, "SendEmail")


def alert_and_auto_top_up(account: Account, clocks: Clocks) -> str:
    """A Free account (50) with an alert at remaining < 25 and auto top-up below 25 (100 credits):
    a chat of 30 credits leaves 20, so one change asks for `Alert Triggered`, the alert's mail, then
    `Auto Top-up Requested` (in that order)."""
    clocks.now = T0 - timedelta(hours=1)
    account.create(clocks.now)
    drain(account.stack)
    status, body, _ = account.api("PUT", "/v1/settings", {"auto_top_up": {"enabled": True, "below": 25,
                                                                           "credits": 100, "max_per_month": 2}})
    assert status == 200, body
    status, body, _ = account.api("POST", "/v1/alerts", {"kind": "remaining_below", "threshold": 25})
    assert status == 201, body
    clocks.now = T0
    return account.put("AI Usage Recorded", T0, **SONNET_30)


def test_a_mail_refused_for_good_is_dead_lettered_alone_and_the_rest_is_delivered(
        stack: StackRunner, clocks: Clocks, faults: AwsFaults) -> None:
    account = Account(stack, "ses-reject")
    rule = faults.fail("sesv2", "SendEmail", rejected, times=None, match=mentions(account.email))
    chat = alert_and_auto_top_up(account, clocks)
    drain(stack)  # the stream's record does not fail: nothing given up
    assert rule.fired == 1  # tried once, not 101 times
    [alert] = account.published("Alert Triggered")
    assert alert["value"] == "20.000000"
    [top_up] = account.published("Auto Top-up Requested")  # delivered all the same
    assert top_up["credits"] == "100.000000"
    assert account.mails() == []
    [dead] = [m for m in waiting(stack, "OutboxDLQ") if account.id in json.dumps(m["body"])]
    refused = dead["body"]["RefusedEffect"]
    assert (refused["account_id"], refused["event_id"], refused["reason"]) == (account.id, chat, "MessageRejected")
    assert refused["effect"]["template"] == "alert_triggered"
    assert dead["attributes"]["ErrorCode"]["StringValue"] == "MessageRejected"
    state = account.ledger.load(account.id)
    assert state.available() == 20 * C and state.auto_top_up.pending == top_up["purchase_id"]

    # Replayed while SES still refuses: kept with its reason, nothing raised, nothing else repeated.
    report = replayer(stack, account.ledger, T0).replay(stack.queue_urls["OutboxDLQ"])
    assert [why for _, why in report.kept] == ["refused again: MessageRejected"]
    assert rule.fired == 2
    assert len([m for m in waiting(stack, "OutboxDLQ") if account.id in json.dumps(m["body"])]) == 1

    # The address fixed: the replay sends the mail, once, and the dead letter is gone.
    faults.clear()
    report = replayer(stack, account.ledger, T0).replay(stack.queue_urls["OutboxDLQ"])
    assert report.moved["effect"] == 1 and report.kept == []
    [mail] = account.mails()
    assert "20.00 credits" in mail["body"]  # 20.000000 shown with two decimals
    assert [m for m in waiting(stack, "OutboxDLQ") if account.id in json.dumps(m["body"])] == []
    assert replayer(stack, account.ledger, T0).replay(stack.queue_urls["OutboxDLQ"]).moved["effect"] == 0
    assert len(account.mails()) == 1
    assert len(account.published("Alert Triggered")) == 1 and len(account.published("Auto Top-up Requested")) == 1


@pytest.mark.parametrize("fault", [throttled, ses_unavailable], ids=["throttled", "5xx"])
def test_a_mail_failing_for_now_is_retried_and_the_effects_before_it_are_not_repeated(
        stack: StackRunner, clocks: Clocks, faults: AwsFaults, fault: Callable[[], Exception]) -> None:
    account = Account(stack, "ses-retry")
    rule = faults.fail("sesv2", "SendEmail", fault, times=2, match=mentions(account.email))
    alert_and_auto_top_up(account, clocks)
    drain(stack)
    assert rule.fired == 2
    assert len(account.mails()) == 1
    assert len(account.published("Alert Triggered")) == 1  # delivered before the mail: not repeated
    assert len(account.published("Auto Top-up Requested")) == 1
    assert [m for m in waiting(stack, "OutboxDLQ") if account.id in json.dumps(m["body"])] == []
