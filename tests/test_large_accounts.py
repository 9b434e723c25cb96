"""Accounts with more containers than the balance lists (domain.account.LISTED = 20): exact figures
through the real paths (intake and settlement of the platform's events, the schedules' jobs through
the work queue and the outbox until nothing is left, the migration of schema-1 accounts).

Rates (catalog defaults, billing-rules.md): micro 1.96 cr/h, small 6.80, medium 13.60; Code
Supporter 1.96 cr/h; storage 0.018 cr per GB-hour above 5 GB (Free) / 15 GB (Membership); monthly
credits Free 50, Membership 1,000. Every figure below is exact in µcr (no line needs rounding).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from billing.domain import forecast
from billing.domain.account import LISTED
from billing.domain.clock import format_time, parse_time
from billing.domain.model import SCHEMA, Container, CreditLot, Effect, Run, Totals, from_json, to_json
from billing.services import account_settings, outbox
from billing.store import keys, migration, queries
from billing.store.ledger import Ledger
from billing.store.migration import LegacyAccountState
from billing.store.outbox import OutboxRecord
from tests.helpers import (
    C,
    Platform,
    RecordingMailer,
    RecordingPublisher,
    RecordingQueue,
    assert_conserved,
    grant,
    invoke,
    load_handler,
)

RATE = {"micro": Decimal("1.96"), "small": Decimal("6.80"), "medium": Decimal("13.60")}
CS_RATE = Decimal("1.96")
STORAGE = Decimal("0.018")


def micro(credits: Decimal) -> int:
    value = credits * C
    assert value == int(value), f"{credits} is not a whole µcr"
    return int(value)


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    return {"Records": [
        {"messageId": f"m-{i}", "receiptHandle": f"r-{i}", "body": body, "attributes": {},
         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work", "awsRegion": "us-east-1"}
        for i, body in enumerate(bodies)
    ]}


class Jobs:
    """The schedules' jobs (MonthlyBillingFunction, then WorkFunction on each batch of ten) and the
    outbox (the table's stream: effects delivered once per new record, container work to the same
    queue) in turn, until neither has anything left. Records that existed when it was made are
    taken as delivered already (the Platform helper delivered them)."""

    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self.queue = RecordingQueue()
        self.publisher = RecordingPublisher()
        self.monthly = load_handler("monthly_billing", work_queue=self.queue)
        self.work = load_handler("work", ledger=ledger, work_queue=self.queue)
        self.kinds: Counter[str] = Counter()  # work messages handled, by kind
        self.seen = {key for key, _ in self._records()}

    def _records(self) -> list[tuple[tuple[str, str], Any]]:
        m = self.ledger.models
        items = m.EventRecord.scan(m.EventRecord.effects.exists(), consistent_read=True)
        return [((str(i.pk), str(i.sk)), i) for i in items if str(i.pk).startswith("ACCOUNT#")]

    def run(self, sweep: str, at: str) -> None:
        invoke(self.monthly, {"sweep": sweep, "scheduled_time": at})
        self.drain()

    def drain(self) -> None:
        while True:
            while self.queue.sent:
                bodies = self.queue.take()
                self.kinds.update(json.loads(b)["work"] for b in bodies)
                for start in range(0, len(bodies), 10):
                    assert invoke(self.work, sqs_event(bodies[start:start + 10])) == {"batchItemFailures": []}
            new = [(key, item) for key, item in self._records() if key not in self.seen]
            if not new:
                return
            for key, item in new:
                self.seen.add(key)
                record = OutboxRecord(keys.account_of(key[0]), key[1].removeprefix("EVENT#"),
                                      from_json(item.effects, list[Effect]))
                outbox.deliver(record, self.ledger, self.publisher, RecordingMailer(), self.queue,
                               "https://example.com/buy")


def containers_of(p: Platform, ids: list[str]) -> dict[str, Any]:
    return {cid: p.container(cid) for cid in ids}


def test_month_boundary_settles_every_container_of_a_large_account_exactly_once(ledger: Ledger) -> None:
    n = 80
    p = Platform(ledger, "big-month")
    ids = [f"c{i:03d}" for i in range(n)]
    p.send("Account Created", "2026-03-01T00:00:00Z", email="big@example.com", plan="membership")
    expected: dict[str, int] = {}  # µcr each container's month-end settlement charges
    before = Decimal(0)  # storage the starts settled (12:00 -> 22:00)
    for i, cid in enumerate(ids):
        gb = 16 + i % 5  # 1..5 GB above Membership's 15 GB
        p.send("Container Created", "2026-03-31T12:00:00Z", container_id=cid, storage_gb=gb)
        if i % 2 == 0:  # running from 22:00: run time (and Code Supporter) 2 h, storage 2 h
            tier, cs = ("micro", "small", "medium")[i % 3], i % 4 == 0
            p.send("Container Started", "2026-03-31T22:00:00Z", container_id=cid, run_id=f"r{i}", tier=tier,
                   code_supporter=cs)
            before += 10 * (gb - 15) * STORAGE
            expected[cid] = micro(2 * RATE[tier]) + (micro(2 * CS_RATE) if cs else 0) + micro(2 * (gb - 15) * STORAGE)
        else:  # stopped: storage 12:00 -> 24:00
            expected[cid] = micro(12 * (gb - 15) * STORAGE)
    assert p.state().container_ids is None and p.state().containers_count == n  # more than listed
    assert p.state().totals.charged == micro(before)

    jobs = Jobs(ledger)
    jobs.run("month_boundary", "2026-04-01T00:00:00Z")
    assert jobs.kinds["containers"] >= n // LISTED  # the month's closing went through chunks

    boundary = parse_time("2026-04-01T00:00:00Z")
    month_end = [e for e in p.entries() if e.reason == "month_end_settlement"]
    assert all(e.type == "deduction" and e.at == parse_time("2026-03-31T23:59:59Z") for e in month_end)
    by_container: Counter[str] = Counter()
    for e in month_end:
        assert sum(line.amount for line in e.lines) == e.amount
        assert [x.lot_id for x in e.paid_by] == ["monthly-2026-03"]  # the month's own lot pays
        for line in e.lines:
            assert line.month == "2026-03" and line.end == boundary
            by_container[line.container_id] += line.amount
    assert dict(by_container) == expected  # every container settled to the boundary, once
    march = micro(before) + sum(expected.values())
    rolled = [(e.type, e.lot_id) for e in p.entries() if e.type in ("expiry", "grant") and e.at == boundary]
    assert rolled == [("expiry", "monthly-2026-03"), ("grant", "monthly-2026-04")]

    state = p.state()
    assert state.as_of == boundary
    assert state.totals.charged == march
    lots = {lot.lot_id: lot for lot in state.lots}
    assert lots["monthly-2026-03"].closed and lots["monthly-2026-03"].expired == 1000 * C - march
    assert lots["monthly-2026-04"].remaining == 1000 * C and state.available() == 1000 * C
    assert forecast.accrued(state, ledger.catalog, boundary) == 0  # the aggregates are settled too
    assert_conserved(state)
    for c in containers_of(p, ids).values():
        assert c.storage_billed_until == boundary
        assert all(run.billed_until == boundary for run in c.runs.values())

    snapshot = (to_json(p.state()), to_json(containers_of(p, ids)), len(p.entries()))
    jobs.run("month_boundary", "2026-04-01T00:00:00Z")  # run twice
    jobs.run("month_boundary", "2026-04-01T00:07:00Z")  # and late
    assert (to_json(p.state()), to_json(containers_of(p, ids)), len(p.entries())) == snapshot


def test_running_out_on_a_large_account_stops_each_container_once_through_chunks(ledger: Ledger) -> None:
    n, running = 45, 30
    p = Platform(ledger, "big-out")
    ids = [f"c{i:03d}" for i in range(n)]
    p.send("Account Created", "2026-03-01T00:00:00Z", email="out@example.com", plan="free")
    billed = {cid for i, cid in enumerate(ids) if i % 3 == 0}  # 6 GB: 1 GB above Free's 5 GB
    for cid in ids:
        p.send("Container Created", "2026-03-02T00:00:00Z", container_id=cid, storage_gb=6 if cid in billed else 5)
    for i, cid in enumerate(ids[:running]):
        p.send("Container Started", "2026-03-02T00:00:00Z", container_id=cid, run_id=f"r{i}", tier="micro",
               code_supporter=False)
    assert p.state().totals.charged == 0 and p.state().container_ids is None

    # The forecast check at 01:00: 30 micro runs have accrued 30 x 1.96 = 58.8 >= 50 available.
    jobs = Jobs(ledger)
    jobs.run("periodic_check", "2026-03-02T01:00:00Z")
    assert jobs.kinds["containers"] >= 2  # the final settlement went through chunks
    # Final settlement to 01:00: 30 runs x 1 h x 1.96 + 15 billed containers x 1 GB x 1 h x 0.018.
    charged = micro(running * RATE["micro"] + len(billed) * STORAGE)
    state = p.state()
    assert state.exhausted
    assert state.totals.charged == charged == 59_070_000
    assert state.debt == charged - 50 * C
    assert state.available() == 0
    assert_conserved(state)
    assert forecast.accrued(state, ledger.catalog, parse_time("2026-03-02T01:00:00Z")) == 0

    stops = jobs.publisher.of_type("Stop Containers Requested")
    asked = [cid for detail in stops for cid in detail["container_ids"]]
    assert sorted(asked) == ids[:running]  # every running container, each exactly once
    assert {d["reason"] for d in stops} == {"credits_exhausted"}
    inactivations = [d["container_id"] for d in jobs.publisher.of_type("Container Inactivation Requested")]
    assert sorted(inactivations) == sorted(billed)  # each storage-billed container, once
    assert len(jobs.publisher.of_type("Credits Exhausted")) == 1

    # A later check asks for nothing again.
    published = len(jobs.publisher.sent)
    jobs.run("periodic_check", "2026-03-02T01:05:00Z")
    assert len(jobs.publisher.sent) == published and p.state().totals.charged == charged

    # The platform's stops at 01:30 add the last half hour of each run (and its storage) to the debt.
    for i, cid in enumerate(ids[:running]):
        p.send("Container Stopped", "2026-03-02T01:30:00Z", container_id=cid, run_id=f"r{i}", traffic_bytes=0)
    tail = running * micro(RATE["micro"] / 2) + len(billed & set(ids[:running])) * micro(STORAGE / 2)
    assert p.state().debt == charged - 50 * C + tail
    assert_conserved(p.state())
    assert not p.publisher.of_type("Stop Containers Requested")  # stopping ones are not asked again


def test_the_balance_item_does_not_grow_with_the_number_of_containers(ledger: Ledger) -> None:
    def balance_bytes(account_id: str, n: int) -> int:
        p = Platform(ledger, account_id)
        p.send("Account Created", "2026-03-01T00:00:00Z", email="s@example.com", plan="free")
        for i in range(n):
            p.send("Container Created", "2026-03-02T00:00:00Z", container_id=f"c{i:03d}", storage_gb=20)
        p.send("Container Started", "2026-03-02T01:00:00Z", container_id="c000", run_id="r0", tier="small",
               code_supporter=True)
        assert p.state().containers_count == n
        item = ledger.models.Account.get(keys.account_pk(account_id), keys.STATE, consistent_read=True)
        return len(item.body.encode())

    one, many = balance_bytes("one", 1), balance_bytes("many", 200)
    print(f"balance item: {one} bytes with 1 container, {many} with 200")
    assert many <= one + 64  # a few more digits in the sums; no per-container data
    assert many < 1024


@pytest.mark.parametrize("n", [LISTED, LISTED + 1])
def test_credits_exhausted_carries_the_final_settlements_debt(ledger: Ledger, n: int) -> None:
    p = Platform(ledger, f"debt-{n}")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="d@example.com", plan="free")
    for i in range(n):
        p.send("Container Created", "2026-03-02T00:00:00Z", container_id=f"c{i:03d}", storage_gb=5)
        p.send("Container Started", "2026-03-02T00:00:00Z", container_id=f"c{i:03d}", run_id=f"r{i}", tier="small",
               code_supporter=False)
    jobs = Jobs(ledger)
    jobs.run("periodic_check", "2026-03-02T00:30:00Z")
    debt = micro(n * RATE["small"] / 2) - 50 * C  # n runs x 0.5 h x 6.80, less the 50 credits
    assert p.state().debt == debt
    assert jobs.publisher.of_type("Credits Exhausted") == [{"account_id": p.account_id, "debt": f"{debt / C:.6f}"}]


@pytest.mark.parametrize("n", [LISTED, LISTED + 1])
def test_the_months_own_lots_pay_its_usage_without_a_false_exhaustion(ledger: Ledger, n: int) -> None:
    p = Platform(ledger, f"month-{n}")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="m@example.com", plan="free")
    grant(ledger, p.account_id, "promo", parse_time("2026-03-01T00:00:00Z"), "event", 500 * C,
          parse_time("2026-04-01T00:00:00Z"), "promotion")  # March has 550 credits, April 50
    for i in range(n):
        p.send("Container Created", "2026-03-31T22:00:00Z", container_id=f"c{i:03d}", storage_gb=5)
        p.send("Container Started", "2026-03-31T22:00:00Z", container_id=f"c{i:03d}", run_id=f"r{i}", tier="small",
               code_supporter=False)
    jobs = Jobs(ledger)
    jobs.run("month_boundary", "2026-04-01T00:00:00Z")
    state = p.state()
    # March: n runs x 2 h x 6.80 (<= 285.6), paid by March's 550 credits; April's 50 are untouched.
    assert state.totals.charged == micro(n * 2 * RATE["small"]) and state.debt == 0
    assert state.available() == 50 * C
    assert not state.exhausted and not jobs.publisher.of_type("Stop Containers Requested")
    assert_conserved(state)


@pytest.mark.parametrize("n", [LISTED, LISTED + 1])
def test_the_controls_wait_for_the_months_close_too(ledger: Ledger, n: int) -> None:
    p = Platform(ledger, f"close-{n}")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="w@example.com", plan="free")
    for lot, amount, expires in (("march", 4000, "2026-04-01T00:00:00Z"), ("april", 1000, "2026-05-01T00:00:00Z")):
        grant(ledger, p.account_id, lot, parse_time("2026-03-01T00:00:00Z"), "event", amount * C,
              parse_time(expires), "promotion")
    account_settings.update_settings(ledger, p.account_id, auto_top_up={
        "enabled": True, "below": "100", "credits": 100, "max_per_month": 2})
    for i in range(n):  # n containers, the last one stopped in March
        p.send("Container Created", "2026-03-31T00:00:00Z", container_id=f"c{i:03d}", storage_gb=5)
        if i < n - 1:
            p.send("Container Started", "2026-03-31T00:00:00Z", container_id=f"c{i:03d}", run_id=f"r{i}",
                   tier="small", code_supporter=False)
    jobs = Jobs(ledger)
    invoke(jobs.monthly, {"sweep": "month_boundary", "scheduled_time": "2026-04-01T00:00:00Z"})
    while jobs.queue.sent:  # the account's sweep, not yet its month_close chunks (still in the outbox)
        assert invoke(jobs.work, sqs_event(jobs.queue.take()[:10])) == {"batchItemFailures": []}
    # While March closes the last container starts: April has 1,000 + 50 credits, the burn is n x 6.80 <= 142.8
    # an hour, so no low-balance mail; nor an auto top-up (1,050 >= 100) there or at the boundary.
    p.send("Container Started", "2026-04-01T00:00:30Z", container_id=f"c{n - 1:03d}", run_id="late", tier="small",
           code_supporter=False)
    jobs.drain()
    state = p.state()
    # March: (n - 1) runs x 24 h x 6.80 (<= 3,264), paid by March's 4,000 + 50 credits.
    assert state.totals.charged == micro((n - 1) * 24 * RATE["small"]) and state.debt == 0
    assert state.available() == 1050 * C and state.auto_top_up is not None and state.auto_top_up.pending is None
    sent = [e.detail_type for e in [*p.publisher.sent, *jobs.publisher.sent]]
    assert "Auto Top-up Requested" not in sent and "Low Balance Notified" not in sent
    assert not state.exhausted and "Stop Containers Requested" not in sent
    assert_conserved(state)


def legacy_account(ledger: Any, account_id: str, n: int) -> int:
    """A schema-1 account as the one-item design stored it (no ``schema``; its containers inside the
    state): Membership since March 1st, ``n`` containers created March 9th 00:00 with 1-5 GB above the
    15 GB allowance, every 7th running ``small`` since 12:00 (every 14th with Code Supporter), storage
    billed to the start for the running ones; returns the µcr charged so far."""
    created, start = parse_time("2026-03-09T00:00:00Z"), parse_time("2026-03-09T12:00:00Z")
    containers, charged = {}, Decimal(0)
    for i in range(n):
        cid, gb = f"c{i:03d}", 16 + i % 5
        c = Container(container_id=cid, created_at=created, sizes=[(created, gb)], storage_billed_until=created,
                      seen_until=created)
        if i % 7 == 0:
            c.runs = {f"r{i}": Run(run_id=f"r{i}", started_at=start, tier="small", code_supporter=i % 14 == 0,
                                   billed_until=start)}
            c.storage_billed_until = c.seen_until = start
            charged += 12 * (gb - 15) * STORAGE
        containers[cid] = c
    march = parse_time("2026-03-01T00:00:00Z")
    spent = micro(charged)
    legacy = LegacyAccountState(
        account_id=account_id, email="legacy@example.com", created_at=march, plans=[(march, "membership")],
        as_of=start, version=42, totals=Totals(granted=1000 * C, spent=spent, charged=spent), containers=containers,
        lots=[CreditLot(lot_id="monthly-2026-03", kind="monthly", granted=1000 * C, remaining=1000 * C - spent,
                        granted_at=march, expires_at=parse_time("2026-04-01T00:00:00Z"),
                        reason="monthly_credits_membership")],
    )
    body = to_json(legacy)
    assert body.startswith('{"account_id"') and '"schema"' not in body and '"containers":{' in body
    ledger.models.Account(keys.account_pk(account_id), keys.STATE, body=body, version=42,
                          as_of=format_time(start), active_shard=keys.active_shard(account_id)).save()
    return spent


def accrued_at_march_10(n: int, except_: int | None = None) -> int:
    """By hand: what the legacy account's containers have accrued by March 10th 00:00."""
    total = Decimal(0)
    for i in range(n):
        b = 1 + i % 5
        if i == except_:
            continue
        if i % 7 == 0:  # run 12:00 -> 24:00, storage likewise
            total += 12 * (RATE["small"] + (CS_RATE if i % 14 == 0 else 0)) + 12 * b * STORAGE
        else:  # storage 00:00 -> 24:00
            total += 24 * b * STORAGE
    return micro(total)


def assert_migrated(ledger: Any, account_id: str, n: int) -> Any:
    state = ledger.load(account_id)
    assert state.schema == SCHEMA and state.containers_count == n and state.container_ids is None
    assert sorted(queries.container_ids(ledger.models, account_id)) == [f"c{i:03d}" for i in range(n)]
    assert_conserved(state)
    return state


def test_the_first_settlement_migrates_a_schema_1_account_and_settles_exactly(ledger: Ledger) -> None:
    n = 150
    charged = legacy_account(ledger, "legacy-a", n)
    p = Platform(ledger, "legacy-a")
    p.send("Container Stopped", "2026-03-10T00:00:00Z", container_id="c000", run_id="r0", traffic_bytes=0)
    # c000: small + Code Supporter 12:00 -> 24:00 = 12 x 8.76 = 105.12; storage 12 h x 1 GB x 0.018 = 0.216.
    [stop] = [e for e in p.entries() if e.reason == "container_stopped"]
    assert stop.type == "deduction" and stop.amount == 105_336_000
    state = assert_migrated(ledger, "legacy-a", n)
    assert state.version == 44  # 42, migrated (43), settled (44)
    assert state.totals.charged == charged + 105_336_000
    assert state.available() == 1000 * C - charged - 105_336_000
    # The aggregates the migration built: every other container's accrual, exactly.
    assert forecast.accrued(state, ledger.catalog, parse_time("2026-03-10T00:00:00Z")) == accrued_at_march_10(n, 0)
    assert not p.container("c000").runs


def test_the_migration_command_is_idempotent_and_resumable(ledger: Ledger, table_name: str, dynamodb_endpoint: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    n = 150
    for account_id in ("legacy-b1", "legacy-b2", "legacy-b3"):
        legacy_account(ledger, account_id, n)
    assert migration.migrate_account(ledger.models, ledger.catalog, "legacy-b3")  # migrated on its first use

    class Interrupted(Exception):
        pass

    def crash(**_: Any) -> Any:
        raise Interrupted  # the command stops after writing an account's first container items

    monkeypatch.setattr(migration, "TransactWrite", crash)
    with pytest.raises(Interrupted):
        migration.main(["--table", table_name, "--endpoint-url", dynamodb_endpoint])
    monkeypatch.undo()
    written = {a: len(queries.container_ids(ledger.models, a)) for a in ("legacy-b1", "legacy-b2")}
    assert sorted(written.values()) == [0, n - migration.IN_ONE_TRANSACTION]  # one account half done
    legacy_left = sorted(migration.legacy_accounts(ledger.models))
    assert legacy_left == ["legacy-b1", "legacy-b2"]

    def command() -> str:
        out = subprocess.run(
            [sys.executable, "-m", "billing.store.migration", "--table", table_name, "--endpoint-url",
             dynamodb_endpoint], capture_output=True, text=True, check=True, timeout=120,
        )
        return out.stdout.strip().splitlines()[-1]

    assert command() == "accounts of schema 1 found: 2, migrated now: 2"
    assert command() == "accounts of schema 1 found: 0, migrated now: 0"  # idempotent
    at = parse_time("2026-03-10T00:00:00Z")
    for account_id in ("legacy-b1", "legacy-b2", "legacy-b3"):
        state = assert_migrated(ledger, account_id, n)
        assert state.version == 43
        assert forecast.accrued(state, ledger.catalog, at) == accrued_at_march_10(n)
        assert state.next_check_at is not None and state.next_check_at > state.as_of


def run_out_by_event(ledger: Any) -> tuple[Platform, list[str], Counter[tuple[str, str]]]:
    """21 containers (1 GB billed each) running ``small`` since 00:00 on a Free account; c000's own stop at
    08:00 deducts 8 h x 6.80 + 8 h x 1 GB x 0.018 = 54.544 > 50: the final settlement, by an event.
    Returns how many distinct requests (effects) named each container, by detail type."""
    p = Platform(ledger, "out-by-event")
    ids = [f"c{i:03d}" for i in range(LISTED + 1)]
    p.send("Account Created", "2026-03-01T00:00:00Z", email="e@example.com", plan="free")
    for i, cid in enumerate(ids):
        p.send("Container Created", "2026-03-02T00:00:00Z", container_id=cid, storage_gb=6)
        p.send("Container Started", "2026-03-02T00:00:00Z", container_id=cid, run_id=f"r{i}", tier="small",
               code_supporter=False)
    jobs = Jobs(ledger)  # the stop's container work goes to its queue
    p.send("Container Stopped", "2026-03-02T08:00:00Z", container_id="c000", run_id="r0", traffic_bytes=0)
    jobs.drain()
    seen: set[str] = set()
    per_container: Counter[tuple[str, str]] = Counter()
    for e in [*p.publisher.sent, *jobs.publisher.sent]:
        if e.detail_type.endswith("Requested") and e.detail["effect_id"] not in seen:
            seen.add(e.detail["effect_id"])  # a redelivery of one effect is one request
            for cid in e.detail.get("container_ids") or [e.detail["container_id"]]:
                per_container[(e.detail_type, cid)] += 1
    return p, ids, per_container


def test_an_event_that_runs_out_settles_and_stops_each_container_once(ledger: Ledger) -> None:
    p, ids, asked = run_out_by_event(ledger)
    assert {cid: n for (kind, cid), n in asked.items() if kind.startswith("Stop")} == dict.fromkeys(ids[1:], 1)
    # 21 runs x 8 h x 6.80 + 21 x 8 h x 1 GB x 0.018, less the 50 credits
    assert p.state().debt == micro(len(ids) * 8 * (RATE["small"] + STORAGE)) - 50 * C
    assert_conserved(p.state())


def test_an_event_that_runs_out_asks_to_inactivate_each_container_once(ledger: Ledger) -> None:
    _, ids, asked = run_out_by_event(ledger)
    assert {cid: n for (kind, cid), n in asked.items() if kind.startswith("Cont")} == dict.fromkeys(ids, 1)


def test_a_member_limit_on_a_large_account_stops_every_running_container_of_that_member(ledger: Ledger) -> None:
    """More containers than the balance lists: the change that reaches the limit loads none of them,
    so the member's running containers are settled and asked to stop through the work queue, in
    chunks; the other member's run on."""
    from tests.test_account_api import FixedClock
    from tests.test_organizations import Team

    account = "big-team"
    team = Team(ledger, FixedClock("2026-03-01T00:00:00Z"), account)
    team.send("Account Created", "2026-03-01T00:00:00Z", email="team@example.com", plan="membership")
    for user in ("mia", "max"):
        team.send("Member Added", "2026-03-01T00:00:00Z", user_id=user, role="member", email=f"{user}@example.com")
    team.at("2026-03-02T00:00:00Z")
    status, body = team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": "40"}, sub=account, account=None)
    assert status == 200, body
    ids = [f"c{i:03d}" for i in range(25)]
    hers, his = ids[:22], ids[22:]  # 22 of mia's and 3 of max's, more than LISTED (20)
    for i, cid in enumerate(ids):
        user = "mia" if cid in hers else "max"
        # 5 GB is within Membership's 15 free GB: only run time is charged.
        team.send("Container Created", "2026-03-02T00:00:00Z", container_id=cid, storage_gb=5, user_id=user)
        team.send("Container Started", "2026-03-02T00:00:00Z", container_id=cid, run_id=f"r{i}", tier="micro",
                  code_supporter=False, user_id=user)
    assert p_state(ledger, account).container_ids is None  # the balance lists none of them
    assert team.published("Stop Containers Requested") == []

    # The forecast check at 01:00: mia's 22 micro runs accrued 22 x 1.96 = 43.12 >= her 40.
    jobs = Jobs(ledger)
    jobs.run("periodic_check", "2026-03-02T01:00:00Z")
    assert jobs.kinds["containers"] >= 2  # her containers went through chunks
    stops = jobs.publisher.of_type("Stop Containers Requested")
    asked = [cid for detail in stops for cid in detail["container_ids"]]
    assert sorted(asked) == hers  # every one of her running containers, each once, none of max's
    assert {(d["reason"], d["user_id"]) for d in stops} == {("member_limit", "mia")}
    reached = jobs.publisher.of_type("Member Limit Reached")
    assert [(d["user_id"], d["limit"], d["spent"]) for d in reached] == [("mia", "40.000000", "43.120000")]
    state = p_state(ledger, account)
    # Her 22 runs settled to 01:00: 22 x 1.96 = 43.12 deducted from the pool and her month's figure;
    # max's 3 runs go on unsettled (3 x 1.96 an hour accruing), the account is not exhausted.
    assert state.member_spent["2026-03"]["mia"] == micro(22 * RATE["micro"]) == 43_120_000
    assert state.members["mia"].limit_reached == "2026-03"
    assert state.totals.charged == 43_120_000 and not state.exhausted
    assert_conserved(state)
    for cid in his:
        assert all(run.billed_until in (None, parse_time("2026-03-02T00:00:00Z"))
                   for run in ledger.container(account, cid).runs.values())
    for cid in hers:
        assert all(run.billed_until == parse_time("2026-03-02T01:00:00Z")
                   for run in ledger.container(account, cid).runs.values())
    # Run again, and late: nothing is asked twice.
    jobs.run("periodic_check", "2026-03-02T01:00:00Z")
    jobs.run("periodic_check", "2026-03-02T01:05:00Z")
    assert len(jobs.publisher.of_type("Member Limit Reached")) == 1
    stops = jobs.publisher.of_type("Stop Containers Requested")
    assert sorted(cid for d in stops for cid in d["container_ids"]) == hers


def p_state(ledger: Ledger, account_id: str) -> Any:
    return ledger.load(account_id)
