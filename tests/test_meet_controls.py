"""Where the credit controls, purchases, payment notices and refunds meet (billing-rules.md, "Where
features meet"), through the handlers against DynamoDB Local. Every figure by hand, from the rules:

- Free plan: 50 monthly credits (granted 2026-01-01). Container ``c1`` has 5 GB: storage within the
  free allowance costs nothing, so only tier time is charged.
- ``large`` costs 27.20 credits an hour, ``xlarge`` 54.40. A credit costs 0.02 USD: 100 credits = 200
  cents, 1,000 credits = 2,000 cents.
"""

from __future__ import annotations

from typing import Any

from billing.services.settlement import settle_account
from billing.store import keys
from tests.helpers import C, assert_conserved
from tests.test_account_api import Api, snapshot
from tests.test_account_api import api as api
from tests.test_account_api import clock as clock
from tests.test_controls_api import AUTO, Account
from tests.test_controls_api import account as account


def auto_purchase_ids(account: Account) -> list[str]:
    return [p["purchase_id"] for p in account.published("Auto Top-up Requested")]


def settings(account: Account) -> dict[str, Any]:
    status, body = account.call("GET", "/v1/settings")
    assert status == 200, body
    return body


# ---------------------------------------------------------------------- 1: auto purchase ids


def test_auto_top_up_off_and_on_in_a_month_never_reuses_an_auto_purchase_id(account: Account) -> None:
    assert account.call("PUT", "/v1/settings", {"auto_top_up": {**AUTO, "max_per_month": 5}})[0] == 200
    # 90 minutes of large: 50 - 40.80 = 9.20, below 20: the first auto purchase.
    account.run("c1", "r1", "2026-01-10T08:10:00Z", "2026-01-10T09:40:00Z")
    [first] = auto_purchase_ids(account)
    account.at("2026-01-10T09:45:00Z")
    assert account.api.pay(first, 200, payment_id="pay-auto-1")[0] == 200  # 9.20 + 100 = 109.20

    # Off (null) and on again in January: the month's count starts again, the id must not.
    assert account.call("PUT", "/v1/settings", {"auto_top_up": None})[1]["auto_top_up"] is None
    status, body = account.call("PUT", "/v1/settings", {"auto_top_up": {**AUTO, "max_per_month": 5}})
    assert status == 200, body
    # 3.5 hours of large: 3.5 x 27.20 = 95.20; 109.20 - 95.20 = 14, below 20: a second auto purchase
    # asked for by the stop's settlement, which commits (the platform's stop is settled).
    account.run("c1", "r2", "2026-01-10T10:00:00Z", "2026-01-10T13:30:00Z")
    assert account.remaining() == 14 * C
    second = auto_purchase_ids(account)[1]
    assert second != first
    account.at("2026-01-10T13:35:00Z")
    assert account.api.pay(second, 200, payment_id="pay-auto-2")[0] == 200  # 114

    # A changed setting (below 120) asks at once (114 < 120): again a new id.
    assert account.call("PUT", "/v1/settings", {"auto_top_up": {**AUTO, "below": "120", "max_per_month": 5}})[0] == 200
    third = auto_purchase_ids(account)[2]
    assert account.api.pay(third, 200, payment_id="pay-auto-3")[0] == 200  # 214
    # Off and on again while below: asks at once (3 of January's 5), a fourth id; every one distinct.
    assert account.call("PUT", "/v1/settings", {"auto_top_up": None})[0] == 200
    assert account.call("PUT", "/v1/settings", {"auto_top_up": {**AUTO, "below": "300", "max_per_month": 5}})[0] == 200
    ids = auto_purchase_ids(account)
    assert len(ids) == 4 and len(set(ids)) == 4
    # Later settlements of the account still commit: an AI use (gpt-5-nano, 1,000,000 input tokens x
    # 0.000004 = 4 credits) and another run (1 hour of large, 27.20): 214 - 4 - 27.20 = 182.80.
    account.send("AI Usage Recorded", "2026-01-10T14:00:00Z", feature="chat", model="gpt-5-nano",
                 input_tokens=1_000_000, output_tokens=0)
    account.run("c1", "r3", "2026-01-10T15:00:00Z", "2026-01-10T16:00:00Z")
    assert account.remaining() == 182_800_000
    purchases = {p["purchase_id"]: p for p in account.call("GET", "/v1/purchases")[1]["purchases"]}
    assert [purchases[i]["status"] for i in ids] == ["paid", "paid", "paid", "pending"]
    assert_conserved(account.ledger.load("acct-1"))


def test_off_and_on_keeps_one_pending_auto_purchase_and_the_months_maximum(account: Account) -> None:
    """Removing auto top-up (null) and setting it again in one month forgets neither the pending
    auto purchase nor the month's count: still one pending at a time, still at most max_per_month (2)."""
    assert account.call("PUT", "/v1/settings", {"auto_top_up": AUTO})[0] == 200
    account.run("c1", "r1", "2026-01-10T08:10:00Z", "2026-01-10T09:40:00Z")  # 50 - 40.80 = 9.20: asked
    [first] = auto_purchase_ids(account)
    assert account.call("PUT", "/v1/settings", {"auto_top_up": None})[1]["auto_top_up"] is None
    body = account.call("PUT", "/v1/settings", {"auto_top_up": AUTO})[1]
    assert body["auto_top_up"]["pending_purchase_id"] == first
    # 10 minutes of large (27.20 / 6 = 4.533333): 4.666667 left, below 20, but one is pending: none asked.
    account.run("c1", "r2", "2026-01-10T10:00:00Z", "2026-01-10T10:10:00Z")
    assert auto_purchase_ids(account) == [first]
    account.at("2026-01-10T10:15:00Z")
    assert account.api.pay(first, 200, payment_id="pay-first")[0] == 200  # 104.666667
    # 3.5 hours of large (95.20): 9.466667, below 20: the second of January's 2.
    account.run("c1", "r3", "2026-01-10T10:20:00Z", "2026-01-10T13:50:00Z")
    second = auto_purchase_ids(account)[1]
    account.at("2026-01-10T13:55:00Z")
    assert account.api.pay(second, 200, payment_id="pay-second")[0] == 200  # 109.466667
    assert account.call("PUT", "/v1/settings", {"auto_top_up": None})[0] == 200
    assert account.call("PUT", "/v1/settings", {"auto_top_up": AUTO})[0] == 200
    # 3.5 hours more: 14.266667, below 20, but January has had its 2: none asked.
    account.run("c1", "r4", "2026-01-10T14:00:00Z", "2026-01-10T17:30:00Z")
    assert account.remaining() == 14_266_667
    assert auto_purchase_ids(account) == [first, second]


def test_a_new_month_and_a_new_setting_still_never_repeat_an_auto_purchase_id(account: Account) -> None:
    assert account.call("PUT", "/v1/settings", {"auto_top_up": AUTO})[0] == 200
    account.run("c1", "r1", "2026-01-31T20:00:00Z", "2026-01-31T21:30:00Z")  # 50 - 40.80 = 9.20: asked
    [january] = auto_purchase_ids(account)
    account.at("2026-01-31T21:35:00Z")
    assert account.api.pay(january, 200, payment_id="pay-jan")[0] == 200  # 109.20 (50 of them monthly)
    assert account.call("PUT", "/v1/settings", {"auto_top_up": None})[0] == 200
    assert account.call("PUT", "/v1/settings", {"auto_top_up": AUTO})[0] == 200
    # February: the rest of January's monthly lot expires (50 - 40.80 = 9.20), February's 50 come:
    # 100 + 50 = 150; 5 hours of large (136) leave 14, below 20: a February auto purchase.
    account.run("c1", "r2", "2026-02-01T10:00:00Z", "2026-02-01T15:00:00Z")
    assert account.remaining() == 14 * C
    ids = auto_purchase_ids(account)
    assert len(ids) == 2 and ids[0] != ids[1]


# ---------------------------------------------------------------------- 3: refunds settle running usage


def test_a_refund_settles_the_running_containers_first_and_leaves_no_debt(account: Account) -> None:
    account.at("2026-01-10T10:00:00Z")
    purchase = account.api.buy(1000)
    assert purchase["price"] == {"currency": "USD", "amount_minor": 2000, "cents": 2000}
    assert account.api.pay(purchase["purchase_id"], 2000, payment_id="pay-1000")[0] == 200  # 50 + 1,000
    account.send("Container Started", "2026-01-10T10:00:00Z", container_id="c1", run_id="r1", tier="xlarge")
    # 19 hours of xlarge: 19 x 54.40 = 1,033.60 accrued, not deducted yet. The refund settles it
    # first: the free lot pays 50 (free credits first), the purchased lot 983.60; its unused credits
    # are 1,000 - 983.60 = 16.40, refunded as ceil(2,000 / 1,000 x 16.40) = ceil(32.8) = 33 cents.
    account.at("2026-01-11T05:00:00Z")
    status, body = account.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")
    assert status == 200, body
    assert body == {"purchase_id": purchase["purchase_id"],
                    "refund": {"currency": "USD", "amount_minor": 33, "cents": 33}, "credits": "16.400000"}
    state = account.ledger.load("acct-1")
    assert (state.available(), state.debt, state.totals.charged) == (0, 0, 1_033_600_000)
    assert state.totals.refunded == 16_400_000
    assert_conserved(state)
    # The platform stops the container at the refund's time: nothing is left to charge, no debt.
    account.send("Container Stopped", "2026-01-11T05:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    state = account.ledger.load("acct-1")
    assert (state.available(), state.debt, state.totals.charged) == (0, 0, 1_033_600_000)
    assert_conserved(state)


def test_a_refund_withholds_what_usage_it_cannot_settle_yet_would_take(account: Account) -> None:
    """Past 20 containers the balance no longer lists them: a refund settles those it reaches (the
    running one: the change loads none) and keeps the purchase's credits that the accrued usage
    would take, so the stop that settles it later runs into no debt."""
    for i in range(2, 22):  # c1 (the fixture's) and c2..c21: 21 containers of 5 GB, none billed
        account.send("Container Created", "2026-01-10T08:00:00Z", container_id=f"c{i}", storage_gb=5)
    assert account.ledger.load("acct-1").container_ids is None
    account.at("2026-01-10T10:00:00Z")
    purchase = account.api.buy(1000)
    assert account.api.pay(purchase["purchase_id"], 2000, payment_id="pay-1000")[0] == 200
    account.send("Container Started", "2026-01-10T10:00:00Z", container_id="c1", run_id="r1", tier="xlarge")
    # As above: 1,033.60 accrued, 50 of it the free lot's, 983.60 the purchase's; 16.40 refunded (33 cents).
    account.at("2026-01-11T05:00:00Z")
    status, body = account.call("POST", f"/v1/purchases/{purchase['purchase_id']}/refund")
    assert status == 200, body
    assert body["refund"] == {"currency": "USD", "amount_minor": 33, "cents": 33} and body["credits"] == "16.400000"
    account.send("Container Stopped", "2026-01-11T05:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    state = account.ledger.load("acct-1")
    assert (state.available(), state.debt, state.totals.charged) == (0, 0, 1_033_600_000)
    assert_conserved(state)


# ---------------------------------------------------------------------- 9: payment notices by id and type


def test_a_success_after_a_failure_of_one_notice_id_is_honoured_once(account: Account) -> None:
    api: Api = account.api
    account.at("2026-01-10T10:00:00Z")
    purchase = api.buy(100)
    pid = purchase["purchase_id"]
    status, failed = api.pay(pid, 200, payment_id="pay-1", kind="payment.failed")
    assert (status, failed["status"], failed["duplicate"]) == (200, "failed", False)
    status, paid = api.pay(pid, 200, payment_id="pay-1")  # the same id, now a success
    assert (status, paid["status"], paid["duplicate"]) == (200, "paid", False), paid
    assert account.ledger.load("acct-1").available() == 150 * C  # 50 + 100, once
    # Each repeated delivery applies once: the success and the failure again change nothing.
    before = snapshot(account.ledger)
    assert api.pay(pid, 200, payment_id="pay-1")[1]["duplicate"] is True
    repeated_failure = api.pay(pid, 200, payment_id="pay-1", kind="payment.failed")[1]
    assert (repeated_failure["status"], repeated_failure["duplicate"]) == ("paid", True)
    assert snapshot(account.ledger) == before
    # A failure after a success (another purchase) changes nothing either.
    other = api.buy(50)
    assert api.pay(other["purchase_id"], 100, payment_id="pay-2")[1]["status"] == "paid"
    before = snapshot(account.ledger)
    late_failure = api.pay(other["purchase_id"], 100, payment_id="pay-2", kind="payment.failed")
    assert late_failure[0] == 200 and late_failure[1]["status"] == "paid"
    assert snapshot(account.ledger) == before
    state = account.ledger.load("acct-1")
    assert state.available() == 200 * C
    assert_conserved(state)


def test_an_auto_payment_that_fails_then_succeeds_is_no_failure_in_the_row(account: Account) -> None:
    assert account.call("PUT", "/v1/settings", {"auto_top_up": {**AUTO, "max_per_month": 5}})[0] == 200
    account.run("c1", "r1", "2026-01-10T08:10:00Z", "2026-01-10T09:40:00Z")  # 9.20 remaining: #1 asked
    account.at("2026-01-10T10:00:00Z")
    [first] = auto_purchase_ids(account)
    assert account.api.pay(first, 200, payment_id="pay-a1", kind="payment.failed")[1]["status"] == "failed"
    assert settings(account)["auto_top_up"]["failed_payments_in_a_row"] == 1
    second = auto_purchase_ids(account)[1]  # the failure ended #1: #2 is asked at once (9.20 < 20)
    # The provider retried #1 and it went through: credits come (9.20 + 100 = 109.20), #1's failure
    # no longer counts; #2 stays pending.
    assert account.api.pay(first, 200, payment_id="pay-a1")[1]["status"] == "paid"
    assert account.remaining() == 109_200_000
    auto = settings(account)["auto_top_up"]
    assert (auto["enabled"], auto["failed_payments_in_a_row"], auto["pending_purchase_id"]) == (True, 0, second)
    # #2 fails: one failure in a row (not two); 109.20 >= 20, nothing more is asked.
    assert account.api.pay(second, 200, payment_id="pay-a2", kind="payment.failed")[1]["status"] == "failed"
    auto = settings(account)["auto_top_up"]
    assert (auto["enabled"], auto["failed_payments_in_a_row"], auto["pending_purchase_id"]) == (True, 1, None)
    assert len(auto_purchase_ids(account)) == 2
    assert account.published("Auto Top-up Disabled") == []


def test_auto_top_up_turned_off_by_failures_stays_off_when_one_later_succeeds(account: Account) -> None:
    """Turned off by three failed auto payments, auto top-up stays off until the user turns it on
    again (PUT /v1/settings): a late success of one of those purchases adds its credits, no more."""
    assert account.call("PUT", "/v1/settings", {"auto_top_up": {**AUTO, "max_per_month": 5}})[0] == 200
    account.run("c1", "r1", "2026-01-10T08:10:00Z", "2026-01-10T09:40:00Z")  # 9.20 remaining
    account.at("2026-01-10T10:00:00Z")
    for attempt in range(3):  # three failures in a row: #1, #2, #3; the third turns auto top-up off
        pending = auto_purchase_ids(account)[attempt]
        assert account.api.pay(pending, 200, payment_id=f"pay-f{attempt}", kind="payment.failed")[0] == 200
    assert len(account.published("Auto Top-up Disabled")) == 1
    assert settings(account)["auto_top_up"]["enabled"] is False
    # The third payment went through after all: its 100 credits come (9.20 + 100 = 109.20) and it is
    # no failure (#3's success came after #2's failure: the row is empty), but auto top-up stays off.
    third = auto_purchase_ids(account)[2]
    assert account.api.pay(third, 200, payment_id="pay-f2")[1]["status"] == "paid"
    auto = settings(account)["auto_top_up"]
    assert (auto["enabled"], auto["failed_payments_in_a_row"], auto["pending_purchase_id"]) == (False, 0, None)
    assert account.remaining() == 109_200_000
    # The first one went through late as well: 209.20, still off.
    first = auto_purchase_ids(account)[0]
    assert account.api.pay(first, 200, payment_id="pay-f0")[1]["status"] == "paid"
    assert settings(account)["auto_top_up"]["enabled"] is False
    assert account.remaining() == 209_200_000
    assert len(account.published("Auto Top-up Disabled")) == 1 and len(auto_purchase_ids(account)) == 3
    # Off means off: 3 h of large (81.60) takes 209.20 to 127.60, then 2 h more (54.40) to 73.20:
    # still >= 20. 1.5 h more (40.80) to 32.40, and 1 h more (27.20) to 5.20, below 20: nothing is asked.
    account.run("c1", "r2", "2026-01-10T11:00:00Z", "2026-01-10T14:00:00Z")
    account.run("c1", "r3", "2026-01-10T14:00:00Z", "2026-01-10T16:00:00Z")
    account.run("c1", "r4", "2026-01-10T16:00:00Z", "2026-01-10T17:30:00Z")
    account.run("c1", "r5", "2026-01-10T17:30:00Z", "2026-01-10T18:30:00Z")
    assert account.remaining() == 5_200_000
    assert len(auto_purchase_ids(account)) == 3
    # The user turns it on again: 5.20 < 20, the fourth auto purchase is asked at once (4 of 5).
    assert account.call("PUT", "/v1/settings", {"auto_top_up": {**AUTO, "max_per_month": 5}})[0] == 200
    auto = settings(account)["auto_top_up"]
    assert (auto["enabled"], auto["failed_payments_in_a_row"]) == (True, 0)
    assert len(auto_purchase_ids(account)) == 4 and auto["pending_purchase_id"] == auto_purchase_ids(account)[3]
    assert_conserved(account.ledger.load("acct-1"))


# ---------------------------------------------------------------------- 12: a correction under the cap


def test_a_correction_under_the_spend_cap_ends_it_and_a_later_crossing_fires_again(account: Account) -> None:
    assert account.call("PUT", "/v1/settings", {"spend_cap": "40"})[0] == 200
    account.send("Container Started", "2026-01-10T08:00:00Z", container_id="c1", run_id="r1", tier="large")
    # The periodic check at 09:30: 1.5 h x 27.20 = 40.80 accrued reaches the cap of 40: deducted,
    # the cap is reached, c1 is asked to stop.
    check(account, "2026-01-10T09:30:00Z")
    assert len(account.published("Spend Cap Reached")) == 1
    assert settings(account)["spend_cap_reached"] is True
    # The platform's stop arrives late: c1 stopped at 09:00. The half hour billed past it (13.60) is
    # corrected: the month's deductions are 40.80 - 13.60 = 27.20, under the cap of 40.
    account.send("Container Stopped", "2026-01-10T09:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    state = account.ledger.load("acct-1")
    assert state.month_charged["2026-01"] == 27_200_000
    assert state.available() == 22_800_000  # 50 - 27.20
    assert settings(account)["spend_cap_reached"] is False
    # c1 may run again: its start is not asked to stop.
    account.send("Container Started", "2026-01-10T10:00:00Z", container_id="c1", run_id="r2", tier="large")
    assert len(account.published("Stop Containers Requested")) == 1
    # Half an hour later the check finds 27.20 + 13.60 = 40.80 >= 40: the cap is reached again, once.
    check(account, "2026-01-10T10:30:00Z")
    check(account, "2026-01-10T10:35:00Z")
    assert [p["spent"] for p in account.published("Spend Cap Reached")] == ["40.800000", "40.800000"]
    stops = account.published("Stop Containers Requested")
    assert len(stops) == 2 and stops[1]["container_ids"] == ["c1"]
    assert settings(account)["spend_cap_reached"] is True
    assert account.ledger.load("acct-1").available() == 9_200_000  # 22.80 - 13.60 (the 5 min of the
    # second check are accrued, not deducted: the cap holds and nothing settles them until the stop)


def check(account: Account, when: str) -> None:
    """The forecast-driven periodic check of the account at ``when``."""
    account.at(when)
    at = account.clock()
    settle_account("acct-1", at, keys.check_sweep_event_id(at), account.ledger)
    account.api.outbox.drain()
