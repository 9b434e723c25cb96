"""Effects are never lost (issue 9): faults injected after every commit point, through the template's
wiring (``local_stack``: EventBridge rule -> PlatformEventsFunction -> SettlementQueue (FIFO) ->
SettlementFunction -> the table's stream -> OutboxDispatcherFunction -> EventBridge / SES).

Faults are injected into the AWS calls themselves (:class:`AwsFaults` wraps botocore's
``BaseClient._make_api_call``, which every boto3 client and PynamoDB go through): *before* the call
(it never reached AWS: throttled, a conflict) or *after* AWS answered (it happened, but the caller
never heard: a read timeout, or the invocation died). DynamoDB Local never throttles nor raises
TransactionConflict, so those are injected the same way.

The scenario most tests share (billing-rules.md: free plan 50 credits; large 27.20/h, small 6.80/h,
micro 1.96/h; low-credit mail when remaining < one hour of burn; overuse), from a start time T:
- T       Account Created (free: 50 credits), c1 started (large).
- T+20m   c2 started (micro): remaining 50 - 27.2/3 = 40.933333 >= burn 29.16: no mail.
- T+50m   c2 stopped: 30 min x 1.96 = 0.98 deducted -> available 49.02; c1 has accrued
          27.2 x 50/60 = 22.666667, so remaining 26.353333 < burn 27.2: the cycle's mail and
          `Low Balance Notified` (hours_left 26.353333 / 27.2 = 0.9689 -> 0.97).
- T+60m   c3 started (small): the cycle's mail was sent already: nothing.
- T+120m  c1 stopped: 2 h x 27.2 = 54.4 > 49.02 available -> 49.02 spent, 5.38 debt; the final
          settlement charges c3's hour, 6.8, into debt -> debt 12.18; `Stop Containers Requested`
          (c3, credits_exhausted) then `Credits Exhausted` (debt 12.180000).
Charged 0.98 + 54.4 + 6.8 = 62.18 = spent 50 + debt 12.18.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ReadTimeoutError

from billing.domain.clock import format_time, month_key, next_month_start
from billing.domain.model import OutboundEvent, to_json
from billing.store import keys
from billing.store.ledger import Ledger
from localsam.aws import LOCAL_PARAMETERS
from localsam.runner import StackRunner
from tests.helpers import C, assert_conserved
from tests.test_settlement_faults import conflict, throttled
from tests.travel import mid_month

# ------------------------------------------------------------------------------------------- faults


class Crash(Exception):
    """The invocation died (out of time, out of memory, a bug): nothing after this point ran."""


def crash() -> Exception:
    return Crash("the invocation died")


def read_timeout() -> Exception:
    return ReadTimeoutError(endpoint_url="https://aws.example")


Match = Callable[[dict[str, Any]], bool]


@dataclass
class Rule:
    service: str
    operation: str
    error: Callable[[], Exception]
    when: str  # "before": the call never reached AWS; "after": AWS did it, the answer was lost
    times: int | None  # None: every matching call
    match: Match | None
    fired: int = 0

    def applies(self, service: str, operation: str, params: dict[str, Any]) -> bool:
        if (service, operation) != (self.service, self.operation):
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        return self.match is None or self.match(params)


@dataclass
class AwsFaults:
    """Chosen AWS calls of every client in this process fail; the calls that went through are kept
    (``done``) so that tests can see what reached AWS, in order."""

    rules: list[Rule] = field(default_factory=list)
    done: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def fail(self, service: str, operation: str, error: Callable[[], Exception], when: str = "before",
             times: int | None = 1, match: Match | None = None) -> Rule:
        rule = Rule(service, operation, error, when, times, match)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def published(self) -> list[dict[str, Any]]:
        """Every entry PutEvents accepted, in the order it accepted them."""
        return [entry for service, op, params in self.done if (service, op) == ("events", "PutEvents")
                for entry in params["Entries"]]

    def call(self, original: Callable[..., Any], client: Any, operation: str, params: dict[str, Any]) -> Any:
        service = client.meta.service_model.service_name
        rule = next((r for r in self.rules if r.applies(service, operation, params)), None)
        if rule is not None and rule.when == "before":
            rule.fired += 1
            raise rule.error()
        answer = original(client, operation, params)
        self.done.append((service, operation, params))
        if rule is not None:
            rule.fired += 1
            raise rule.error()
        return answer


@pytest.fixture()
def faults(monkeypatch: pytest.MonkeyPatch) -> AwsFaults:
    injected = AwsFaults()
    original = BaseClient._make_api_call

    def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        return injected.call(original, client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return injected


def mentions(text: str) -> Match:
    """Calls whose parameters mention ``text`` (an account id, an event id, an effect id)."""
    return lambda params: text in json.dumps(params, default=str)


def commits(event_id: str) -> Match:
    """The TransactWriteItems that commits the change of ``event_id`` (it puts its record)."""
    return mentions(keys.event_sk(event_id))


# ------------------------------------------------------------------------------------------- the stack


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def window(span: timedelta) -> datetime:
    """A start T such that [T, T + span] is in the past, less than 30 days old and inside one
    calendar month (so no month boundary changes the figures)."""
    start = now() - 2 * span
    if month_key(start) != month_key(start + span):
        start = next_month_start(start)
    return start


def items(stack: StackRunner) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb", endpoint_url=stack.dynamodb_endpoint)
    found: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=stack.table_name, ConsistentRead=True):
        found.extend(page["Items"])
    return sorted(found, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


SOURCES = {"Account Created": "platform.accounts", "Plan Changed": "platform.accounts",
           "AI Usage Recorded": "platform.ai"}


class Account:
    """One account of the platform, driven through the template's EventBridge rules and API."""

    def __init__(self, stack: StackRunner, prefix: str = "acct") -> None:
        self.stack = stack
        self.id = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.email = f"{self.id}@example.com"
        self.ledger = Ledger(table_name=stack.table_name)
        self._n = 0

    def event_id(self) -> str:
        self._n += 1
        return f"{self.id}-ev{self._n}"

    def put(self, detail_type: str, at: datetime, event_id: str | None = None, **fields: Any) -> str:
        """Put a platform event on the bus (the intake accepts it onto the settlement queue)."""
        event_id = event_id or self.event_id()
        detail = {"event_id": event_id, "account_id": self.id, "occurred_at": format_time(at), **fields}
        result = self.stack.put_event(SOURCES.get(detail_type, "platform.containers"), detail_type, detail)
        assert result.ok and result.matched == ["PlatformEventsFunction"], result.failures
        return event_id

    def create(self, at: datetime, plan: str = "free") -> None:
        self.put("Account Created", at, email=self.email, plan=plan)

    def published(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        """The details of the events published for this account (every copy, as received)."""
        return [e["detail"] for e in self.stack.published_events(detail_type)
                if e["detail"].get("account_id") == self.id]

    def mails(self) -> list[dict[str, Any]]:
        return [m for m in self.stack.sent_emails() if m["destinations"] == {"ToAddresses": [self.email]}]

    def sent_marks(self) -> list[str]:
        return [i["sk"]["S"] for i in items(self.stack)
                if i["pk"]["S"] == keys.account_pk(self.id) and i["sk"]["S"].startswith("SENT#")]

    def entries(self, kind: str) -> list[Any]:
        from billing.store.ledger import entries_from_items

        m = self.ledger.models
        return [e for e in entries_from_items(m.Entry.query(keys.account_pk(self.id), m.Entry.sk.startswith("LEDGER#")))
                if e.type == kind]

    def api(self, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any, dict[str, str]]:
        headers = {"Idempotency-Key": key} if key else None
        response = self.stack.api_request(method, path, sub=self.id, body=body, headers=headers)
        return response.status, response.json(), response.headers


def drain(stack: StackRunner) -> None:
    _, streams = stack.drain()
    assert streams.ok, streams.given_up


@pytest.fixture(scope="module", autouse=True)
def _mid_month() -> Iterator[None]:
    """This module's stories happen "now" (the API's check-in day, the intake's window, the month a
    lot belongs to): at a fixed moment mid-month, so that no day, month or year boundary changes
    their figures whatever the date the suite runs at."""
    with mid_month():
        yield


@pytest.fixture(scope="module")
def stack(local_stack: StackRunner) -> StackRunner:
    return local_stack


def run_scenario(account: Account, t: datetime) -> dict[str, str]:
    """The module docstring's scenario, put on the bus (settled by the caller's drain)."""
    minutes = lambda n: t + timedelta(minutes=n)  # noqa: E731
    ids = {}
    account.create(t)
    account.put("Container Started", t, container_id="c1", run_id="r1", tier="large", code_supporter=False)
    account.put("Container Started", minutes(20), container_id="c2", run_id="r2", tier="micro", code_supporter=False)
    ids["c2 stop"] = account.put("Container Stopped", minutes(50), container_id="c2", run_id="r2", traffic_bytes=0)
    account.put("Container Started", minutes(60), container_id="c3", run_id="r3", tier="small", code_supporter=False)
    ids["c1 stop"] = account.put("Container Stopped", minutes(120), container_id="c1", run_id="r1", traffic_bytes=0)
    return ids


LOW = {"remaining": "26.353333", "hours_left": 0.97}
STOP = {"container_ids": ["c3"], "reason": "credits_exhausted"}
EXHAUSTED = {"debt": "12.180000"}


def without_effect_id(detail: dict[str, Any]) -> dict[str, Any]:
    assert re.fullmatch(r"[0-9a-f]{32}", detail["effect_id"]), detail
    return {k: v for k, v in detail.items() if k not in ("effect_id", "account_id")}


def distinct(details: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The effects as a consumer keeps them: repeats dropped by ``effect_id`` (a repeat must be the
    same event)."""
    kept: dict[str, dict[str, Any]] = {}
    for d in details:
        assert kept.setdefault(d["effect_id"], d) == d, "a repeat differs from the first copy"
    return kept


def assert_scenario_settled_once(account: Account) -> None:
    state = account.ledger.load(account.id)
    assert state is not None
    # charged 0.98 + 54.4 + 6.8 = 62.18 = spent 50 (every credit) + debt 12.18
    assert (state.totals.charged, state.totals.spent, state.debt) == (62_180_000, 50 * C, 12_180_000)
    assert state.exhausted and state.available() == 0
    # one deduction per settlement, each once: c2's stop (0.98 paid), c1's stop (49.02 paid and 5.38
    # of debt) and the final settlement of c3 (nothing paid, 6.8 of debt)
    assert sorted(e.amount for e in account.entries("deduction")) == [0, 980_000, 49_020_000]
    assert sorted(e.amount for e in account.entries("debt")) == [5_380_000, 6_800_000]
    assert_conserved(state)


def assert_scenario_effects(account: Account, copies: dict[str, int] | None = None) -> None:
    """Every effect delivered, each as one distinct effect (repeats carry the same effect_id), in the
    order they were decided; ``copies`` is how many copies of a type were published."""
    copies = {"Low Balance Notified": 1, "Stop Containers Requested": 1, "Credits Exhausted": 1, **(copies or {})}
    expected = {"Low Balance Notified": LOW, "Stop Containers Requested": STOP, "Credits Exhausted": EXHAUSTED}
    for detail_type, detail in expected.items():
        published = account.published(detail_type)
        assert len(published) == copies[detail_type], (detail_type, published)
        [kept] = distinct(published).values()
        assert kept["account_id"] == account.id
        assert without_effect_id(kept) == detail
    [mail] = account.mails()
    # shown to people: 26.353333 -> "26.35 credits"; 0.97 h x 60 = 58.2 -> "58 minutes" (under two hours)
    assert "26.35 credits" in mail["body"] and "58 minutes" in mail["body"]
    assert len(account.sent_marks()) == 4  # each effect remembered once delivered: 3 events and the mail


def order_published(faults: AwsFaults, account: Account) -> list[str]:
    """The detail-types PutEvents accepted for the account, repeats of an effect dropped."""
    seen: dict[str, str] = {}
    for entry in faults.published():
        detail = json.loads(entry["Detail"])
        if detail.get("account_id") == account.id:
            seen.setdefault(detail["effect_id"], entry["DetailType"])
    return list(seen.values())


ORDER = ["Low Balance Notified", "Stop Containers Requested", "Credits Exhausted"]


# ------------------------------------------------------------------------------------------- the outbox


def test_the_scenario_without_faults(stack: StackRunner, faults: AwsFaults) -> None:
    account = Account(stack)
    run_scenario(account, window(timedelta(hours=2)))
    drain(stack)
    assert_scenario_settled_once(account)
    assert_scenario_effects(account)
    assert order_published(faults, account) == ORDER


def test_put_events_failing_after_the_commit_delays_but_never_loses(stack: StackRunner, faults: AwsFaults) -> None:
    """PutEvents throttled three times: the dispatcher reports the record, the stream retries it."""
    account = Account(stack)
    rule = faults.fail("events", "PutEvents", throttled, times=3, match=mentions(account.id))
    run_scenario(account, window(timedelta(hours=2)))
    drain(stack)
    assert rule.fired == 3
    assert_scenario_settled_once(account)
    assert_scenario_effects(account)  # each once: a refused PutEvents published nothing
    assert order_published(faults, account) == ORDER


def test_put_events_answer_lost_repeats_the_event_with_the_same_effect_id(stack: StackRunner,
                                                                          faults: AwsFaults) -> None:
    """EventBridge took `Low Balance Notified` but the answer was lost: the record is retried and the
    event published again, the same effect_id (consumers drop it); the mail goes out once."""
    account = Account(stack)
    rule = faults.fail("events", "PutEvents", read_timeout, when="after",
                       match=lambda p: account.id in json.dumps(p) and "Low Balance Notified" in json.dumps(p))
    run_scenario(account, window(timedelta(hours=2)))
    drain(stack)
    assert rule.fired == 1
    assert_scenario_settled_once(account)
    assert_scenario_effects(account, copies={"Low Balance Notified": 2})
    assert order_published(faults, account) == ORDER


def test_a_sent_mail_whose_record_answer_is_lost_is_not_sent_again(stack: StackRunner, faults: AwsFaults) -> None:
    """SES accepted the mail and its SENT# record was written, but that write's answer was lost: the
    retried stream record finds SENT# and does not mail again (nor repeats the event before it, which
    is remembered too: issue 18)."""
    account = Account(stack)

    def mail_sent() -> bool:
        return any(service == "sesv2" and account.email in json.dumps(p) for service, _, p in faults.done)

    rule = faults.fail("dynamodb", "PutItem", read_timeout, when="after",
                       match=lambda p: p.get("Item", {}).get("pk", {}).get("S") == keys.account_pk(account.id)
                       and p["Item"]["sk"]["S"].startswith("SENT#") and mail_sent())
    run_scenario(account, window(timedelta(hours=2)))
    drain(stack)
    assert rule.fired == 1
    assert_scenario_settled_once(account)
    assert_scenario_effects(account)  # exactly one mail, each event once


def test_ses_failing_before_it_accepts_sends_the_mail_once(stack: StackRunner, faults: AwsFaults) -> None:
    """SES throttled twice (issue 9: "SES throttled once: ... no mail"): the mail still goes, once."""
    account = Account(stack)
    rule = faults.fail("sesv2", "SendEmail", throttled, times=2, match=mentions(account.email))
    run_scenario(account, window(timedelta(hours=2)))
    drain(stack)
    assert rule.fired == 2
    assert_scenario_settled_once(account)
    # the record (event, then mail) was tried three times: the event delivered (and remembered) at
    # the first, so published once; the mail once (issue 18: a retry repeats none that were delivered)
    assert_scenario_effects(account)


def test_ses_answer_lost_mails_at_least_once_then_remembers(stack: StackRunner, faults: AwsFaults) -> None:
    """SES accepted the mail but its answer was lost before the SENT# record: this is the one window
    the rules allow a second copy in (README, "Effects of a change"). The mail is not lost, and once
    remembered a redelivery of the record sends nothing."""
    account = Account(stack)
    faults.fail("sesv2", "SendEmail", read_timeout, when="after", match=mentions(account.email))
    ids = run_scenario(account, window(timedelta(hours=2)))
    drain(stack)
    sent = len(account.mails())
    assert sent in (1, 2)
    assert len(account.sent_marks()) == 4  # the mail and the change's three events
    # The stream delivers the record once more (at least once): no further mail.
    stored = account.ledger.stored(account.id, ids["c2 stop"])
    assert stored is not None
    stack.invoke("OutboxDispatcherFunction", {"Records": [stream_record(account.id, ids["c2 stop"],
                                                                        to_json(stored.effects), "1")]})
    assert len(account.mails()) == sent


def test_settlement_that_dies_after_its_commit_is_not_charged_twice(stack: StackRunner, faults: AwsFaults) -> None:
    """The SettlementFunction commits c1's stop, then dies before answering the queue: the message is
    received again, recognised as applied (its record), and its effects leave once, from the commit."""
    account = Account(stack)
    t = window(timedelta(hours=2))
    c1_stop = f"{account.id}-c1-stop"
    rule = faults.fail("dynamodb", "TransactWriteItems", crash, when="after", match=commits(c1_stop))
    ids = run_scenario_with(account, t, c1_stop)
    drain(stack)
    assert rule.fired == 1
    assert ids["c1 stop"] == c1_stop
    assert_scenario_settled_once(account)
    assert_scenario_effects(account)


def test_a_lost_commit_answer_is_answered_from_the_record(stack: StackRunner, faults: AwsFaults) -> None:
    """The commit of c1's stop lands but its answer times out: the ledger looks the record up before
    deciding again, so the same invocation finds it applied (once charged, effects once)."""
    account = Account(stack)
    c1_stop = f"{account.id}-c1-stop"
    rule = faults.fail("dynamodb", "TransactWriteItems", read_timeout, when="after", match=commits(c1_stop))
    run_scenario_with(account, window(timedelta(hours=2)), c1_stop)
    queues, _ = stack.drain()
    assert rule.fired == 1
    assert queues.failed == []  # answered within the invocation: no redelivery was needed
    assert_scenario_settled_once(account)
    assert_scenario_effects(account)


@pytest.mark.parametrize(("fault", "times"), [(conflict, 3), (throttled, 8)], ids=["conflict x3", "throttled x8"])
def test_conflicts_and_throttling_are_retried_into_one_charge(stack: StackRunner, faults: AwsFaults,
                                                              fault: Callable[[], Exception], times: int) -> None:
    """TransactionConflict three times is retried within the invocation; throttling through all 8
    attempts (SETTLEMENT_MAX_ATTEMPTS' default) fails the invocation as busy and the queue's
    redelivery completes it. Either way: one charge, each effect once."""
    account = Account(stack)
    c1_stop = f"{account.id}-c1-stop"
    rule = faults.fail("dynamodb", "TransactWriteItems", fault, times=times, match=commits(c1_stop))
    run_scenario_with(account, window(timedelta(hours=2)), c1_stop)
    queues, streams = stack.drain()
    assert rule.fired == times and streams.ok
    assert len(queues.failed) == (1 if fault is throttled else 0)
    assert_scenario_settled_once(account)
    assert_scenario_effects(account)


def run_scenario_with(account: Account, t: datetime, c1_stop: str) -> dict[str, str]:
    """The scenario with a known event id for c1's stop."""
    original = account.put

    def put(detail_type: str, at: datetime, event_id: str | None = None, **fields: Any) -> str:
        if detail_type == "Container Stopped" and fields.get("container_id") == "c1":
            event_id = c1_stop
        return original(detail_type, at, event_id, **fields)

    account.put = put  # type: ignore[method-assign]
    try:
        return run_scenario(account, t)
    finally:
        account.put = original  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------- the dispatcher


def stream_record(account_id: str, event_id: str, effects: str, sequence: str) -> dict[str, Any]:
    """A DynamoDB stream record (Lambda's shape) of an idempotency record with effects."""
    return {
        "eventID": uuid.uuid4().hex, "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "Keys": {"pk": {"S": keys.account_pk(account_id)}, "sk": {"S": keys.event_sk(event_id)}},
            "NewImage": {"pk": {"S": keys.account_pk(account_id)}, "sk": {"S": keys.event_sk(event_id)},
                         "effects": {"S": effects}, "result": {"S": "{}"}, "expires": {"N": "4102444800"}},
            "SequenceNumber": sequence, "SizeBytes": 100, "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/billing/stream/local",
    }


def exhausted_effect(account_id: str, n: int) -> str:
    effect_id = hashlib.sha256(f"{account_id}|{n}".encode()).hexdigest()[:32]
    return to_json([OutboundEvent(detail_type="Credits Exhausted",
                                  detail={"account_id": account_id, "debt": f"{n}.000000", "effect_id": effect_id})])


def test_a_failing_record_is_reported_alone_and_later_records_wait(stack: StackRunner, faults: AwsFaults) -> None:
    """A batch of three records of one account; PutEvents fails for the second. The dispatcher
    reports that record alone (partial batch failure), has published the first, and has not
    published the third (it would overtake the second). Lambda retries from the reported record:
    then the second and the third go, in order."""
    account_id = f"acct-batch-{uuid.uuid4().hex[:8]}"
    records = [stream_record(account_id, f"ev-{n}", exhausted_effect(account_id, n), f"10{n}") for n in (1, 2, 3)]
    rule = faults.fail("events", "PutEvents", throttled,
                       match=lambda p: any('"debt": "2.000000"' in e["Detail"] for e in p["Entries"]))
    result = stack.invoke("OutboxDispatcherFunction", {"Records": records})
    assert rule.fired == 1
    assert result == {"batchItemFailures": [{"itemIdentifier": "102"}]}

    def debts() -> list[str]:
        return [json.loads(e["Detail"])["debt"] for e in faults.published()
                if json.loads(e["Detail"])["account_id"] == account_id]

    assert debts() == ["1.000000"]
    assert stack.invoke("OutboxDispatcherFunction", {"Records": records[1:]}) == {"batchItemFailures": []}
    assert debts() == ["1.000000", "2.000000", "3.000000"]


def test_records_without_effects_or_of_other_items_are_skipped(stack: StackRunner, faults: AwsFaults) -> None:
    """Only INSERTs of an account's EVENT# record with effects carry an outbox."""
    account_id = f"acct-skip-{uuid.uuid4().hex[:8]}"
    effects = exhausted_effect(account_id, 7)
    modified = {**stream_record(account_id, "ev-1", effects, "201"), "eventName": "MODIFY"}
    other = stream_record(account_id, "ev-2", effects, "202")
    other["dynamodb"]["NewImage"]["sk"] = {"S": "LEDGER#2026-01-01T00:00:00Z#x"}
    empty = stream_record(account_id, "ev-3", effects, "203")
    del empty["dynamodb"]["NewImage"]["effects"]
    assert stack.invoke("OutboxDispatcherFunction", {"Records": [modified, other, empty]}) == {"batchItemFailures": []}
    assert [e for e in faults.published() if account_id in e["Detail"]] == []


def test_a_record_that_keeps_failing_lands_in_the_outbox_dlq(stack: StackRunner, faults: AwsFaults) -> None:
    """PutEvents refuses one account's events every time: after the mapping's 100 retries the record
    is given up to OutboxDLQ (its alarm tells the operators) and the stream moves on: another
    account's effects, committed after it, are delivered.

    Free plan, 50 credits; gpt-5-nano input tokens cost 0.000004 credits: 15,000,000 tokens cost
    60 credits -> 50 spent, 10 of debt: `Credits Exhausted` with debt 10.000000."""
    failing, healthy = Account(stack, "acct-dlq"), Account(stack, "acct-ok")
    t = now() - timedelta(minutes=10)
    for account in (failing, healthy):
        account.create(t)
    drain(stack)
    before = len(stack.queue_messages("OutboxDLQ"))
    rule = faults.fail("events", "PutEvents", throttled, times=None, match=mentions(failing.id))
    for account in (failing, healthy):
        account.put("AI Usage Recorded", t + timedelta(minutes=1), feature="chat", model="gpt-5-nano",
                    input_tokens=15_000_000, output_tokens=0)
    _, streams = stack.drain()
    assert rule.fired == 101  # the first attempt and MaximumRetryAttempts: 100
    [given_up] = streams.given_up
    [dead] = stack.queue_messages("OutboxDLQ")[before:]
    assert dead["body"]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert dead["body"]["DDBStreamBatchInfo"]["startSequenceNumber"] == given_up
    assert failing.published() == []
    [exhausted] = healthy.published("Credits Exhausted")
    assert without_effect_id(exhausted) == {"debt": "10.000000"}
    # The failing account's change itself stands: it was committed, only its delivery is pending.
    state = failing.ledger.load(failing.id)
    assert state is not None and (state.totals.charged, state.debt) == (60 * C, 10 * C)


# ------------------------------------------------------------------------------------------- HTTP


SECRET = LOCAL_PARAMETERS["PaymentWebhookSecret"]


def signed(body: str) -> dict[str, str]:
    t = str(int(time.time()))
    mac = hmac.new(SECRET.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return {"Billing-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"}


def paid_purchase(account: Account, credits: int = 100) -> dict[str, Any]:
    """A new free account (50 credits) that bought ``credits`` credits at $0.02: 100 -> 200 cents."""
    account.create(now() - timedelta(minutes=1))
    drain(account.stack)
    status, purchase, _ = account.api("POST", "/v1/purchases", {"credits": credits})
    assert status == 201, purchase
    assert purchase["price"] == {"currency": "USD", "amount_minor": 2 * credits, "cents": 2 * credits}
    notice = json.dumps({"id": f"pay-{account.id}", "type": "payment.succeeded", "purchase_id": purchase["purchase_id"],
                         "amount": {"currency": "USD", "cents": 2 * credits}, "created_at": format_time(now())})
    paid = account.stack.api_request("POST", "/v1/webhooks/payments", body=notice, headers=signed(notice))
    assert paid.status == 200, paid.body
    return purchase


@pytest.mark.parametrize("fault", [read_timeout, crash], ids=["answer lost", "invocation died"])
def test_a_refund_committed_but_unanswered_is_replayed_and_issued_once(stack: StackRunner, faults: AwsFaults,
                                                                       fault: Callable[[], Exception]) -> None:
    """Issue 9, item 1. Nothing of the 100 purchased credits was used: all 100 are refunded,
    200 / 100 x 100 = 200 cents. The refund commits, then its answer is lost (the ledger finds its
    record: 200 at once) or the invocation dies (API Gateway answers 500; the client's retry with
    the same Idempotency-Key gets the stored answer). A retry without the key is the current state's
    409. `Refund Issued` leaves once, from the commit."""
    account = Account(stack, "acct-refund")
    purchase = paid_purchase(account)
    pid = purchase["purchase_id"]
    refund_path = f"/v1/purchases/{pid}/refund"
    rule = faults.fail("dynamodb", "TransactWriteItems", fault, when="after", match=mentions(pid))
    expected = {"purchase_id": pid, "refund": {"currency": "USD", "amount_minor": 200, "cents": 200},
                "credits": "100.000000"}
    status, body, _ = account.api("POST", refund_path, key="refund-1")
    assert rule.fired == 1
    if fault is crash:
        assert status == 500  # the Lambda died after the commit: nothing could answer
        status, body, _ = account.api("POST", refund_path, key="refund-1")
    assert (status, body) == (200, expected)
    assert account.api("POST", refund_path, key="refund-1")[:2] == (200, expected)  # replayed again
    status, body, _ = account.api("POST", refund_path)
    assert status == 409 and body["error"]["code"] == "conflict" and "refunded already" in body["error"]["message"]
    drain(stack)
    [issued] = account.published("Refund Issued")
    assert without_effect_id(issued) == expected
    assert len(account.entries("refund")) == 1
    state = account.ledger.load(account.id)
    assert state is not None and state.available() == 50 * C  # 150 less the 100 refunded
    assert_conserved(state)


@pytest.mark.parametrize("fault", [read_timeout, crash], ids=["answer lost", "invocation died"])
def test_a_check_in_committed_but_unanswered_grants_once(stack: StackRunner, faults: AwsFaults,
                                                         fault: Callable[[], Exception]) -> None:
    """A check-in (5 credits, valid one month) commits, then its answer is lost or the invocation
    dies: the keyed retry gets the stored 201; an unkeyed one is 409 "already checked in". 55 credits."""
    account = Account(stack, "acct-checkin")
    account.create(now() - timedelta(minutes=1))
    drain(stack)
    rule = faults.fail("dynamodb", "TransactWriteItems", fault, when="after", match=mentions(account.id))
    status, body, _ = account.api("POST", "/v1/check-in", key="day-1")
    assert rule.fired == 1
    if fault is crash:
        assert status == 500
        status, body, _ = account.api("POST", "/v1/check-in", key="day-1")
    assert status == 201, body
    assert (body["lot"]["kind"], body["lot"]["granted"]) == ("event", "5.000000")
    assert account.api("POST", "/v1/check-in", key="day-1")[:2] == (201, body)
    status, again, _ = account.api("POST", "/v1/check-in")
    assert status == 409 and again["error"]["code"] == "conflict"
    state = account.ledger.load(account.id)
    assert state is not None and state.available() == 55 * C
    assert [lot.kind for lot in state.lots] == ["monthly", "event"]


def test_a_coupon_redemption_whose_answer_is_lost_is_answered_from_its_record(stack: StackRunner,
                                                                              faults: AwsFaults) -> None:
    """A coupon of 12.5 credits for 7 days: the redemption commits, its answer times out, the ledger
    finds the record and answers 201 with the lot; one redemption is counted. 62.5 credits."""
    account = Account(stack, "acct-coupon")
    account.create(now() - timedelta(minutes=1))
    drain(stack)
    code = f"SAVE-{uuid.uuid4().hex[:8].upper()}"
    created = stack.api_request("POST", "/v1/admin/coupons", iam="arn:aws:iam::123456789012:role/ops", body={
        "code": code, "credits": "12.5", "valid_days": 7, "expires_at": format_time(now() + timedelta(days=30)),
        "max_redemptions": 5})
    assert created.status == 201, created.body
    rule = faults.fail("dynamodb", "TransactWriteItems", read_timeout, when="after", match=mentions(account.id))
    status, body, _ = account.api("POST", "/v1/coupons/redeem", {"code": code.lower()})
    assert rule.fired == 1
    assert status == 201, body
    assert (body["lot"]["kind"], body["lot"]["granted"]) == ("coupon", "12.500000")
    state = account.ledger.load(account.id)
    assert state is not None and state.available() == 62_500_000
    status, again, _ = account.api("POST", "/v1/coupons/redeem", {"code": code})
    assert status == 409 and again["error"]["code"] == "conflict"


def test_throttling_that_outlasts_the_retries_is_a_503_with_retry_after(stack: StackRunner,
                                                                         faults: AwsFaults) -> None:
    account = Account(stack, "acct-busy")
    account.create(now() - timedelta(minutes=1))
    drain(stack)
    before = items(stack)
    rule = faults.fail("dynamodb", "TransactWriteItems", throttled, times=None, match=mentions(account.id))
    status, body, headers = account.api("POST", "/v1/check-in", key="busy-1")
    assert rule.fired == 8  # every attempt (SETTLEMENT_MAX_ATTEMPTS' default)
    assert status == 503 and body["error"]["code"] == "service_busy" and body["error"]["message"]
    assert int(headers["retry-after"]) >= 1
    assert items(stack) == before
    faults.clear()
    status, body, _ = account.api("POST", "/v1/check-in", key="busy-1")  # the retry goes through
    assert status == 201 and body["lot"]["granted"] == "5.000000"


def test_conflicts_on_a_request_are_retried_and_a_lasting_race_is_a_409(stack: StackRunner,
                                                                        faults: AwsFaults) -> None:
    account = Account(stack, "acct-race")
    account.create(now() - timedelta(minutes=1))
    drain(stack)
    before = items(stack)
    rule = faults.fail("dynamodb", "TransactWriteItems", conflict, times=None, match=mentions(account.id))
    status, body, _ = account.api("PUT", "/v1/settings", {"credit_mail": False})
    assert rule.fired == 8
    assert status == 409 and body["error"]["code"] == "conflict"
    assert items(stack) == before
    faults.clear()
    faults.fail("dynamodb", "TransactWriteItems", conflict, times=2, match=mentions(account.id))
    status, body, _ = account.api("PUT", "/v1/settings", {"credit_mail": False})
    assert status == 200 and body["credit_mail"] is False


@pytest.mark.parametrize("path", ["/v1/balance", "/v1/purchases", "/v1/usage/ai"])
def test_reads_that_keep_being_throttled_are_a_503(stack: StackRunner, faults: AwsFaults, path: str) -> None:
    account = Account(stack, "acct-readbusy")
    account.create(now() - timedelta(minutes=1))
    drain(stack)
    for operation in ("BatchGetItem", "GetItem", "Query"):
        faults.fail("dynamodb", operation, throttled, times=None)
    status, body, headers = account.api("GET", path)
    assert status == 503 and body["error"]["code"] == "service_busy"
    assert int(headers["retry-after"]) >= 1
