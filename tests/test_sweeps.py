"""The monthly job and the periodic check: schedule -> monthly_billing -> sweep queue -> account_sweep."""

from __future__ import annotations

import json
from typing import Any

import pytest

from billing.domain.clock import parse_time
from billing.domain.errors import InvalidInput
from billing.domain.events import parse_message
from billing.domain.model import to_json
from billing.services.sweeps import AccountSweep, SweepRequest
from tests.helpers import C, Outbox, Platform, RecordingMailer, RecordingQueue, assert_conserved, invoke, load_handler


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    return {"Records": [
        {"messageId": f"m-{i}", "receiptHandle": f"r-{i}", "body": body, "attributes": {},
         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work", "awsRegion": "us-east-1"}
        for i, body in enumerate(bodies)
    ]}


def run_job(ledger, publisher, sweep: str, at: str) -> dict[str, Any]:
    """The schedule's job, then the work queue until it is empty (each batch as WorkFunction gets
    it), then the outbox."""
    queue = RecordingQueue()
    monthly = load_handler("monthly_billing", work_queue=queue)
    work = load_handler("work", ledger=ledger, work_queue=queue)
    result = invoke(monthly, {"sweep": sweep, "scheduled_time": at})
    while queue.sent:
        bodies = queue.take()
        for start in range(0, len(bodies), 10):
            assert invoke(work, sqs_event(bodies[start:start + 10])) == {"batchItemFailures": []}
    Outbox(ledger, publisher, RecordingMailer()).drain()
    return result


def test_month_boundary_settles_every_account_with_resources_and_is_repeatable(ledger):
    busy, idle, bare = Platform(ledger, "busy"), Platform(ledger, "idle"), Platform(ledger, "bare")
    busy.send("Account Created", "2026-03-01T00:00:00Z", email="b@example.com", plan="membership")
    busy.send("Container Created", "2026-03-30T00:00:00Z", container_id="c1", storage_gb=25)  # 10 GB billable
    busy.send("Container Started", "2026-03-31T22:00:00Z", container_id="c1", run_id="r1", tier="medium",
              code_supporter=True)
    idle.send("Account Created", "2026-03-01T00:00:00Z", email="i@example.com", plan="free")
    idle.send("Container Created", "2026-03-31T12:00:00Z", container_id="c9", storage_gb=7)  # 2 GB billable
    bare.send("Account Created", "2026-03-01T00:00:00Z", email="x@example.com", plan="free")

    result = run_job(ledger, busy.publisher, "month_boundary", "2026-04-01T00:00:00Z")
    assert result == {"sweep": "month_boundary", "shards": 16}  # one page message per shard of the index

    state = busy.state()
    # busy: medium + Code Supporter 22:00 -> 24:00 = (13.6 + 1.96) x 2 = 31.12; storage settled at the
    # start (Mar 30 00:00 -> Mar 31 22:00 = 46 h x 10 GB x 0.018 = 8.28) and now 2 h more = 0.36.
    assert state.totals.charged == 8_280_000 + 31_120_000 + 360_000
    assert state.as_of == parse_time("2026-04-01T00:00:00Z")
    assert [lot.lot_id for lot in state.lots if not lot.closed] == ["monthly-2026-04"]
    assert state.available() == 1000 * C
    assert_conserved(state)
    # idle: stopped container's storage 12:00 -> 24:00 = 12 h x 2 GB x 0.018 = 0.432 as of March.
    assert idle.state().totals.charged == 432_000
    assert idle.state().available() == 50 * C
    # bare: untouched until something touches it.
    assert bare.state().as_of == parse_time("2026-03-01T00:00:00Z")

    before = (to_json(busy.state()), to_json(idle.state()))
    run_job(ledger, busy.publisher, "month_boundary", "2026-04-01T00:00:00Z")  # run twice
    run_job(ledger, busy.publisher, "month_boundary", "2026-04-01T00:07:00Z")  # run late
    after = (to_json(busy.state()), to_json(idle.state()))
    assert after == before


def test_periodic_check_ends_the_credits_when_running_usage_reaches_the_balance(ledger):
    p = Platform(ledger, "runner")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="r@example.com", plan="free")
    p.send("Container Created", "2026-03-02T00:00:00Z", container_id="c1", storage_gb=5)
    p.send("Container Started", "2026-03-02T00:00:00Z", container_id="c1", run_id="r1", tier="large",
           code_supporter=False)
    # At 01:00 the run has accrued 27.2 of 50: nothing happens.
    run_job(ledger, p.publisher, "periodic_check", "2026-03-02T01:00:00Z")
    assert p.state().totals.charged == 0 and not p.state().exhausted
    # At 01:55 it has accrued 27.2 x 1 11/12 h = 52.133333 >= 50: final settlement, debt, stop.
    run_job(ledger, p.publisher, "periodic_check", "2026-03-02T01:55:00Z")
    state = p.state()
    assert state.exhausted
    assert state.totals.charged == 52_133_333  # 27.2 x 6900 / 3600, rounded half-up
    assert state.debt == 2_133_333
    assert p.publisher.of_type("Stop Containers Requested") == [
        {"account_id": "runner", "container_ids": ["c1"], "reason": "credits_exhausted"}
    ]
    assert p.publisher.of_type("Credits Exhausted") == [{"account_id": "runner", "debt": "2.133333"}]
    # The platform's stop at 02:00 settles the remaining 5 minutes into the debt: 27.2 / 12 = 2.266667.
    p.send("Container Stopped", "2026-03-02T02:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    assert p.state().debt == 2_133_333 + 2_266_667
    assert_conserved(p.state())


def test_a_bad_sweep_message_fails_alone(ledger):
    p = Platform(ledger, "ok")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="o@example.com", plan="free")
    p.send("Container Created", "2026-03-02T00:00:00Z", container_id="c1", storage_gb=6)
    good = json.dumps({"work": "account", "account_id": "ok", "at": "2026-04-01T00:00:00Z", "sweep": "month_boundary"})
    event = {"Records": [
        {"messageId": "bad", "receiptHandle": "r", "body": "{not json", "attributes": {}, "messageAttributes": {},
         "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn", "awsRegion": "us-east-1"},
        {"messageId": "good", "receiptHandle": "r", "body": good, "attributes": {}, "messageAttributes": {},
         "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": "arn", "awsRegion": "us-east-1"},
    ]}
    result = invoke(load_handler("work", ledger=ledger, work_queue=RecordingQueue()), event)
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}]}
    assert p.state().as_of == parse_time("2026-04-01T00:00:00Z")


@pytest.mark.parametrize(("scheduler_input", "reason"), [
    ({"sweep": "month_boundary"}, "missing required field `scheduled_time`"),
    ({"sweep": "yearly", "scheduled_time": "2026-04-01T00:00:00Z"}, "`sweep`"),
    ({"sweep": "month_boundary", "scheduled_time": "2026-04-01T00:00:00"}, "timezone"),
    ({"sweep": "month_boundary", "scheduled_time": "2026-04-01T02:00:00+02:00"}, "scheduled_time must be a UTC"),
    ({"sweep": "month_boundary", "scheduled_time": 1775001600}, "`scheduled_time`"),
])
def test_a_bad_schedule_input_fails_the_job_and_queues_nothing(ledger, scheduler_input, reason):
    p = Platform(ledger, "busy")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="b@example.com", plan="free")
    p.send("Container Created", "2026-03-02T00:00:00Z", container_id="c1", storage_gb=6)
    queue = RecordingQueue()
    with pytest.raises(InvalidInput, match="invalid sweep request") as raised:
        invoke(load_handler("monthly_billing", work_queue=queue), scheduler_input)
    assert reason in str(raised.value)
    assert queue.sent == []


def test_schedule_times_are_read_as_utc_seconds():
    request = parse_message({"sweep": "periodic_check", "scheduled_time": "2026-04-01T00:05:00.750+00:00",
                             "extra": "ignored"}, SweepRequest, "sweep request")
    assert request.scheduled_time == parse_time("2026-04-01T00:05:00Z")
    assert AccountSweep(account_id="a", at=request.scheduled_time, sweep=request.sweep).event_id == \
        "sweep:check:2026-04-01T00:05:00Z"


class CountingSqs:
    """An SQS client under the real MessageQueue adapter: keeps the bodies, counts the requests."""

    def __init__(self) -> None:
        self.calls = 0
        self.bodies: list[str] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        assert len(Entries) <= 10  # SQS's limit
        self.calls += 1
        self.bodies.extend(e["MessageBody"] for e in Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def test_a_shard_page_does_a_bounded_amount_of_work_and_hands_on_the_rest(ledger):
    """The month close's bound per WorkFunction invocation (issue 19: 58.8 s estimated against 60 s):
    a page message reads one page of PAGE accounts and sends ceil((PAGE + 1) / 10) SendMessageBatch
    (its sweeps and the next page), so a batch of 10 page messages makes at most 10 Queries and
    10 x 6 = 60 SendMessageBatch calls, whatever the number of accounts (bench/README.md times it)."""
    from billing.adapters import MessageQueue
    from billing.services.sweeps import PAGE, ShardPage, body

    assert PAGE == 50
    table = ledger.models.Account.Meta.table_name
    client = ledger.models.connection.client
    for start in range(0, PAGE + 1, 25):  # PAGE + 1 accounts on one shard of the active index
        client.batch_write_item(RequestItems={table: [
            {"PutRequest": {"Item": {"pk": {"S": f"ACCOUNT#x{k:03d}"}, "sk": {"S": "STATE"}, "body": {"S": "{}"},
                                     "active_shard": {"S": "ACTIVE#0"}}}}
            for k in range(start, min(start + 25, PAGE + 1))]})
    sqs = CountingSqs()
    work = load_handler("work", ledger=ledger, work_queue=MessageQueue("work", client=sqs))
    at = parse_time("2026-04-01T00:00:00Z")
    page = body(ShardPage(sweep="month_boundary", shard="ACTIVE#0", at=at))
    assert invoke(work, sqs_event([page])) == {"batchItemFailures": []}
    sent = [json.loads(b) for b in sqs.bodies]
    # 50 sweeps + the next page = 51 messages: 6 requests of at most 10
    assert [m["work"] for m in sent] == ["account"] * PAGE + ["shard_page"] and sqs.calls == 6
    assert sorted(m["account_id"] for m in sent[:-1]) == [f"x{k:03d}" for k in range(PAGE)]
    following = sqs.bodies[-1]
    sqs.calls, sqs.bodies = 0, []
    assert invoke(work, sqs_event([following])) == {"batchItemFailures": []}
    # the last account alone, and no page after it
    assert [json.loads(b)["account_id"] for b in sqs.bodies] == [f"x{PAGE:03d}"] and sqs.calls == 1
