"""Credit controls rule by rule (billing-rules.md, "Credit controls"): each condition at its edge
(strictly below, strictly above, reached), fired once and re-armed, auto top-up's limits, the spend
cap at exactly the cap. The auto purchase id's format and the cap's handling of corrections are
other rules' business: not pinned here."""

from __future__ import annotations

from billing.domain import controls, credits, settle
from billing.domain.model import AlertRule, AutoTopUp, ChargeLine, Purchase
from tests.domain.accounts import Account, C, t

DAY = "2026-03-02T10:00:00Z"


def spend(a: Account, micro: int, at: str = DAY):  # type: ignore[no-untyped-def]
    """Deduct ``micro`` of usage (a line of AI) and close the change as the ledger would (the
    controls are evaluated then)."""
    b = a.book()
    b.charge([ChargeLine(resource="ai", item="chat", amount=micro, month=at[:7])])
    b.flush(t(at), "ai_used")
    return a.commit(b)


def evaluated(a: Account, at: str = DAY):  # type: ignore[no-untyped-def]
    b = a.book()
    controls.evaluate(b, t(at))
    return a.commit(b)


def fired(book) -> list[dict]:  # type: ignore[no-untyped-def]
    return [e.detail for e in book.outbox if e.detail_type == "Alert Triggered"]


def rule(kind: str, threshold: str) -> AlertRule:
    return AlertRule(alert_id=f"alr-{kind}", kind=kind, threshold=threshold,  # type: ignore[arg-type]
                     created_at=t("2026-03-01T00:00:00Z"))


def test_remaining_below_is_strict_fires_once_with_a_mail_and_re_arms() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.alerts.append(rule("remaining_below", "20"))
    assert fired(spend(a, 30 * C)) == [] and a.state.alerts[0].armed  # 20 remain: not below 20
    check = spend(a, 1)  # 19.999999
    [detail] = fired(check)
    assert {k: detail[k] for k in ("alert_id", "kind", "threshold", "value")} == {
        "alert_id": "alr-remaining_below", "kind": "remaining_below", "threshold": "20", "value": "19.999999"}
    [mail] = [e for e in check.effects if e not in check.outbox]
    assert (mail.template, mail.data["remaining"], mail.data["value"]) == ("alert_triggered", "19.999999", "19.999999")
    assert (a.state.alerts[0].armed, a.state.alerts[0].fired_at) == (False, t("2026-03-01T00:00:00Z"))
    assert fired(evaluated(a)) == []  # once
    a.do(credits.grant, DAY, "event", 1, None, "support")  # 20 again: no longer below, re-armed
    assert a.state.alerts[0].armed


def test_no_alert_mail_while_credit_mail_is_off_the_event_all_the_same() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.credit_mail = False
    a.state.alerts.append(rule("remaining_below", "60"))
    check = evaluated(a)
    assert len(fired(check)) == 1 and [e for e in check.effects if e not in check.outbox] == []


def test_spent_this_month_above_is_strict() -> None:
    a = Account("2026-03-01T00:00:00Z", plan="membership")
    a.state.alerts.append(rule("spent_this_month_above", "10"))
    assert fired(spend(a, 10 * C)) == []
    [detail] = fired(spend(a, 1))
    assert detail["value"] == "10.000001"
    assert controls.spent_this_month(a.book(), t(DAY)) == 10 * C + 1
    assert controls.spent_this_month(a.book(), t("2026-04-02T00:00:00Z")) == 0


def test_hours_left_below_at_the_current_burn_is_strict() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.alerts += [rule("hours_left_below", "1.84"), rule("hours_left_below", "1.85")]
    start = a.start(DAY, "c1", "r1", "large")  # 50 / 27.2 = 1.838 -> 1.84 hours
    assert [(d["alert_id"], d["threshold"], d["value"]) for d in fired(start)] == [
        ("alr-hours_left_below", "1.85", 1.84)]


def test_no_burn_no_hours_left_alert() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.alerts.append(rule("hours_left_below", "1000"))
    assert fired(evaluated(a)) == []


def test_nothing_is_evaluated_while_a_month_closes_in_chunks() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.alerts.append(rule("remaining_below", "60"))
    a.state.auto_top_up = AutoTopUp(below=60 * C, credits=100, max_per_month=2)
    a.state.month_closing = t("2026-03-01T00:00:00Z")
    check = evaluated(a)
    assert check.effects == [] and check.purchases == []


# ---------------------------------------------------------------- auto top-up


def test_auto_top_up_asks_when_remaining_drops_strictly_below_at_the_accounts_price() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.credit_price_usd = "0.015"
    a.state.auto_top_up = AutoTopUp(below=30 * C, credits=100, max_per_month=2)
    assert spend(a, 20 * C).purchases == []  # 30 remain: not below
    check = spend(a, 1)
    [purchase] = check.purchases
    # 100 credits at $0.015 = 150 cents
    assert (purchase.account_id, purchase.credits, purchase.price_cents, purchase.auto, purchase.created_at) == (
        "acct", 100, 150, True, t("2026-03-01T00:00:00Z"))
    [requested] = [e.detail for e in check.outbox if e.detail_type == "Auto Top-up Requested"]
    assert (requested["purchase_id"], requested["credits"], requested["price"]) == (
        purchase.purchase_id, "100.000000", {"currency": "USD", "amount_minor": 150, "cents": 150})
    auto = a.state.auto_top_up
    assert (auto.pending, auto.requested) == (purchase.purchase_id, {"2026-03": 1})
    assert auto is not None
    assert evaluated(a).purchases == []  # one pending at a time
    # paid: the next one may be asked for (still below), a different purchase; then the month's limit
    b = a.book()
    controls.auto_payment_settled(b, purchase, paid=True)
    controls.evaluate(b, t(DAY))
    a.commit(b)
    [second] = b.purchases
    auto = a.state.auto_top_up
    assert second.purchase_id != purchase.purchase_id and auto.requested == {"2026-03": 2}
    b = a.book()
    controls.auto_payment_settled(b, second, paid=True)
    controls.evaluate(b, t(DAY))
    a.commit(b)
    auto = a.state.auto_top_up
    assert b.purchases == [] and auto.pending is None  # max_per_month 2 reached
    # a new month: asked again (April's 50 credits are below 30 + ... no: 50 >= 30; spend 21 of them)
    a.do(settle.sweep, "2026-04-15T00:00:00Z")
    april = spend(a, 21 * C, "2026-04-15T00:00:00Z")
    assert len(april.purchases) == 1 and a.state.auto_top_up.requested["2026-04"] == 1


def test_auto_top_up_off_or_absent_asks_nothing() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.auto_top_up = AutoTopUp(enabled=False, below=60 * C, credits=100, max_per_month=2)
    assert evaluated(a).purchases == []
    a.state.auto_top_up = None
    assert evaluated(a).purchases == []


def auto_purchase(purchase_id: str, auto: bool = True) -> Purchase:
    return Purchase(purchase_id=purchase_id, account_id="acct", credits=100, price_cents=200,
                    created_at=t(DAY), auto=auto)


def test_three_failed_auto_payments_in_a_row_turn_it_off_once_and_a_success_resets_the_run() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.auto_top_up = AutoTopUp(below=C, credits=100, max_per_month=31, pending="p1")
    b = a.book()
    auto = b.state.auto_top_up
    controls.auto_payment_settled(b, auto_purchase("other"), paid=False)  # not the pending one
    assert (auto.pending, auto.failures) == ("p1", 1)
    controls.auto_payment_settled(b, auto_purchase("p1"), paid=False)
    assert (auto.pending, auto.failures, auto.enabled) == (None, 2, True)
    controls.auto_payment_settled(b, auto_purchase("p2"), paid=True)
    assert auto.failures == 0
    controls.auto_payment_settled(b, auto_purchase("manual", auto=False), paid=False)  # not an auto purchase
    assert auto.failures == 0
    for n in range(1, 5):
        controls.auto_payment_settled(b, auto_purchase(f"f{n}"), paid=False)
        assert auto.enabled == (n < 3) and auto.failures == n
    assert [e.detail["reason"] for e in b.outbox if e.detail_type == "Auto Top-up Disabled"] == ["payment_failed"]
    [mail] = [e for e in b.effects if e not in b.outbox]
    assert (mail.template, mail.data) == ("auto_top_up_disabled", {"failures": 3, "credits": "100.000000"})
    b.state.auto_top_up = None
    controls.auto_payment_settled(b, auto_purchase("x"), paid=False)  # no settings: nothing to count


def test_auto_top_up_off_after_three_failures_stays_off_when_one_of_them_is_paid_late() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.auto_top_up = AutoTopUp(below=C, credits=100, max_per_month=31)
    b = a.book()
    auto = b.state.auto_top_up
    for n in range(1, 4):
        controls.auto_payment_settled(b, auto_purchase(f"f{n}"), paid=False)
    assert (auto.enabled, auto.disabled_by_failures, auto.failed) == (False, True, ["f1", "f2", "f3"])
    controls.auto_payment_settled(b, auto_purchase("f2"), paid=True)  # f2 went through after all
    assert (auto.enabled, auto.failures, auto.failed) == (False, 1, ["f3"])  # off until the user turns it on
    controls.auto_payment_settled(b, auto_purchase("f3"), paid=True)
    assert (auto.enabled, auto.failures, auto.failed) == (False, 0, [])


# ---------------------------------------------------------------- the spend cap


def cap_events(book) -> list[dict]:  # type: ignore[no-untyped-def]
    return [e.detail for e in book.outbox if e.detail_type == "Spend Cap Reached"]


def test_the_cap_is_reached_at_exactly_the_cap_not_one_micro_credit_before() -> None:
    a = Account("2026-03-01T00:00:00Z", plan="membership")
    a.state.spend_cap = 20 * C
    assert cap_events(spend(a, 20 * C - 1)) == [] and a.state.cap_reached is None
    assert not controls.capped(a.book(), t(DAY))
    check = spend(a, 1)  # 20 exactly
    assert a.state.cap_reached == "2026-03" and controls.capped(a.book(), t(DAY))
    assert [(d["cap"], d["spent"]) for d in cap_events(check)] == [("20.000000", "20.000000")]
    assert [e.template for e in check.effects if e not in check.outbox] == ["spend_cap_reached"]
    assert [e.detail_type for e in check.outbox] == ["Spend Cap Reached"]  # nothing running: nothing to stop
    assert cap_events(evaluated(a)) == []  # once a month
    assert a.state.available() == 980 * C  # the account keeps its credits
    # a new month ends it
    assert not controls.capped(a.book(), t("2026-04-01T00:00:00Z"))
    a.do(settle.sweep, "2026-04-02T00:00:00Z")
    assert a.state.cap_reached is None


def test_the_cap_reached_by_running_usage_stops_the_running_containers_and_mails_once() -> None:
    a = Account("2026-03-01T00:00:00Z", plan="membership")
    a.state.spend_cap = 27_200_000
    a.start(DAY, "c1", "r1", "large")
    a.start(DAY, "c0", "r0", "micro")
    # 1 h later: large 27.2 + micro 1.96 accrued: over the cap, settled now
    check = a.do(settle.sweep, "2026-03-02T11:00:00Z")
    [stop] = [e.detail for e in check.outbox if e.detail_type == "Stop Containers Requested"]
    assert (stop["container_ids"], stop["reason"]) == (["c0", "c1"], "spend_cap")
    assert [(d["cap"], d["spent"]) for d in cap_events(check)] == [("27.200000", "29.160000")]
    assert [e.template for e in check.effects if e not in check.outbox] == ["spend_cap_reached"]


def test_no_cap_no_stop_and_removing_the_cap_ends_it() -> None:
    a = Account("2026-03-01T00:00:00Z", plan="membership")
    spend(a, 500 * C)
    assert a.state.cap_reached is None
    a.state.spend_cap = 10 * C
    assert len(cap_events(evaluated(a))) == 1
    assert a.state.cap_reached == "2026-03"
    a.state.spend_cap = None
    evaluated(a)
    assert a.state.cap_reached is None


def test_close_evaluates_as_of_the_accounts_clock_and_plans_the_next_check() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.start(DAY, "c1", "r1", "large")
    b = a.book()
    b.state.alerts.append(rule("remaining_below", "60"))
    changed = controls.close(b)
    assert len(fired(b)) == 1 and [c.container_id for c in changed] == []
    # 50 credits at 27.2 an hour: the low-credit mail's check is due before one hour of burn is left
    assert b.state.next_check_at is not None and b.state.next_check_at > t(DAY)
