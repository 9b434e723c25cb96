"""Low-credit mail: DynamoDB Local for the ledger, moto for SES (v2) and EventBridge, a fixed clock.

Worked example (free plan, 50 credits; a `large` container at 27.20 credits/hour from 10:00):
- 10:00: remaining 50 >= 27.2 of burn: no mail.
- 11:00: accrued 27.2, remaining 22.8 < 27.2: one mail, hours_left 22.8 / 27.2 = 0.838... -> 0.84.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from billing.adapters import EventPublisher, MailSender
from billing.services.low_balance import MailDecision, maybe_send_low_balance_mail
from billing.store.ledger import Ledger
from tests.helpers import C, Platform, load_handler
from tests.test_account_api import Api, FixedClock, parse
from tests.test_account_api import clock as clock

SENDER = "billing@example.com"
BUY_URL = "https://example.com/billing/credits"


class Aws:
    def __init__(self) -> None:
        self.ses = boto3.client("sesv2", region_name="us-east-1")
        self.ses.create_email_identity(EmailIdentity=SENDER)
        sqs = boto3.client("sqs", region_name="us-east-1")
        self.sqs = sqs
        self.queue_url = sqs.create_queue(QueueName="billing-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = boto3.client("events", region_name="us-east-1")
        events.put_rule(Name="billing-out", EventPattern=json.dumps({"source": ["billing"]}))
        events.put_targets(Rule="billing-out", Targets=[{"Id": "q", "Arn": arn}])
        self.publisher = EventPublisher("default", client=events)
        self.mail = MailSender(SENDER, client=self.ses)

    def mails(self) -> list[Any]:
        return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)

    def events(self) -> list[dict[str, Any]]:
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for m in got:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])


@pytest.fixture()
def aws(ledger: Ledger) -> Iterator[Aws]:
    # DynamoDB stays on DynamoDB Local (its data is keyed by the real test credentials).
    config: Any = {"core": {"mock_credentials": False, "passthrough": {"services": ["dynamodb"]}}}
    with mock_aws(config=config):
        yield Aws()


@pytest.fixture()
def running(ledger: Ledger) -> Platform:
    platform = Platform(ledger, "acct-1")
    platform.send("Account Created", "2026-01-01T00:00:00Z", email="user@example.com", plan="free")
    platform.send("Container Started", "2026-01-10T10:00:00Z", container_id="c1", run_id="r1", tier="large",
                  code_supporter=False)
    return platform


def check(ledger: Ledger, aws: Aws, at: str) -> MailDecision:
    return maybe_send_low_balance_mail("acct-1", parse(at), ledger, aws.mail, aws.publisher)


def test_one_mail_when_less_than_an_hour_remains(ledger: Ledger, aws: Aws, running: Platform) -> None:
    first = check(ledger, aws, "2026-01-10T10:00:00Z")
    assert (first.sent, first.reason, first.remaining, first.hourly_burn) == (
        False, "balance_sufficient", 50 * C, 27_200_000)
    decision = check(ledger, aws, "2026-01-10T11:00:00Z")
    assert decision.sent, decision
    assert (decision.remaining, decision.hours_left) == (22_800_000, 0.84)
    [mail] = aws.mails()
    assert mail.destinations["ToAddresses"] == ["user@example.com"]
    assert mail.source == SENDER
    assert "22.800000" in mail.body and "0.84" in mail.body and BUY_URL in mail.body
    [event] = aws.events()
    assert (event["source"], event["detail-type"]) == ("billing", "Low Balance Notified")
    assert event["detail"] == {"account_id": "acct-1", "remaining": "22.800000", "hours_left": 0.84}
    # once per purchase cycle
    later = check(ledger, aws, "2026-01-10T11:10:00Z")
    assert (later.sent, later.reason) == (False, "already_sent_this_cycle")
    assert len(aws.mails()) == 1
    state = ledger.load("acct-1")
    assert state.mail_sent_cycle == state.mail_cycle
    # nothing was deducted by the checks: the run is still unsettled
    assert state.available() == 50 * C


def test_a_completed_purchase_starts_a_new_cycle(ledger: Ledger, aws: Aws, running: Platform,
                                                 clock: FixedClock) -> None:
    assert check(ledger, aws, "2026-01-10T11:00:00Z").sent
    api = Api(ledger, clock)
    clock.now = parse("2026-01-10T11:20:00Z")
    purchase = api.buy(50)
    assert api.pay(purchase["purchase_id"], 100)[0] == 200
    # 100 available; at 12:40 accrued 27.2 x 8/3 = 72.533333: remaining 27.466667 >= 27.2
    assert check(ledger, aws, "2026-01-10T12:40:00Z").reason == "balance_sufficient"
    # at 12:45 accrued 27.2 x 2.75 = 74.8: remaining 25.2 < 27.2 -> the new cycle's mail
    decision = check(ledger, aws, "2026-01-10T12:45:00Z")
    assert decision.sent and decision.remaining == 25_200_000
    assert len(aws.mails()) == 2


def test_credit_mail_off_sends_nothing_and_keeps_the_cycle(ledger: Ledger, aws: Aws, running: Platform,
                                                          clock: FixedClock) -> None:
    api = Api(ledger, clock)
    assert api.call("PUT", "/v1/settings", {"credit_mail": False})[0] == 200
    off = check(ledger, aws, "2026-01-10T11:00:00Z")
    assert (off.sent, off.reason) == (False, "credit_mail_off")
    assert aws.mails() == [] and aws.events() == []
    assert api.call("PUT", "/v1/settings", {"credit_mail": True})[0] == 200
    assert check(ledger, aws, "2026-01-10T11:05:00Z").sent
    assert len(aws.mails()) == 1


def test_no_mail_without_burn(ledger: Ledger, aws: Aws) -> None:
    platform = Platform(ledger, "acct-1")
    platform.send("Account Created", "2026-01-01T00:00:00Z", email="user@example.com", plan="free")
    decision = check(ledger, aws, "2026-01-10T11:00:00Z")
    assert (decision.sent, decision.reason, decision.hours_left) == (False, "balance_sufficient", None)
    unknown = maybe_send_low_balance_mail("nobody", parse("2026-01-10T11:00:00Z"), ledger, aws.mail, aws.publisher)
    assert (unknown.sent, unknown.reason) == (False, "unknown_account")
    assert aws.mails() == []


def test_concurrent_triggers_send_one_mail(ledger: Ledger, aws: Aws, running: Platform) -> None:
    decisions: list[MailDecision] = []

    def trigger() -> None:
        decisions.append(check(ledger, aws, "2026-01-10T11:00:00Z"))

    threads = [threading.Thread(target=trigger) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(decisions) == 8
    assert sum(d.sent for d in decisions) == 1
    assert len(aws.mails()) == 1
    assert [e["detail-type"] for e in aws.events()] == ["Low Balance Notified"]


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {"Records": [
        {"messageId": f"m{i}", "receiptHandle": "h", "body": body, "attributes": {}, "messageAttributes": {},
         "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
         "awsRegion": "us-east-1"}
        for i, body in enumerate(bodies)
    ]}


def test_notifier_function_reports_bad_messages_alone(ledger: Ledger, aws: Aws, running: Platform,
                                                      clock: FixedClock) -> None:
    from tests.test_account_api import Context

    notifier = load_handler("low_balance_notifier", ledger=ledger, clock=clock, publisher=aws.publisher,
                            mail_sender=aws.mail)
    good = json.dumps({"account_id": "acct-1", "at": "2026-01-10T11:00:00Z"})
    result = notifier.lambda_handler(sqs_event(good, "{not json", json.dumps({"at": "2026-01-10T11:00:00Z"}),
                                               json.dumps({"account_id": "acct-1", "at": "noon"})), Context())
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"},
                                            {"itemIdentifier": "m3"}]}
    assert len(aws.mails()) == 1
    # without "at" the injected clock decides the moment
    clock.now = parse("2026-01-10T11:30:00Z")
    again = notifier.lambda_handler(sqs_event(json.dumps({"account_id": "acct-1"})), Context())
    assert again == {"batchItemFailures": []}
    assert len(aws.mails()) == 1


def test_checks_are_enqueued_for_the_notifier(aws: Aws) -> None:
    from billing.adapters import LowBalanceChecks

    LowBalanceChecks(None).enqueue("acct-1", parse("2026-01-10T11:00:00Z"))  # no queue: nothing to do
    url = aws.sqs.create_queue(QueueName="low-balance")["QueueUrl"]
    LowBalanceChecks(url, client=aws.sqs).enqueue("acct-1", parse("2026-01-10T11:00:00Z"))
    [message] = aws.sqs.receive_message(QueueUrl=url)["Messages"]
    assert json.loads(message["Body"]) == {"account_id": "acct-1", "at": "2026-01-10T11:00:00Z"}


def test_settlement_asks_for_a_check_after_a_deduction_and_at_a_start(ledger):
    """Checked after every deduction and at every container start, not after other events."""
    from billing.adapters import LowBalanceChecks
    from billing.domain.events import parse_platform_event
    from billing.services.settlement import settle_platform_event
    from tests.helpers import RecordingPublisher

    class RecordingChecks(LowBalanceChecks):
        def __init__(self) -> None:
            super().__init__("local")
            self.asked: list[tuple[str, str]] = []

        def enqueue(self, account_id, at):  # type: ignore[override]
            self.asked.append((account_id, at.strftime("%H:%M")))

    checks, publisher = RecordingChecks(), RecordingPublisher()

    def send(detail_type, at, source="platform.containers", **fields):
        event = {"source": source, "detail-type": detail_type,
                 "detail": {"event_id": f"{detail_type}-{at}", "account_id": "acct-c", "occurred_at": at, **fields}}
        settle_platform_event(parse_platform_event(event), ledger, publisher, checks)

    send("Account Created", "2026-03-01T00:00:00Z", source="platform.accounts", email="c@example.com", plan="free")
    send("Container Created", "2026-03-01T09:00:00Z", container_id="c1", storage_gb=5)
    send("Container Started", "2026-03-01T10:00:00Z", container_id="c1", run_id="r1", tier="small",
         code_supporter=False)
    send("Container Traffic Reported", "2026-03-01T10:30:00Z", container_id="c1", run_id="r1", traffic_bytes=10)
    send("Container Stopped", "2026-03-01T11:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    assert checks.asked == [("acct-c", "10:00"), ("acct-c", "11:00")]
