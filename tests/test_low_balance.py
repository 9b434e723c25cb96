"""Low-credit mail: checked inside the change that triggers it, delivered through the outbox.

DynamoDB Local for the ledger, moto for SES (v2) and EventBridge, the outbox dispatcher's delivery.

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
from billing.domain.clock import format_time
from billing.services.settlement import settle_account
from billing.store import keys
from billing.store.ledger import Applied, Ledger
from tests.helpers import C, Platform, deliver_effects
from tests.test_account_api import Api, FixedClock, parse
from tests.test_account_api import clock as clock

SENDER = "billing@example.com"


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


def check(ledger: Ledger, aws: Aws, at: str, event_id: str | None = None) -> Applied:
    """The periodic check at ``at``, then the delivery of what it asked for."""
    event_id = event_id or keys.check_sweep_event_id(parse(at))
    applied = settle_account("acct-1", parse(at), event_id, ledger)
    deliver_effects(ledger, "acct-1", event_id, aws.publisher, aws.mail)
    return applied


def sent_mail(applied: Applied) -> bool:
    return any(e.detail_type == "Low Balance Notified" for e in applied.effects if hasattr(e, "detail_type"))


def test_one_mail_when_less_than_an_hour_remains(ledger: Ledger, aws: Aws, running: Platform) -> None:
    assert running.mailer.sent == []  # at the start (10:00) 50 remain against 27.2 an hour
    assert not sent_mail(check(ledger, aws, "2026-01-10T10:30:00Z"))  # 36.4 remain
    assert sent_mail(check(ledger, aws, "2026-01-10T11:00:00Z"))
    [mail] = aws.mails()
    assert mail.destinations["ToAddresses"] == ["user@example.com"]
    assert mail.source == SENDER
    assert "22.80 credits left, about 50 minutes" in mail.body and "https://example.com/buy" in mail.body
    [event] = aws.events()
    assert (event["source"], event["detail-type"]) == ("billing", "Low Balance Notified")
    assert event["detail"].pop("effect_id")
    assert event["detail"] == {"account_id": "acct-1", "remaining": "22.800000", "hours_left": 0.84}
    # once per purchase cycle
    assert not sent_mail(check(ledger, aws, "2026-01-10T11:10:00Z"))
    assert len(aws.mails()) == 1
    state = ledger.load("acct-1")
    assert state.mail_sent_cycle == state.mail_cycle
    # nothing was deducted by the checks: the run is still unsettled
    assert state.available() == 50 * C
    # the record delivered again (a retried stream batch): each effect was remembered once delivered,
    # so neither the event nor the mail goes again (issue 18)
    deliver_effects(ledger, "acct-1", keys.check_sweep_event_id(parse("2026-01-10T11:00:00Z")), aws.publisher,
                    aws.mail)
    assert len(aws.mails()) == 1
    assert aws.events() == []


def test_a_completed_purchase_starts_a_new_cycle(ledger: Ledger, aws: Aws, running: Platform,
                                                 clock: FixedClock) -> None:
    assert sent_mail(check(ledger, aws, "2026-01-10T11:00:00Z"))
    api = Api(ledger, clock)
    clock.now = parse("2026-01-10T11:20:00Z")
    purchase = api.buy(50)
    assert api.pay(purchase["purchase_id"], 100)[0] == 200
    # 100 available; at 12:40 accrued 27.2 x 8/3 = 72.533333: remaining 27.466667 >= 27.2
    assert not sent_mail(check(ledger, aws, "2026-01-10T12:40:00Z"))
    # at 12:45 accrued 27.2 x 2.75 = 74.8: remaining 25.2 < 27.2 -> the new cycle's mail
    assert sent_mail(check(ledger, aws, "2026-01-10T12:45:00Z"))
    assert len(aws.mails()) == 2 and "25.20 credits left" in aws.mails()[1].body


def test_credit_mail_off_sends_nothing_and_keeps_the_cycle(ledger: Ledger, aws: Aws, running: Platform,
                                                          clock: FixedClock) -> None:
    api = Api(ledger, clock)
    assert api.call("PUT", "/v1/settings", {"credit_mail": False})[0] == 200
    assert not sent_mail(check(ledger, aws, "2026-01-10T11:00:00Z"))
    assert aws.mails() == [] and aws.events() == []
    assert api.call("PUT", "/v1/settings", {"credit_mail": True})[0] == 200
    assert sent_mail(check(ledger, aws, "2026-01-10T11:05:00Z"))
    assert len(aws.mails()) == 1


def test_no_mail_without_burn(ledger: Ledger, aws: Aws) -> None:
    platform = Platform(ledger, "acct-1")
    platform.send("Account Created", "2026-01-01T00:00:00Z", email="user@example.com", plan="free")
    applied = check(ledger, aws, "2026-01-10T11:00:00Z")
    assert not applied.effects and not applied.entries  # nothing crossed, nothing due: nothing written
    assert aws.mails() == []


def test_concurrent_triggers_send_one_mail(ledger: Ledger, aws: Aws, running: Platform) -> None:
    applied: list[Applied] = []

    def trigger(n: int) -> None:
        applied.append(check(ledger, aws, "2026-01-10T11:00:00Z", event_id=f"trigger-{n}"))

    threads = [threading.Thread(target=trigger, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(applied) == 8
    assert sum(sent_mail(a) for a in applied) == 1
    assert len(aws.mails()) == 1
    assert [e["detail-type"] for e in aws.events()] == ["Low Balance Notified"]


def test_checked_after_a_deduction_and_at_a_start(ledger: Ledger) -> None:
    """Free plan, 50 credits. A large run from 10:00 (27.2 an hour): no mail at its start (50 >= 27.2).
    A micro run 10:20-10:50: no mail at its start (40.933333 remain against 29.16 an hour); its stop
    deducts 0.98, leaving 49.02 available with 22.666667 accrued by the large run: 26.353333 remain,
    less than 27.2 an hour, so the stop mails (hours left 0.9688... -> 0.97)."""
    p = Platform(ledger, "acct-c")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="c@example.com", plan="free")
    p.send("Container Started", "2026-03-01T10:00:00Z", container_id="c1", run_id="r1", tier="large")
    p.send("Container Started", "2026-03-01T10:20:00Z", container_id="c2", run_id="r2", tier="micro")
    assert p.mailer.sent == []
    p.send("Container Stopped", "2026-03-01T10:50:00Z", container_id="c2", run_id="r2", traffic_bytes=0)
    [(to, subject, body)] = p.mailer.sent
    assert to == "c@example.com" and subject == "Your credits are running low"
    assert "26.35 credits left, about 58 minutes" in body  # 0.97 h = 58.2 min
    assert p.publisher.of_type("Low Balance Notified") == [
        {"account_id": "acct-c", "remaining": "26.353333", "hours_left": 0.97}]
    # A start when little remains mails at once (another account, same figures at 10:50).
    q = Platform(ledger, "acct-d")
    q.send("Account Created", "2026-03-01T00:00:00Z", email="d@example.com", plan="free")
    q.send("Container Started", "2026-03-01T09:00:00Z", container_id="c1", run_id="r1", tier="large")
    assert q.mailer.sent == []  # 50 >= 27.2
    q.send("Container Started", "2026-03-01T10:00:00Z", container_id="c2", run_id="r2", tier="micro")
    # at 10:00: 27.2 accrued, 22.8 remain against 29.16 an hour: the start mails
    [(_, _, body)] = q.mailer.sent
    assert "You have 22.80 credits left" in body
    assert format_time(ledger.load("acct-d").as_of) == "2026-03-01T10:00:00Z"
