"""Credit controls through the HTTP API (billing-rules.md, "Credit controls"), against DynamoDB Local:
``PUT /v1/settings`` (auto top-up, spend cap), ``/v1/alerts``, and what they do as usage is settled
and payments are confirmed by the signed webhook. Every figure by hand, from the rules' prices:

- Free plan: 50 monthly credits (granted 2026-01-01). Containers of 5 GB: storage within the free
  allowance costs nothing, so only tier time is charged.
- ``large`` costs 27.20 credits an hour: 90 minutes = 40.80, an hour = 27.20, 2.5 hours = 68.00.
- A purchase of 100 credits at 0.02 USD = 200 cents.
"""

from __future__ import annotations

from typing import Any

import pytest

from billing.services.settlement import settle_account
from billing.store import keys
from billing.store.ledger import Ledger
from tests.helpers import C, Platform, assert_conserved
from tests.test_account_api import Api, FixedClock, snapshot
from tests.test_account_api import api as api
from tests.test_account_api import clock as clock

AUTO = {"enabled": True, "below": "20", "credits": "100", "max_per_month": 2}


class Account:
    """One account's platform events and API calls, with one view of what left through the outbox."""

    def __init__(self, api: Api, ledger: Ledger, clock: FixedClock, account_id: str = "acct-1") -> None:
        self.api, self.ledger, self.clock, self.account_id = api, ledger, clock, account_id
        self.platform = Platform(ledger, account_id)
        self.platform.publisher = api.publisher  # one outbound view: the platform's effects and the API's
        self.platform.mailer = api.outbox.mailer

    def at(self, when: str) -> None:
        self.clock.now = self.platform.now = FixedClock(when).now

    def send(self, detail_type: str, when: str, **fields: Any) -> None:
        self.at(when)
        self.platform.send(detail_type, when, **fields)
        self.api.outbox.drain()

    def run(self, container_id: str, run_id: str, start: str, stop: str, tier: str = "large") -> None:
        self.send("Container Started", start, container_id=container_id, run_id=run_id, tier=tier)
        self.send("Container Stopped", stop, container_id=container_id, run_id=run_id, traffic_bytes=0)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.api.call(method, path, body, sub=self.account_id)

    def published(self, detail_type: str) -> list[dict[str, Any]]:
        """Each effect once (a redelivery carries the same ``effect_id``)."""
        seen: dict[str, dict[str, Any]] = {}
        for event in self.api.publisher.sent:
            if event.detail_type == detail_type:
                detail = dict(event.detail)
                seen.setdefault(str(detail.pop("effect_id")), detail)
        return list(seen.values())

    def mails(self) -> list[str]:
        return [subject for _, subject, _ in self.api.outbox.mailer.sent]

    def remaining(self) -> int:
        state = self.ledger.load(self.account_id)
        return state.available() - state.debt


@pytest.fixture()
def account(api: Api, ledger: Ledger, clock: FixedClock) -> Account:
    a = Account(api, ledger, clock)
    a.send("Container Created", "2026-01-10T08:00:00Z", container_id="c1", storage_gb=5)
    return a


def test_auto_top_up_is_requested_once_at_a_time_paid_by_the_webhook_and_capped_per_month(account: Account) -> None:
    status, settings = account.call("PUT", "/v1/settings", {"auto_top_up": AUTO})
    assert status == 200, settings
    assert settings["auto_top_up"] == {"enabled": True, "below": "20.000000", "credits": 100, "max_per_month": 2,
                                       "pending_purchase_id": None, "failed_payments_in_a_row": 0}
    assert settings["credit_mail"] is True and settings["spend_cap"] is None  # left as they were

    # 90 minutes of large: 50 - 40.80 = 9.20 remaining, below 20: one auto purchase of 100 credits.
    account.run("c1", "r1", "2026-01-10T08:10:00Z", "2026-01-10T09:40:00Z")
    [requested] = account.published("Auto Top-up Requested")
    assert requested == {"account_id": "acct-1", "purchase_id": requested["purchase_id"], "credits": "100.000000",
                         "price": {"currency": "USD", "amount_minor": 200, "cents": 200}}
    assert account.remaining() == 9_200_000
    purchases = account.call("GET", "/v1/purchases")[1]["purchases"]
    assert [(p["purchase_id"], p["auto"], p["status"], p["credits"]) for p in purchases] == [
        (requested["purchase_id"], True, "pending", "100.000000")]

    # An hour more while it is pending: 9.20 - 27.20 = a debt of 18; no second purchase meanwhile.
    account.run("c1", "r2", "2026-01-10T09:50:00Z", "2026-01-10T10:50:00Z")
    assert len(account.published("Auto Top-up Requested")) == 1
    assert account.ledger.load("acct-1").debt == 18 * C

    # The platform charges the saved card; the signed webhook confirms it: the debt is paid first.
    account.at("2026-01-10T11:00:00Z")
    status, paid = account.api.pay(requested["purchase_id"], 200, payment_id="pay-auto-1")
    assert (status, paid["status"]) == (200, "paid")
    state = account.ledger.load("acct-1")
    assert (state.available(), state.debt) == (82 * C, 0)  # 100 - 18
    assert_conserved(state)
    assert account.call("GET", "/v1/settings")[1]["auto_top_up"]["pending_purchase_id"] is None

    # 2.5 hours more: 82 - 68 = 14, below 20 again: the second (and last) auto purchase of January.
    account.run("c1", "r3", "2026-01-10T11:00:00Z", "2026-01-10T13:30:00Z")
    second = account.published("Auto Top-up Requested")[1]
    assert second["purchase_id"] != requested["purchase_id"]
    account.at("2026-01-10T13:35:00Z")
    assert account.api.pay(second["purchase_id"], 200, payment_id="pay-auto-2")[0] == 200
    assert account.remaining() == 114 * C  # 14 + 100

    # An hour and a half more: 114 - 40.80 = 73.20; then 2.5 hours: 73.20 - 68 = 5.20, below 20,
    # but max_per_month is 2: nothing more is bought in January.
    account.run("c1", "r4", "2026-01-10T14:00:00Z", "2026-01-10T15:30:00Z")
    account.run("c1", "r5", "2026-01-10T16:00:00Z", "2026-01-10T18:30:00Z")
    assert account.remaining() == 5_200_000
    assert len(account.published("Auto Top-up Requested")) == 2
    assert_conserved(account.ledger.load("acct-1"))


def test_three_failed_auto_payments_in_a_row_turn_auto_top_up_off(account: Account) -> None:
    assert account.call("PUT", "/v1/settings", {"auto_top_up": {**AUTO, "max_per_month": 5}})[0] == 200
    account.run("c1", "r1", "2026-01-10T08:10:00Z", "2026-01-10T09:40:00Z")  # 9.20 remaining
    for attempt in range(1, 4):
        pending = account.published("Auto Top-up Requested")
        assert len(pending) == attempt  # a failure ends the pending purchase: the next is asked at once
        account.at(f"2026-01-10T10:0{attempt}:00Z")
        status, failed = account.api.pay(pending[-1]["purchase_id"], 200, payment_id=f"fail-{attempt}",
                                         kind="payment.failed")
        assert (status, failed["status"]) == (200, "failed")
    assert len(account.published("Auto Top-up Requested")) == 3  # none after the third failure
    assert account.published("Auto Top-up Disabled") == [{"account_id": "acct-1", "reason": "payment_failed"}]
    assert sum("auto top-up" in subject.lower() for subject in account.mails()) == 1
    settings = account.call("GET", "/v1/settings")[1]["auto_top_up"]
    assert (settings["enabled"], settings["failed_payments_in_a_row"], settings["pending_purchase_id"]) == (
        False, 3, None)
    # Turning it on again starts a new run of failures, and asks at once (9.20 < 20; 3 of 5 used).
    again = account.call("PUT", "/v1/settings", {"auto_top_up": {**AUTO, "max_per_month": 5}})[1]["auto_top_up"]
    assert (again["enabled"], again["failed_payments_in_a_row"]) == (True, 0)
    assert len(account.published("Auto Top-up Requested")) == 4
    assert account.ledger.load("acct-1").available() == 9_200_000  # failures add no credits


def test_spend_cap_stops_running_containers_keeps_the_credits_and_a_higher_cap_ends_it(account: Account) -> None:
    status, body = account.call("PUT", "/v1/settings", {"spend_cap": "40"})
    assert (status, body["spend_cap"], body["spend_cap_reached"]) == (200, "40.000000", False)
    account.send("Container Started", "2026-01-10T08:00:00Z", container_id="c1", run_id="r1", tier="large")
    # A periodic check 1.5 hours in: 40.80 accrued reaches the cap of 40. The run is settled
    # (40.80 deducted, 9.20 left: the credits stay) and the platform is asked to stop it.
    account.at("2026-01-10T09:30:00Z")
    at = account.clock()
    settle_account("acct-1", at, keys.check_sweep_event_id(at), account.ledger)  # the forecast-driven check
    account.api.outbox.drain()
    assert account.published("Spend Cap Reached") == [{"account_id": "acct-1", "cap": "40.000000",
                                                      "spent": "40.800000"}]
    assert account.published("Stop Containers Requested") == [{"account_id": "acct-1", "container_ids": ["c1"],
                                                              "reason": "spend_cap"}]
    assert account.ledger.load("acct-1").available() == 9_200_000
    assert account.call("GET", "/v1/settings")[1]["spend_cap_reached"] is True
    assert sum("spend cap" in subject.lower() for subject in account.mails()) == 1
    # The platform stops it 5 minutes later: 5 more minutes of large (27.20 / 12 = 2.266667) are
    # still charged (they happened), and the cap is not reached a second time.
    account.send("Container Stopped", "2026-01-10T09:35:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    assert account.ledger.load("acct-1").available() == 9_200_000 - 2_266_667
    assert len(account.published("Spend Cap Reached")) == 1
    # A higher cap ends it; null removes it.
    assert account.call("PUT", "/v1/settings", {"spend_cap": 100})[1]["spend_cap_reached"] is False
    assert account.call("PUT", "/v1/settings", {"spend_cap": None})[1]["spend_cap"] is None


def test_alert_rules_fire_once_re_arm_and_are_limited_to_ten(account: Account) -> None:
    status, rule = account.call("POST", "/v1/alerts", {"kind": "remaining_below", "threshold": "15"})
    assert status == 201 and rule["threshold"] == "15.000000" and rule["armed"] is True
    spent = account.call("POST", "/v1/alerts", {"kind": "spent_this_month_above", "threshold": 60})[1]
    hours = account.call("POST", "/v1/alerts", {"kind": "hours_left_below", "threshold": "2.5"})[1]
    assert hours["threshold"] == "2.5"
    # A large run starts: 50 / 27.20 = 1.84 hours left, below 2.5: hours_left_below fires.
    account.send("Container Started", "2026-01-10T08:00:00Z", container_id="c1", run_id="r1", tier="large")
    assert [a["alert_id"] for a in account.published("Alert Triggered")] == [hours["alert_id"]]
    # Stopped after 90 minutes: 9.20 left, below 15; spent 40.80, not above 60.
    account.send("Container Stopped", "2026-01-10T09:30:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    fired = {a["alert_id"]: a for a in account.published("Alert Triggered")}
    assert fired[rule["alert_id"]] == {"account_id": "acct-1", "alert_id": rule["alert_id"],
                                       "kind": "remaining_below", "threshold": "15.000000", "value": "9.200000"}
    assert spent["alert_id"] not in fired
    listed = {a["alert_id"]: a for a in account.call("GET", "/v1/alerts")[1]["alerts"]}
    assert listed[rule["alert_id"]]["armed"] is False
    assert listed[rule["alert_id"]]["fired_at"] == "2026-01-10T09:30:00Z"
    assert listed[hours["alert_id"]]["armed"] is True  # nothing runs: no burn, no hours left to count
    # A purchase of 100 re-arms remaining_below (109.20 >= 15); it does not fire again meanwhile.
    account.at("2026-01-10T10:00:00Z")
    purchase = account.api.buy(100)
    assert account.api.pay(purchase["purchase_id"], 200, payment_id="pay-1")[0] == 200
    assert {a["alert_id"]: a["armed"] for a in account.call("GET", "/v1/alerts")[1]["alerts"]}[rule["alert_id"]]
    assert len(account.published("Alert Triggered")) == 2
    # Ten rules at most: seven more fit, the eleventh is refused and writes nothing.
    for i in range(7):
        assert account.call("POST", "/v1/alerts", {"kind": "remaining_below", "threshold": str(i + 1)})[0] == 201
    before = snapshot(account.ledger)
    status, refused = account.call("POST", "/v1/alerts", {"kind": "remaining_below", "threshold": "99"})
    assert status == 422 and "at most 10" in refused["error"]["message"]
    assert snapshot(account.ledger) == before
    # Deleting one makes room; deleting it again is a 404.
    assert account.call("DELETE", f"/v1/alerts/{rule['alert_id']}") == (
        200, {"alert_id": rule["alert_id"], "deleted": True})
    assert account.call("DELETE", f"/v1/alerts/{rule['alert_id']}")[0] == 404
    assert len(account.call("GET", "/v1/alerts")[1]["alerts"]) == 9


@pytest.mark.parametrize(("body", "status", "message"), [
    ({}, 400, "name at least one of"),
    ({"credit_mail": "no"}, 400, "credit_mail: Expected `bool`"),
    ({"colour": "red"}, 400, "colour: unknown field"),
    ({"auto_top_up": {**AUTO, "extra": 1}}, 400, "auto_top_up.extra: unknown field"),
    ({"auto_top_up": {"enabled": True}}, 400, "auto_top_up.below: required"),
    ({"auto_top_up": {**AUTO, "credits": 49}}, 422, "a valid purchase: 50 to"),
    ({"auto_top_up": {**AUTO, "credits": "12.5"}}, 400, "auto_top_up.credits must be a whole number"),
    ({"auto_top_up": {**AUTO, "below": "0.5"}}, 422, "auto_top_up.below must be at least 1.000000"),
    ({"auto_top_up": {**AUTO, "max_per_month": 32}}, 422, "from 1 to 31"),
    ({"auto_top_up": {**AUTO, "enabled": "yes"}}, 400, "auto_top_up.enabled: Expected `bool`"),
    ({"spend_cap": "0"}, 422, "spend_cap must be at least 0.000001"),
    ({"spend_cap": "1e3"}, 400, "spend_cap"),
    ({"spend_cap": 1.5}, 400, "spend_cap: Expected"),
])
def test_bad_settings_are_refused_and_write_nothing(account: Account, body: dict[str, Any], status: int,
                                                   message: str) -> None:
    before = snapshot(account.ledger)
    got, refused = account.call("PUT", "/v1/settings", body)
    assert got == status, refused
    assert message in refused["error"]["message"]
    assert snapshot(account.ledger) == before


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"kind": "balance_below", "threshold": "5"}, 400, "kind: Invalid enum value 'balance_below'"),
    ({"kind": "remaining_below"}, 400, "threshold: required"),
    ({"kind": "remaining_below", "threshold": "-1"}, 422, "more than 0"),
    ({"kind": "remaining_below", "threshold": "0.0000001"}, 400, "threshold"),
    ({"kind": "hours_left_below", "threshold": "9000"}, 422, "at most 8760 hours"),
    ({"kind": "hours_left_below", "threshold": "1.234"}, 400, "at most two decimals"),
    ({"kind": "remaining_below", "threshold": True}, 400, "threshold: Expected"),
    ({"kind": "remaining_below", "threshold": "5", "extra": 1}, 400, "extra: unknown field"),
])
def test_bad_alert_rules_are_refused_and_write_nothing(account: Account, body: dict[str, Any], status: int,
                                                       message: str) -> None:
    before = snapshot(account.ledger)
    got, refused = account.call("POST", "/v1/alerts", body)
    assert got == status, refused
    assert message in refused["error"]["message"]
    assert snapshot(account.ledger) == before


def test_another_account_cannot_touch_a_rule_and_an_unknown_account_is_404(account: Account, api: Api) -> None:
    rule = account.call("POST", "/v1/alerts", {"kind": "remaining_below", "threshold": "15"})[1]
    assert api.call("DELETE", f"/v1/alerts/{rule['alert_id']}", sub="acct-2")[0] == 404
    assert api.call("GET", "/v1/alerts", sub="acct-2") == (200, {"alerts": []})
    assert api.call("GET", "/v1/alerts", sub="nobody")[0] == 404
    assert api.call("PUT", "/v1/settings", {"spend_cap": "10"}, sub="nobody")[0] == 404
