"""Credit controls (billing-rules.md, "Credit controls") on in-memory accounts: alert rules, auto
top-up and the monthly spend cap, each figure by hand. A Free account has 50 credits; `large` burns
27.2 credits an hour, `medium` 13.6."""

from __future__ import annotations

from datetime import timedelta

from billing.domain import controls, credits, settle
from billing.domain.model import AlertRule, AutoTopUp, Purchase
from tests.domain.accounts import Account, C, t


def effects(book, detail_type):  # type: ignore[no-untyped-def]
    return [e.detail for e in book.outbox if e.detail_type == detail_type]


def with_alert(a: Account, kind: str, threshold: str) -> None:
    a.state.alerts.append(AlertRule(alert_id=f"alr-{kind}", kind=kind, threshold=threshold,  # type: ignore[arg-type]
                                    created_at=t("2026-03-01T00:00:00Z")))


def test_remaining_below_fires_once_on_time_and_re_arms_after_a_grant() -> None:
    a = Account("2026-03-01T00:00:00Z")
    with_alert(a, "remaining_below", "20.000000")
    start = a.start("2026-03-02T10:00:00Z", "c1", "r1", "large")
    assert effects(start, "Alert Triggered") == []  # 50 remain
    # The forecast: remaining 50 - 27.2 h reaches 19.999999 after 30.000001 / 27.2 h = 3,970.59 s.
    assert a.state.next_check_at == t("2026-03-02T10:50:18Z")  # first the low-credit mail (< 27.2)
    a.do(settle.sweep, "2026-03-02T10:50:18Z")
    assert a.state.next_check_at == t("2026-03-02T11:06:11Z")
    check = a.do(settle.sweep, "2026-03-02T11:06:11Z")
    # accrued 27.2 x 3,971 s / 3,600 = 30.003111: 19.996889 remain
    [fired] = effects(check, "Alert Triggered")
    assert {k: fired[k] for k in ("alert_id", "kind", "threshold", "value")} == {
        "alert_id": "alr-remaining_below", "kind": "remaining_below", "threshold": "20.000000",
        "value": "19.996889"}
    assert [e.template for e in check.effects if e not in check.outbox] == ["alert_triggered"]
    again = a.do(settle.sweep, "2026-03-02T11:20:00Z")
    assert effects(again, "Alert Triggered") == []  # once
    a.do(credits.grant, "2026-03-02T11:30:00Z", "event", 100 * C, None, "support")
    assert a.state.alerts[0].armed  # true no more: armed again


def test_hours_left_below_fires_at_a_start_and_spent_this_month_at_a_deduction() -> None:
    a = Account("2026-03-01T00:00:00Z")
    with_alert(a, "hours_left_below", "2")
    with_alert(a, "spent_this_month_above", "10.000000")
    start = a.start("2026-03-02T10:00:00Z", "c1", "r1", "large")
    # 50 / 27.2 = 1.84 hours left (< 2)
    assert [(d["kind"], d["value"]) for d in effects(start, "Alert Triggered")] == [("hours_left_below", 1.84)]
    stop = a.stop("2026-03-02T10:30:00Z", "c1", "r1")  # 13.6 deducted: more than 10 spent this month
    assert [(d["kind"], d["value"]) for d in effects(stop, "Alert Triggered")] == [
        ("spent_this_month_above", "13.600000")]


def test_auto_top_up_asks_once_at_a_time_and_stops_after_three_failed_payments() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.auto_top_up = AutoTopUp(below=30 * C, credits=100, max_per_month=2)
    a.start("2026-03-02T10:00:00Z", "c1", "r1", "large")
    # 50 - 27.2 h falls below 30 after 20.000001 / 27.2 h = 2,647.06 s
    assert a.state.next_check_at == t("2026-03-02T10:44:08Z")
    check = a.do(settle.sweep, "2026-03-02T10:44:08Z")
    [requested] = effects(check, "Auto Top-up Requested")
    assert requested["credits"] == "100.000000"
    assert requested["price"] == {"currency": "USD", "amount_minor": 200, "cents": 200}
    [purchase] = check.purchases
    assert (purchase.auto, purchase.credits, purchase.price_cents) == (True, 100, 200)
    assert effects(a.do(settle.sweep, "2026-03-02T10:50:18Z"), "Auto Top-up Requested") == []  # one pending
    for n in range(3):
        failed = a.book()
        pending = Purchase(purchase_id=a.state.auto_top_up.pending or "", account_id="acct", credits=100,
                           price_cents=200, created_at=t("2026-03-02T10:44:08Z"), auto=True)
        controls.auto_payment_settled(failed, pending, paid=False)
        a.commit(failed)
        if n < 2:  # the next one is asked for at once (still below 30), two in all this month
            assert a.state.auto_top_up.pending or a.state.auto_top_up.requested["2026-03"] == 2
    assert not a.state.auto_top_up.enabled
    assert [d["reason"] for d in effects(failed, "Auto Top-up Disabled")] == ["payment_failed"]


def test_the_spend_cap_settles_stops_and_keeps_the_credits() -> None:
    a = Account("2026-03-01T00:00:00Z", plan="membership")  # 1,000 credits
    a.state.spend_cap = 20 * C
    a.start("2026-03-02T10:00:00Z", "c1", "r1", "medium")
    # 20 / 13.6 h = 5,294.12 s
    assert a.state.next_check_at == t("2026-03-02T11:28:15Z")
    check = a.do(settle.sweep, "2026-03-02T11:28:15Z")
    # 13.6 x 5,295 s / 3,600 = 20.003333 deducted; the container is asked to stop; the credits stay
    assert effects(check, "Spend Cap Reached") == [{"account_id": "acct", "cap": "20.000000", "spent": "20.003333",
                                                    "effect_id": effects(check, "Spend Cap Reached")[0]["effect_id"]}]
    [stop] = effects(check, "Stop Containers Requested")
    assert (stop["container_ids"], stop["reason"]) == (["c1"], "spend_cap")
    assert a.state.available() == 1000 * C - 20_003_333 and not a.state.exhausted
    restart = a.start("2026-03-02T11:40:00Z", "c2", "r2", "micro")  # started anyway: asked to stop again
    assert [d["container_ids"] for d in effects(restart, "Stop Containers Requested")] == [["c2"]]
    a.stop("2026-03-02T11:45:00Z", "c1", "r1")  # usage that still arrives is charged: it happened
    assert a.state.month_charged["2026-03"] > 20 * C
    a.state.spend_cap = 40 * C  # raised: the cap ends (what the settings service does)
    a.state.cap_reached = None
    later = a.start("2026-03-02T12:00:00Z", "c3", "r3", "micro")
    assert effects(later, "Stop Containers Requested") == []
    assert a.state.next_check_at is not None and a.state.next_check_at > t("2026-03-02T12:00:00Z") + timedelta(0)
