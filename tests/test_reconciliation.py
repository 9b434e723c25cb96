"""Reconciliation (issue 14): every account's stored balance, lots and aggregates against its ledger.

The scenario (free plan: 50 credits a month, 5 GB of storage free; membership: 1,000 and 15 GB):
- acct-a (free): a 5 GB container (nothing billable); a small run 2026-03-31 23:00 -> 04-01 01:00 is split
  at the month boundary: 6.80 from March's lot, 6.80 from April's; an AI chat on Apr 1 (claude-haiku-4.5,
  1000 in / 500 out = 0.08 + 0.2 = 0.28). March's lot expires with 50 - 6.80 = 43.20; April's keeps
  50 - 6.80 - 0.28 = 42.92.
- acct-b (free): one AI chat on Mar 2 (0.28): the monthly lot keeps 50 - 0.28 = 49.72.
- acct-c (free): a large run Mar 2 10:00-12:00 = 27.20 x 2 = 54.40: 50 paid, 4.40 of debt; a purchase of
  50 credits (US$1.00) repays the debt (45.60 left), and is refunded the next day: 45.60 credits back.
- acct-d (membership): the scenario of tests/test_usage_ranges.py (labels, two containers, an AI chat;
  Mar 3 charges 1.08 + 13.60 + 0.28 = 14.96) and a daily check-in (5 credits).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from billing.adapters import FunctionInvoker
from billing.domain.errors import InvalidInput
from billing.domain.model import AccountState, Purchase, from_json, to_json
from billing.domain.usage import Cell
from billing.services import grants, purchases
from billing.services.reconcile import (
    FINISHED,
    ReadBudget,
    ReconciliationReport,
    main,
    reconcile,
)
from billing.store import keys
from billing.store.idempotency import request_key
from billing.store.ledger import Ledger
from billing.store.usage import attribute
from localsam.runner import StackRunner
from localsam.runtime import InvocationError
from tests.api_helpers import FakeContext
from tests.helpers import C, Platform, RecordingPublisher, assert_conserved, invoke, load_handler
from tests.travel import mid_month

ACCOUNTS = ["acct-a", "acct-b", "acct-c", "acct-d"]
HAIKU_CHAT: dict[str, Any] = {"feature": "chat", "model": "claude-haiku-4.5", "input_tokens": 1000,
                              "output_tokens": 500}


@pytest.fixture(scope="module", autouse=True)
def _mid_month() -> Iterator[None]:
    """This module's stories happen "now": at a fixed moment mid-month, so that no month, day or year
    boundary changes their figures whatever the date the suite runs at."""
    with mid_month():
        yield


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def build_scenario(ledger: Ledger) -> None:
    a = Platform(ledger, "acct-a")
    a.send("Account Created", "2026-03-01T00:00:00Z", email="a@example.com", plan="free")
    a.send("Container Created", "2026-03-01T00:00:00Z", container_id="c1", storage_gb=5)
    a.send("Container Started", "2026-03-31T23:00:00Z", container_id="c1", run_id="r1", tier="small")
    a.send("Container Stopped", "2026-04-01T01:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    a.send("AI Usage Recorded", "2026-04-01T02:00:00Z", **HAIKU_CHAT)

    b = Platform(ledger, "acct-b")
    b.send("Account Created", "2026-03-01T00:00:00Z", email="b@example.com", plan="free")
    b.send("AI Usage Recorded", "2026-03-02T10:00:00Z", **HAIKU_CHAT)

    c = Platform(ledger, "acct-c")
    c.send("Account Created", "2026-03-01T00:00:00Z", email="c@example.com", plan="free")
    c.send("Container Created", "2026-03-01T00:00:00Z", container_id="c1", storage_gb=5)
    c.send("Container Started", "2026-03-02T10:00:00Z", container_id="c1", run_id="r1", tier="large")
    c.send("Container Stopped", "2026-03-02T12:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    bought = purchases.create_purchase(
        ledger, "acct-c", 50, request_key("acct-c", "buy-1", "POST", "/v1/purchases", {"credits": 50}),
        at("2026-03-03T09:00:00Z"),
    )
    assert isinstance(bought, Purchase)  # the service's record (the API renders it)
    pid = bought.purchase_id
    notice = purchases.PaymentNotice(id="pay_c1", type="payment.succeeded", purchase_id=pid, currency="USD",
                                     cents=100, created_at=at("2026-03-03T09:00:00Z"))
    purchases.handle_payment(ledger, notice, at("2026-03-03T09:00:00Z"))
    refunded = purchases.refund_purchase(
        ledger, "acct-c", pid, request_key("acct-c", "refund-1", "POST", f"/v1/purchases/{pid}/refund", None),
        at("2026-03-04T09:00:00Z"),
    )
    assert refunded["credits"] == "45.600000"

    d = Platform(ledger, "acct-d")
    d.send("Account Created", "2026-03-01T00:00:00Z", email="d@example.com", plan="membership")
    d.send("Container Created", "2026-03-02T00:00:00Z", container_id="c1", storage_gb=20, labels={"team": "core"})
    d.send("Container Created", "2026-03-02T00:00:00Z", container_id="c2", storage_gb=5, labels={"team": "ml"})
    d.send("Container Started", "2026-03-02T10:00:00Z", container_id="c1", run_id="r1", tier="small",
           code_supporter=True)
    d.send("Container Stopped", "2026-03-02T12:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    d.send("Container Labeled", "2026-03-03T00:00:00Z", container_id="c1", labels={"team": "platform"})
    d.send("Container Started", "2026-03-03T08:00:00Z", container_id="c2", run_id="r2", tier="medium")
    d.send("Container Stopped", "2026-03-03T09:00:00Z", container_id="c2", run_id="r2", traffic_bytes=0)
    d.send("AI Usage Recorded", "2026-03-03T10:00:00Z", container_id="c2", labels={"team": "ml", "api_key": "k1"},
           **HAIKU_CHAT)
    d.send("Container Started", "2026-03-04T10:00:00Z", container_id="c1", run_id="r3", tier="micro")
    grants.check_in(ledger, "acct-d", request_key("acct-d", "ci-1", "POST", "/v1/check-in", None),
                    at("2026-03-04T10:30:00Z"))


@pytest.fixture()
def scenario(ledger: Ledger) -> Ledger:
    build_scenario(ledger)
    return ledger


def check(ledger: Ledger, **kwargs: Any) -> ReconciliationReport:
    return reconcile(ledger.models, ledger.catalog, sleep=lambda _: None, **kwargs)


def set_balance(ledger: Ledger, account_id: str, change: Any) -> None:
    """Change an account's stored balance item directly, behind the ledger's back."""
    item = ledger.models.Account.get(keys.account_pk(account_id), keys.STATE, consistent_read=True)
    state = from_json(item.body, AccountState)
    change(state)
    item.body = to_json(state)
    item.save()


# ---------------------------------------------------------------------------------- the scenario


def test_the_scenario_is_what_the_docstring_says(scenario: Ledger) -> None:
    a, b, c, d = (scenario.load(account) for account in ACCOUNTS)
    assert a is not None and b is not None and c is not None and d is not None
    for state in (a, b, c, d):
        assert_conserved(state)
    assert [(lot.lot_id, lot.remaining, lot.expired) for lot in a.lots] == [
        ("monthly-2026-03", 0, 43_200_000), ("monthly-2026-04", 42_920_000, 0)]
    assert b.available() == 49_720_000
    assert (c.totals.charged, c.totals.refunded, c.debt) == (54_400_000, 45_600_000, 0)  # 54.40; 50 + 4.40 repaid
    assert d.totals.granted == 1005 * C  # 1,000 monthly + a 5-credit check-in


def test_a_consistent_table_reconciles_with_no_difference(scenario: Ledger) -> None:
    report = check(scenario)
    assert report.to_dict() | {"read_units": 0} == {
        "accounts_checked": 4, "differences": 0, "first_differences": [], "details": {}, "busy": [],
        "read_units": 0, "resume_after": None,
    }
    assert report.read_units > 0


def test_a_corrupted_balance_is_reported_for_that_account_only(scenario: Ledger) -> None:
    def ten_more_credits(state: AccountState) -> None:
        state.lots[0].remaining += 10 * C

    set_balance(scenario, "acct-b", ten_more_credits)
    report = check(scenario)
    assert (report.accounts_checked, report.differences, report.first_differences) == (4, 1, ["acct-b"])
    # 50 granted, 0.28 spent: 49.72 should remain; the item says 59.72
    assert report.details == {"acct-b": [
        "balance not conserved: granted 50000000 != spent 280000 + expired 0 + refunded 0 + available 59720000",
        "available: stored 59720000 != ledger 49720000",
        "lot monthly-2026-03: remaining 59720000 + expired 0 != ledger 49720000",
    ]}


def test_corrupted_totals_debt_and_aggregates_are_reported(scenario: Ledger) -> None:
    def wrong_totals(state: AccountState) -> None:
        state.totals.spent -= 1  # 54.40 charged was spent 50 + 4.40 (the debt repaid by the purchase)
        state.debt += 1

    def wrong_count(state: AccountState) -> None:
        state.containers_count += 1  # acct-d has 2 containers

    set_balance(scenario, "acct-c", wrong_totals)
    set_balance(scenario, "acct-d", wrong_count)
    report = check(scenario)
    assert (report.differences, sorted(report.first_differences)) == (2, ["acct-c", "acct-d"])  # scan order
    assert report.details["acct-c"] == [
        "balance not conserved: granted 100000000 != spent 54399999 + expired 0 + refunded 45600000 + available 0",
        "spent: stored 54399999 != ledger 54400000",
        "debt: stored 1 != ledger 0",
    ]
    assert report.details["acct-d"] == ["containers_count: stored 3 != 2 container items"]


def test_a_corrupted_usage_aggregate_is_reported(scenario: Ledger) -> None:
    chat = Cell("ai", "", "claude-haiku-4.5", "chat", (("api_key", "k1"), ("team", "ml")))
    boto3.client("dynamodb").update_item(
        TableName=scenario.models.table_name,
        Key={"pk": {"S": keys.account_pk("acct-d")}, "sk": {"S": "USAGE#D#2026-03-03"}},
        UpdateExpression="ADD #cell :one",
        ExpressionAttributeNames={"#cell": attribute(10, chat)},
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    report = check(scenario)
    assert (report.differences, report.first_differences) == (1, ["acct-d"])
    # Mar 3: 1.08 + 13.60 + 0.28 = 14.96 charged; one µcr added to the chat's cell
    assert report.details["acct-d"] == [
        "usage 2026-03-03 (account): 1 cells differ, stored 14960001 != ledger 14960000"]


def test_only_the_accounts_named_are_checked(scenario: Ledger) -> None:
    report = check(scenario, accounts=["acct-a", "acct-unknown"])
    assert (report.accounts_checked, report.first_differences) == (2, ["acct-unknown"])
    assert report.details == {"acct-unknown": ["no balance item"]}


# ---------------------------------------------------------------------------------- the read rate


def test_the_read_budget_sleeps_what_the_rate_asks() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = ReadBudget(rate=10, clock=lambda: now[0], sleep=sleep)
    budget.spend(4)  # 10 tokens to start with: 6 left
    budget.spend(10)  # 4 short: 4 / 10 = 0.4 s
    now[0] += 1.0  # a second passes: 10 tokens back
    budget.spend(5)
    budget.spend(7)  # 10 - 5 - 7 = -2: 0.2 s
    assert slept == pytest.approx([0.4, 0.2])
    assert (budget.consumed, budget.waited) == (26, pytest.approx(0.6))


def test_a_run_keeps_to_its_read_rate(scenario: Ledger) -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    report = reconcile(scenario.models, scenario.catalog, read_rate=5, clock=lambda: now[0], sleep=sleep)
    assert report.differences == 0
    # time passes only while it sleeps: after the first 5 units, every unit waits 1/5 s
    assert now[0] == pytest.approx((report.read_units - 5) / 5)


# ---------------------------------------------------------------------------------- the command


def test_the_command_exits_1_on_a_difference_and_0_otherwise(
    scenario: Ledger, dynamodb_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--table", scenario.models.table_name, "--endpoint-url", dynamodb_endpoint]
    assert main(args) == 0
    assert "accounts checked: 4\naccounts with a difference: 0\n" in capsys.readouterr().out

    set_balance(scenario, "acct-a", lambda s: setattr(s, "debt", 1))
    assert main([*args, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["accounts_checked"], out["differences"], out["first_differences"]) == (4, 1, ["acct-a"])
    assert "debt: stored 1 != ledger 0" in out["details"]["acct-a"]
    assert main([*args, "--account", "acct-b"]) == 0
    assert "accounts checked: 1\n" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- the function


class RecordingInvoker(FunctionInvoker):
    def __init__(self) -> None:
        super().__init__(client=object())
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def invoke_async(self, function_arn: str, payload: dict[str, Any]) -> None:
        self.sent.append((function_arn, payload))


def test_the_function_continues_near_its_timeout_and_publishes_once(scenario: Ledger) -> None:
    set_balance(scenario, "acct-c", lambda s: setattr(s, "debt", 7))
    publisher, invoker = RecordingPublisher(), RecordingInvoker()
    handler = load_handler("reconciliation", ledger=scenario, publisher=publisher, function_invoker=invoker)
    # FakeContext has 30 s left, under the 120 s margin: each invocation checks one account, then continues
    result = invoke(handler, {"reconcile": "daily", "scheduled_time": "2026-03-05T02:30:00Z"})
    rounds = 1
    while result["continued"]:
        arn, payload = invoker.sent[-1]
        assert arn == FakeContext.invoked_function_arn
        result = invoke(handler, json.loads(json.dumps(payload)))  # as Lambda delivers it: JSON
        rounds += 1
    assert rounds == 4 and len(invoker.sent) == 3
    assert publisher.of_type(FINISHED) == [{"accounts_checked": 4, "differences": 1, "first_differences": ["acct-c"]}]
    assert result["details"]["acct-c"] == ["balance not conserved: charged 54400000 != spent 54400000 + debt 7",
                                           "debt: stored 7 != ledger 0"]


@pytest.mark.parametrize("event", [
    {"accounts": "acct-a"}, {"accounts": []}, {"accounts": [1]}, {"read_rate": 0}, {"read_rate": "fast"},
    {"continuation": {"run_id": "x"}}, ["not", "an", "object"],
])
def test_a_malformed_request_is_refused(ledger: Ledger, event: Any) -> None:
    publisher = RecordingPublisher()
    handler = load_handler("reconciliation", ledger=ledger, publisher=publisher, function_invoker=RecordingInvoker())
    with pytest.raises(InvalidInput):
        invoke(handler, event)
    assert publisher.sent == []


def now_iso(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_daily_schedule_reconciles_every_account(local_stack: StackRunner) -> None:
    created = []
    for n, (plan, tier) in enumerate([("free", "small"), ("free", "large"), ("membership", "medium")]):
        account = f"acct-rec-{n}-{uuid.uuid4().hex[:6]}"
        created.append(account)
        events: list[tuple[str, str, timedelta, dict[str, Any]]] = [
            ("platform.accounts", "Account Created", timedelta(hours=3), {"email": f"{account}@example.com",
                                                                          "plan": plan}),
            ("platform.containers", "Container Created", timedelta(hours=3), {"container_id": "c1",
                                                                              "storage_gb": 20}),
            ("platform.containers", "Container Started", timedelta(hours=2), {"container_id": "c1",
                                                                              "run_id": "r1", "tier": tier}),
            # large on the free plan: 27.20 x 2 h = 54.40 > 50: a debt
            ("platform.containers", "Container Stopped", timedelta(hours=0), {"container_id": "c1",
                                                                              "run_id": "r1"}),
            ("platform.ai", "AI Usage Recorded", timedelta(minutes=1), HAIKU_CHAT),
        ]
        for i, (source, detail_type, ago, fields) in enumerate(events):
            result = local_stack.put_event(source, detail_type, {
                "event_id": f"{account}-{i}", "account_id": account, "occurred_at": now_iso(ago), **fields})
            assert result.ok, result.failures
            local_stack.drain()
    assert any(e["detail"]["account_id"] in created for e in local_stack.published_events("Credits Exhausted"))

    result = local_stack.fire_schedule("ReconciliationFunction", "Daily")
    assert (result["continued"], result["accounts_checked"], result["differences"]) == (False, 3, 0)
    [finished] = local_stack.published_events(FINISHED)
    detail = dict(finished["detail"])
    assert len(str(detail.pop("effect_id"))) == 32
    assert detail == {"accounts_checked": 3, "differences": 0, "first_differences": []}

    with pytest.raises(InvocationError):
        local_stack.invoke("ReconciliationFunction", {"accounts": "not a list"})
