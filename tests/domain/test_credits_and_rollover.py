"""Credits that arrive and leave (billing-rules.md, "Free and event credits", "Purchases and
refunds") and time passing over an account ("Month boundary", "Credit lots"), by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing.domain import credits, lots, rollover, settle
from billing.domain.model import AutoTopUp, CreditLot, Work
from tests.domain.accounts import Account, C, assert_conserved, t


def test_a_new_account_gets_its_plans_full_monthly_credits_until_the_month_ends() -> None:
    a = Account("2026-03-20T15:00:00Z", plan="membership")
    [lot] = a.state.lots
    assert (lot.lot_id, lot.kind, lot.granted, lot.remaining, lot.granted_at, lot.expires_at, lot.reason) == (
        "monthly-2026-03", "monthly", 1000 * C, 1000 * C, t("2026-03-20T15:00:00Z"), t("2026-04-01T00:00:00Z"),
        "monthly_credits_membership")
    assert (a.state.account_id, a.state.email, a.state.created_at, a.state.as_of, a.state.credit_price_usd) == (
        "acct", "a@example.com", t("2026-03-20T15:00:00Z"), t("2026-03-20T15:00:00Z"), "0.02")
    assert [(e.type, e.amount, e.event_id, e.entry_id) for e in a.entries] == [("grant", 1000 * C, "open", "open:001")]
    custom = rollover.open_account("b", "b@example.com", "free", t("2026-03-20T15:00:00Z"), a.catalog, "o", "0.015")
    assert custom.state.credit_price_usd == "0.015" and custom.state.available() == 50 * C


def test_a_month_boundary_is_crossed_at_its_first_second_not_before() -> None:
    a = Account("2026-03-20T00:00:00Z")
    b = a.book()
    rollover.advance_to(b, t("2026-03-31T23:59:59Z"))
    assert b.entries == [] and b.state.as_of == t("2026-03-31T23:59:59Z")
    rollover.advance_to(b, t("2026-04-01T00:00:00Z"))
    assert [(e.type, e.amount, e.at, e.reason, e.lot_id) for e in b.entries] == [
        ("expiry", 50 * C, t("2026-04-01T00:00:00Z"), "monthly_credits_expired", "monthly-2026-03"),
        ("grant", 50 * C, t("2026-04-01T00:00:00Z"), "monthly_credits_free", "monthly-2026-04")]
    assert b.state.as_of == t("2026-04-01T00:00:00Z") and b.state.available() == 50 * C
    assert_conserved(b.state)


def test_months_behind_counts_the_boundaries_up_to_and_including_the_moment() -> None:
    state = Account("2026-03-20T00:00:00Z").state
    assert rollover.months_behind(state, t("2026-03-31T23:59:59Z")) == 0
    assert rollover.months_behind(state, t("2026-04-01T00:00:00Z")) == 1
    assert rollover.months_behind(state, t("2027-03-01T00:00:00Z")) == 12


def test_several_months_at_once_grant_and_expire_each_and_forget_what_is_older_than_40_days() -> None:
    a = Account("2026-01-20T00:00:00Z")
    a.state.traffic_used = {"2026-01": 5}
    a.state.month_charged = {"2026-01": 7}
    a.state.auto_top_up = AutoTopUp(below=C, credits=50, max_per_month=2, requested={"2026-01": 1})
    a.state.check_ins = [f"d{n}" for n in range(45)]
    a.do(settle.sweep, "2026-04-15T00:00:00Z")
    assert [(e.type, e.at) for e in a.entries[1:]] == [
        ("expiry", t("2026-02-01T00:00:00Z")), ("grant", t("2026-02-01T00:00:00Z")),
        ("expiry", t("2026-03-01T00:00:00Z")), ("grant", t("2026-03-01T00:00:00Z")),
        ("expiry", t("2026-04-01T00:00:00Z")), ("grant", t("2026-04-01T00:00:00Z"))]
    # kept at the last boundary (04-01): lots closed after 02-20 (February's, closed 03-01; March's) and
    # open ones; January's (closed 02-01) is forgotten
    assert [x.lot_id for x in a.state.lots] == ["monthly-2026-02", "monthly-2026-03", "monthly-2026-04"]
    assert a.state.traffic_used == {} and a.state.month_charged == {}
    assert a.state.auto_top_up.requested == {}
    assert a.state.check_ins == [f"d{n}" for n in range(5, 45)]  # the last 40
    assert a.state.as_of == t("2026-04-15T00:00:00Z")
    assert_conserved(a.state)


def test_pruning_keeps_this_and_last_months_figures_and_lots_still_open_or_recent() -> None:
    state = Account("2026-03-01T00:00:00Z").state
    state.traffic_used = {"2026-02": 1, "2026-03": 2, "2026-01": 3}
    state.month_charged = {"2026-02": 1, "2026-03": 2, "2026-01": 3}
    state.auto_top_up = AutoTopUp(below=C, credits=50, max_per_month=2, requested={"2026-03": 1, "2026-01": 2})
    now = t("2026-03-01T00:00:00Z")
    old_closed = CreditLot(lot_id="old", kind="event", granted=0, remaining=0, granted_at=now - timedelta(days=60),
                           expires_at=now - timedelta(days=40, seconds=1), closed=True)
    edge = CreditLot(lot_id="edge", kind="event", granted=0, remaining=0, granted_at=now - timedelta(days=60),
                     expires_at=now - timedelta(days=40), closed=True)
    empty_no_expiry = CreditLot(lot_id="empty", kind="purchased", granted=0, remaining=0,
                                granted_at=now - timedelta(days=41))
    open_old = CreditLot(lot_id="open", kind="purchased", granted=C, remaining=C, granted_at=now - timedelta(days=90))
    state.lots += [old_closed, edge, empty_no_expiry, open_old]
    rollover.prune(state, now)
    assert [x.lot_id for x in state.lots] == ["monthly-2026-03", "edge", "open"]
    assert state.traffic_used == {"2026-02": 1, "2026-03": 2} and state.month_charged == {"2026-02": 1, "2026-03": 2}
    assert state.auto_top_up.requested == {"2026-03": 1}  # this month's auto purchases still count


def test_a_late_event_rolls_nothing() -> None:
    a = Account("2026-03-01T00:00:00Z")
    b = a.book()
    rollover.advance_to(b, t("2026-03-10T00:00:00Z"))
    rollover.advance_if_current(b, t("2026-03-09T00:00:00Z"))
    assert b.state.as_of == t("2026-03-10T00:00:00Z")
    rollover.advance_if_current(b, t("2026-03-10T00:00:00Z"))  # at the clock: rolls to itself, expiring due lots
    lots.add_lot(b.state, CreditLot(lot_id="x", kind="event", granted=C, remaining=C,
                                    granted_at=t("2026-03-09T00:00:00Z"), expires_at=t("2026-03-10T00:00:00Z")))
    rollover.advance_if_current(b, t("2026-03-10T00:00:00Z"))
    assert b.state.lots[-1].closed and [e.type for e in b.entries] == ["expiry"]
    rollover.advance_if_current(b, t("2026-04-02T00:00:00Z"))
    assert b.state.as_of == t("2026-04-02T00:00:00Z")


def test_the_monthly_grant_follows_the_plan_at_the_boundary() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.plans.append((t("2026-03-15T00:00:00Z"), "membership"))
    assert a.state.available() == 50 * C  # the current month's lot stays as it is
    a.do(settle.sweep, "2026-04-01T00:00:00Z")
    assert a.entries[-1].amount == 1000 * C and a.entries[-1].reason == "monthly_credits_membership"


# ---------------------------------------------------------------- credits


def test_a_check_in_is_5_credits_valid_one_calendar_month_clamped() -> None:
    a = Account("2026-01-01T00:00:00Z", plan="membership")
    b = a.book("ci")
    lot = credits.check_in(b, t("2026-01-31T10:00:00Z"))
    a.commit(b)
    assert (lot.kind, lot.granted, lot.granted_at, lot.expires_at, lot.reason) == (
        "event", 5 * C, t("2026-01-31T10:00:00Z"), t("2026-02-28T10:00:00Z"), "daily_check_in")
    assert a.state.check_ins == ["2026-01-31"]
    b2 = a.book()
    assert credits.checked_in_on(b2, t("2026-01-31T23:59:59Z"))
    assert not credits.checked_in_on(b2, t("2026-02-01T00:00:00Z"))


def test_a_grant_rolls_the_account_to_its_time_first_and_repays_debt() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.debt, a.state.totals.charged = 2 * C, 2 * C  # 2 credits owed (charged, not spent)
    b = a.book("g")
    lot = credits.grant(b, t("2026-04-02T00:00:00Z"), "coupon", 10 * C, t("2026-05-01T00:00:00Z"), "coupon:X")
    a.commit(b)
    assert a.state.as_of == t("2026-04-02T00:00:00Z")
    # April's monthly lot came first (at the boundary) and repaid the debt; the coupon keeps its 10
    assert (lot.remaining, a.state.debt) == (10 * C, 0)
    assert a.state.available() == 48 * C + 10 * C
    assert_conserved(a.state)


def test_a_purchase_adds_credits_without_expiry_and_starts_a_new_mail_cycle() -> None:
    a = Account("2026-03-01T00:00:00Z")
    cycle = a.state.mail_cycle
    b = a.book("buy")
    lot = credits.purchased(b, t("2026-03-02T00:00:00Z"), "pur_1", 100)
    a.commit(b)
    assert (lot.kind, lot.granted, lot.expires_at, lot.purchase_id, lot.reason) == (
        "purchased", 100 * C, None, "pur_1", "credits_purchased")
    assert a.state.mail_cycle == cycle + 1


def test_a_refund_takes_back_the_unused_credits_and_expires_the_purchases_promotional_credits() -> None:
    a = Account("2026-03-01T00:00:00Z")
    b = a.book("buy")
    credits.purchased(b, t("2026-03-02T00:00:00Z"), "pur_1", 100)
    b.grant("promotional", 10 * C, t("2026-03-02T00:00:00Z"), None, "bonus", purchase_id="pur_1")
    b.grant("promotional", 7 * C, t("2026-03-02T00:00:00Z"), None, "other", purchase_id="pur_2")
    a.commit(b)
    b = a.book("use")
    # 80: monthly 50, the promotional 10 and 7 (no expiry: after the monthly), 13 of the purchase
    lots.pay(b.state, 80 * C, t("2026-03-03T00:00:00Z"), t("2026-03-03T00:00:00Z"))
    a.commit(b)
    assert credits.promotional_credits(a.book(), "pur_1") == 10 * C
    assert credits.promotional_credits(a.book(), "nope") == 0
    b = a.book("refund")
    assert credits.refund(b, "pur_1", t("2026-03-04T00:00:00Z")) == 87 * C
    a.commit(b)
    assert [(e.type, e.amount, e.reason, e.lot_id) for e in b.entries] == [
        ("refund", 87 * C, "purchase_refunded", "purchased-buy")]  # the promotional lot was spent: no expiry
    assert credits.refund(a.book(), "pur_1", t("2026-03-05T00:00:00Z")) == 0  # once
    # 87 of 100 unused, for 200 cents: 174 cents
    assert credits.refund_cents(200, 100, 87 * C) == 174
    assert_conserved(a.state)


def test_a_refund_expires_the_unspent_promotional_credits() -> None:
    a = Account("2026-03-01T00:00:00Z")
    b = a.book("buy")
    credits.purchased(b, t("2026-03-02T00:00:00Z"), "pur_1", 100)
    b.grant("promotional", 10 * C, t("2026-03-02T00:00:00Z"), None, "bonus", purchase_id="pur_1")
    a.commit(b)
    b = a.book("other")
    credits.purchased(b, t("2026-03-03T00:00:00Z"), "pur_2", 60)  # another purchase: not refunded with it
    a.commit(b)
    b = a.book("refund")
    refunded_at = t("2026-03-04T00:00:00Z")
    assert credits.refund(b, "pur_1", refunded_at) == 100 * C
    a.commit(b)
    assert [(e.type, e.amount, e.at, e.reason, e.lot_id) for e in b.entries] == [
        ("refund", 100 * C, refunded_at, "purchase_refunded", "purchased-buy"),
        ("expiry", 10 * C, refunded_at, "promotional_credits_expired_on_refund", "promotional-buy")]
    promo = next(x for x in a.state.lots if x.kind == "promotional")
    assert (promo.closed, promo.expires_at) == (True, refunded_at)  # it expires at the refund
    assert a.state.available() == 50 * C + 60 * C
    assert_conserved(a.state)


def test_a_refund_takes_back_every_purchased_lot_of_the_purchase() -> None:
    a = Account("2026-03-01T00:00:00Z")
    b = a.book("buy")
    b.grant("purchased", 30 * C, t("2026-03-02T00:00:00Z"), None, "credits_purchased", lot_id="p-a",
            purchase_id="pur_1")
    b.grant("purchased", 20 * C, t("2026-03-02T00:00:00Z"), None, "credits_purchased", lot_id="p-b",
            purchase_id="pur_1")
    a.commit(b)
    b = a.book("refund")
    assert credits.refund(b, "pur_1", t("2026-03-04T00:00:00Z")) == 50 * C
    a.commit(b)
    assert a.state.available() == 50 * C
    assert_conserved(a.state)


@pytest.mark.parametrize(("price", "bought", "unused", "cents"), [
    (200, 100, 100 * C, 200), (200, 100, 0, 0), (200, 100, 1, 1),  # 0.000002 cents: up to 1
    (10_000, 5_000, 2_500 * C + 1, 5_001),  # 5,000.000002 cents
    (300, 150, 75 * C, 150),
])
def test_refund_money_is_the_unused_share_rounded_up(price: int, bought: int, unused: int, cents: int) -> None:
    assert credits.refund_cents(price, bought, unused) == cents


# ---------------------------------------------------------------- a month closed in chunks


def account_with_containers(count: int) -> Account:
    """A Free account (created 2026-03-01) with ``count`` containers of 5 GB (storage within the
    allowance: free), the first, c00, running small from 2026-03-31T23:00."""
    a = Account("2026-03-01T00:00:00Z")
    for n in range(count):
        a.create("2026-03-01T00:00:00Z", f"c{n:02d}", 5)
    a.start("2026-03-31T23:00:00Z", "c00", "r1", "small")
    return a


def test_a_month_boundary_settles_every_listed_container_in_the_same_change() -> None:
    a = account_with_containers(20)
    assert a.state.container_ids == [f"c{n:02d}" for n in range(20)]  # 20 are listed on the balance
    b = a.book()
    rollover.advance_to(b, t("2026-04-01T00:10:00Z"))
    # c00's hour of small (6.80) is settled to the boundary and paid from March's 50: 43.20 expire.
    assert [(e.type, e.amount, e.reason) for e in b.entries] == [
        ("deduction", 6_800_000, "month_end_settlement"), ("expiry", 43_200_000, "monthly_credits_expired"),
        ("grant", 50 * C, "monthly_credits_free")]
    assert b.entries[0].at == t("2026-03-31T23:59:59Z")  # as of March's last second
    assert [e for e in b.effects if isinstance(e, Work)] == []
    assert b.state.month_closing is None
    assert b.containers.loaded["c00"].runs["r1"].billed_until == t("2026-04-01T00:00:00Z")
    assert_conserved(b.state)


def test_past_20_containers_the_month_closes_in_chunks_through_the_work_queue() -> None:
    a = account_with_containers(21)
    assert a.state.container_ids is None  # more than the balance lists
    b = a.book()
    rollover.advance_to(b, t("2026-04-01T00:10:00Z"))
    # No container is reachable from the balance: none is settled in this change. The work queue
    # settles them to the boundary in chunks; the overuse check and the controls wait for the last.
    [work] = [e for e in b.effects if isinstance(e, Work)]
    assert (work.kind, work.account_id, work.at, work.skip) == ("month_close", "acct", t("2026-04-01T00:00:00Z"), [])
    assert b.state.month_closing == t("2026-04-01T00:00:00Z")
    # March's whole 50 are written off (c00's hour takes its part back when its chunk settles it).
    assert [(e.type, e.amount, e.reason) for e in b.entries] == [
        ("expiry", 50 * C, "monthly_credits_expired"), ("grant", 50 * C, "monthly_credits_free")]
    assert (b.state.as_of, b.state.available()) == (t("2026-04-01T00:10:00Z"), 50 * C)
    assert b.containers.loaded == {}
    assert_conserved(b.state)


def test_months_closed_in_chunks_ask_for_each_boundary() -> None:
    a = account_with_containers(21)
    b = a.book()
    rollover.advance_to(b, t("2026-05-01T00:00:00Z"))
    assert [(e.kind, e.at) for e in b.effects if isinstance(e, Work)] == [
        ("month_close", t("2026-04-01T00:00:00Z")), ("month_close", t("2026-05-01T00:00:00Z"))]
    assert b.state.month_closing == t("2026-05-01T00:00:00Z")  # the latest boundary's
