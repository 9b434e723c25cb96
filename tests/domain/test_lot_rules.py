"""Credit lots (billing-rules.md, "Credit lots and the order they are spent in"), rule by rule, and a
property: any lots, any charge, the burn-down keeps conservation and spends in the documented order."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain import lots
from billing.domain.model import AccountState, CreditLot, LotAmount
from tests.domain.accounts import C, assert_conserved, t

MARCH_10 = t("2026-03-10T00:00:00Z")


def state_with(*lot_list: CreditLot, debt: int = 0) -> AccountState:
    state = AccountState(account_id="a", email="a@example.com", created_at=t("2026-01-01T00:00:00Z"),
                         plans=[(t("2026-01-01T00:00:00Z"), "free")], as_of=MARCH_10)
    if debt:  # debt from an earlier charge nothing paid
        lots.pay(state, debt, MARCH_10, MARCH_10)
    for lot in lot_list:
        lots.add_lot(state, lot)
    return state


def lot(lot_id: str, kind: str, micro: int, granted: str, expires: str | None = None) -> CreditLot:
    return CreditLot(lot_id=lot_id, kind=kind, granted=micro, remaining=micro,  # type: ignore[arg-type]
                     granted_at=t(granted), expires_at=t(expires) if expires else None)


def amounts(paid: list[LotAmount]) -> list[tuple[str, int]]:
    return [(p.lot_id, p.amount) for p in paid]


# ---------------------------------------------------------------- the burn order


def test_free_lots_by_expiry_then_grant_then_id_and_purchased_by_grant() -> None:
    ordered = [
        lot("a-free", "event", 1, "2026-03-02T00:00:00Z", "2026-03-20T00:00:00Z"),  # expires first
        lot("b-free", "coupon", 1, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),  # same expiry, older
        lot("a-same", "monthly", 1, "2026-03-05T00:00:00Z", "2026-04-01T00:00:00Z"),  # same expiry and grant:
        lot("b-same", "promotional", 1, "2026-03-05T00:00:00Z", "2026-04-01T00:00:00Z"),  # ... by id
        lot("never", "event", 1, "2026-01-01T00:00:00Z"),  # a free lot that never expires: last of the free
        lot("bought-1", "purchased", 1, "2026-02-01T00:00:00Z"),  # purchased: oldest first
        lot("bought-2", "purchased", 1, "2026-02-02T00:00:00Z"),
    ]
    assert [x.lot_id for x in sorted(reversed(ordered), key=lots.burn_order)] == [x.lot_id for x in ordered]
    # A purchased lot's expiry (there is none by the rules) would not put it before free credits.
    bought = lot("bought-3", "purchased", 1, "2026-01-01T00:00:00Z", "2026-03-11T00:00:00Z")
    assert lots.burn_order(bought) > lots.burn_order(ordered[4])


def test_pay_spends_in_burn_order_and_only_usable_lots() -> None:
    state = state_with(
        lot("bought", "purchased", 10 * C, "2026-01-05T00:00:00Z"),
        lot("future", "event", 10 * C, "2026-03-11T00:00:00Z"),  # granted after the charge: not usable
        lot("ends-at-charge", "event", 10 * C, "2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z"),  # expires at it
        lot("check-in", "event", 5 * C, "2026-03-05T00:00:00Z", "2026-04-05T00:00:00Z"),
        lot("monthly", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
    )
    paid, debt = lots.pay(state, 57 * C, MARCH_10, MARCH_10)
    assert amounts(paid) == [("monthly", 50 * C), ("check-in", 5 * C), ("bought", 2 * C)]
    assert debt == 0 and state.debt == 0
    assert [(x.lot_id, x.remaining) for x in state.lots] == [
        ("bought", 8 * C), ("future", 10 * C), ("ends-at-charge", 10 * C), ("check-in", 0), ("monthly", 0)]
    assert state.totals.spent == 57 * C and state.totals.charged == 57 * C
    assert_conserved(state)


def test_a_charge_of_exactly_the_balance_leaves_no_debt_and_one_micro_credit_more_is_debt() -> None:
    state = state_with(lot("m", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"))
    assert lots.pay(state, 50 * C, MARCH_10, MARCH_10)[1] == 0 and state.debt == 0
    paid, debt = lots.pay(state, 1, MARCH_10, MARCH_10)
    assert (paid, debt, state.debt) == ([], 1, 1)
    paid, debt = lots.pay(state, 2, MARCH_10, MARCH_10)
    assert (debt, state.debt) == (2, 3)  # debt adds up
    assert state.totals.charged == 50 * C + 3 and state.totals.spent == 50 * C
    assert_conserved(state)


def test_a_charge_of_nothing_changes_nothing_and_a_negative_one_is_refused() -> None:
    state = state_with(lot("m", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"))
    assert lots.pay(state, 0, MARCH_10, MARCH_10) == ([], 0)
    try:
        lots.pay(state, -1, MARCH_10, MARCH_10)
    except ValueError:
        pass
    else:
        raise AssertionError("a negative charge was accepted")
    assert state.totals.charged == 0 and state.available(MARCH_10) == 50 * C


def test_a_late_usage_is_paid_by_the_lot_of_its_time_even_when_written_off_since() -> None:
    """Usage of March 31 settled on April 2: March's monthly lot, expired since, pays from what was
    written off; then April's lots (usable now); then debt."""
    state = state_with(lot("march", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"))
    lots.pay(state, 45 * C, t("2026-03-20T00:00:00Z"), t("2026-03-20T00:00:00Z"))
    lots.expire_lots(state, t("2026-04-01T00:00:00Z"))  # 5 written off
    lots.add_lot(state, lot("april", "monthly", 50 * C, "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"))
    april_2 = t("2026-04-02T00:00:00Z")
    paid, debt = lots.pay(state, 8 * C, t("2026-03-31T23:59:59Z"), april_2)
    assert amounts(paid) == [("march", 5 * C), ("april", 3 * C)] and debt == 0
    march = state.lots[0]
    assert (march.expired, march.remaining, march.closed) == (0, 0, True)
    assert state.totals.expired == 0 and state.available(april_2) == 47 * C
    assert_conserved(state)
    # Settled as of its own time (now == as_of), only the lots usable then pay: April's can't.
    state2 = state_with(lot("march", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
                        lot("april", "monthly", 50 * C, "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"))
    march_31 = t("2026-03-31T23:59:59Z")
    paid, debt = lots.pay(state2, 60 * C, march_31, march_31)
    assert amounts(paid) == [("march", 50 * C)] and debt == 10 * C
    assert_conserved(state2)


def test_a_written_off_lot_pays_only_for_usage_from_before_its_expiry() -> None:
    state = state_with(lot("march", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"))
    lots.expire_lots(state, t("2026-04-01T00:00:00Z"))  # 50 written off
    april_1, april_2 = t("2026-04-01T00:00:00Z"), t("2026-04-02T00:00:00Z")
    # usage at the expiry itself: the lot is no longer usable then
    assert lots.pay(state, 1 * C, april_1, april_2) == ([], 1 * C)
    # usage before it, but the account's clock has not reached the expiry: nothing written off to take
    state3 = state_with(lot("march", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"))
    lots.expire_lot_now(state3, state3.lots[0], t("2026-03-20T00:00:00Z"))  # closed early, expires 03-20
    paid, _ = lots.pay(state3, 1 * C, t("2026-03-19T00:00:00Z"), t("2026-03-19T12:00:00Z"))
    assert paid == []  # its expiry (03-20) is after now (03-19 12:00): not reclaimable
    paid, _ = lots.pay(state3, 1 * C, t("2026-03-19T00:00:00Z"), t("2026-03-20T00:00:00Z"))
    assert amounts(paid) == [("march", 1 * C)]  # expiry <= now: it is
    assert_conserved(state3)


def test_a_refunded_lot_never_pays_for_earlier_usage() -> None:
    state = state_with(lot("bought", "purchased", 10 * C, "2026-03-01T00:00:00Z"))
    lots.refund_lot(state, state.lots[0])
    assert lots.pay(state, 1 * C, t("2026-03-05T00:00:00Z"), MARCH_10) == ([], 1 * C)
    assert_conserved(state)


# ---------------------------------------------------------------- grants repay debt


def test_a_grant_repays_debt_first_and_ends_the_exhausted_state_only_when_all_is_repaid() -> None:
    state = state_with(debt=10 * C)
    state.exhausted = True
    repaid = lots.add_lot(state, lot("g1", "event", 4 * C, "2026-03-11T00:00:00Z"))
    assert (repaid, state.debt, state.exhausted, state.lots[-1].remaining) == (4 * C, 6 * C, True, 0)
    repaid = lots.add_lot(state, lot("g2", "event", 10 * C, "2026-03-11T00:00:00Z"))
    assert (repaid, state.debt, state.exhausted, state.lots[-1].remaining) == (6 * C, 0, False, 4 * C)
    assert state.totals.granted == 14 * C and state.totals.spent == 10 * C
    repaid = lots.add_lot(state, lot("g3", "event", 1 * C, "2026-03-11T00:00:00Z"))
    assert (repaid, state.lots[-1].remaining) == (0, 1 * C)
    assert_conserved(state)


# ---------------------------------------------------------------- expiry


def test_expiry_writes_off_the_lots_due_at_or_before_the_time_only() -> None:
    state = state_with(
        lot("due", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
        lot("later", "event", 5 * C, "2026-03-05T00:00:00Z", "2026-04-01T00:00:01Z"),
        lot("early", "event", 5 * C, "2026-03-02T00:00:00Z", "2026-03-31T00:00:00Z"),
        lot("bought", "purchased", 10 * C, "2026-03-02T00:00:00Z"),
    )
    lots.pay(state, 52 * C, MARCH_10, MARCH_10)  # early 5 (expires first), then due 47
    expired = lots.expire_lots(state, t("2026-04-01T00:00:00Z"))
    assert [(x.lot_id, x.expired, x.remaining, x.closed) for x in expired] == [
        ("early", 0, 0, True), ("due", 3 * C, 0, True)]  # in burn order; an empty lot closes too
    assert state.totals.expired == 3 * C
    assert lots.expire_lots(state, t("2026-04-01T00:00:00Z")) == []  # closed lots are not expired twice
    assert state.available(t("2026-04-01T00:00:00Z")) == 15 * C
    assert_conserved(state)


def test_a_lot_written_off_now_closes_at_the_earlier_of_now_and_its_expiry() -> None:
    state = state_with(lot("promo", "promotional", 5 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
                       lot("promo2", "promotional", 5 * C, "2026-03-01T00:00:00Z", "2026-03-05T00:00:00Z"),
                       lot("forever", "event", 5 * C, "2026-03-01T00:00:00Z"))
    lots.pay(state, 2 * C, t("2026-03-02T00:00:00Z"), t("2026-03-02T00:00:00Z"))  # from promo2
    assert lots.expire_lot_now(state, state.lots[0], MARCH_10) == 5 * C
    assert lots.expire_lot_now(state, state.lots[1], MARCH_10) == 3 * C
    assert lots.expire_lot_now(state, state.lots[2], MARCH_10) == 5 * C
    assert [(x.expires_at, x.expired, x.remaining, x.closed) for x in state.lots] == [
        (MARCH_10, 5 * C, 0, True), (t("2026-03-05T00:00:00Z"), 3 * C, 0, True), (MARCH_10, 5 * C, 0, True)]
    assert state.totals.expired == 13 * C
    assert_conserved(state)


def test_a_refund_takes_back_what_remains_and_closes_the_lot() -> None:
    state = state_with(lot("bought", "purchased", 100 * C, "2026-03-01T00:00:00Z"))
    lots.pay(state, 30 * C, MARCH_10, MARCH_10)
    assert lots.refund_lot(state, state.lots[0]) == 70 * C
    bought = state.lots[0]
    assert (bought.refunded, bought.remaining, bought.closed, state.totals.refunded) == (70 * C, 0, True, 70 * C)
    assert_conserved(state)


# ---------------------------------------------------------------- corrections


def test_a_correction_forgives_debt_and_returns_to_the_lots_at_most_what_each_paid() -> None:
    state = state_with(
        lot("m", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
        lot("e", "event", 5 * C, "2026-03-01T00:00:00Z", "2026-03-20T00:00:00Z"),
        lot("b", "purchased", 10 * C, "2026-03-02T00:00:00Z"),
    )
    lots.pay(state, 67 * C, MARCH_10, MARCH_10)  # e 5, m 50, b 10, debt 2
    back, forgiven, written_off = lots.give_back(state, 20 * C, MARCH_10)
    assert (forgiven, written_off) == (2 * C, 0) and state.debt == 0
    assert amounts(back) == [("b", 10 * C), ("m", 8 * C)]  # reverse burn order, b at most its 10
    assert state.totals.charged == 47 * C and state.totals.spent == 47 * C
    assert_conserved(state)


def test_a_correction_of_less_than_the_debt_forgives_only_it() -> None:
    state = state_with(lot("m", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"))
    lots.pay(state, 60 * C, MARCH_10, MARCH_10)  # debt 10
    back, forgiven, written_off = lots.give_back(state, 4 * C, MARCH_10)
    assert (back, forgiven, written_off, state.debt) == ([], 4 * C, 0, 6 * C)
    assert_conserved(state)


def test_a_correction_to_a_lot_expired_since_is_written_off_and_one_with_no_lot_left_is_a_lot_of_its_own() -> None:
    state = state_with(lot("m", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
                       lot("r", "purchased", 5 * C, "2026-03-01T00:00:00Z"))
    lots.pay(state, 20 * C, MARCH_10, MARCH_10)  # m 20
    lots.refund_lot(state, state.lots[1])  # a refunded lot takes nothing back
    lots.expire_lots(state, t("2026-04-01T00:00:00Z"))  # m: 30 written off
    back, forgiven, written_off = lots.give_back(state, 25 * C, MARCH_10)
    assert (forgiven, written_off) == (0, 20 * C)
    assert amounts(back) == [("m", 20 * C), ("correction-20260310000000-2", 5 * C)]
    m, own = state.lots[0], state.lots[-1]
    assert (m.expired, m.remaining) == (50 * C, 0)
    assert (own.kind, own.granted, own.remaining, own.granted_at, own.expires_at, own.reason) == (
        "event", 5 * C, 5 * C, MARCH_10, None, "correction")
    assert state.totals.expired == 50 * C and state.totals.granted == 55 * C
    assert_conserved(state)


def test_a_correction_skips_lots_that_paid_nothing_and_lots_not_usable_at_its_time() -> None:
    state = state_with(lot("m", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
                       lot("unused", "purchased", 5 * C, "2026-03-01T00:00:00Z"),
                       lot("later", "event", 5 * C, "2026-03-15T00:00:00Z"))
    lots.pay(state, 10 * C, MARCH_10, MARCH_10)
    lots.pay(state, 52 * C, t("2026-03-16T00:00:00Z"), t("2026-03-16T00:00:00Z"))  # m 40, later 5, unused 5; debt 2
    back, forgiven, _ = lots.give_back(state, 5 * C, MARCH_10)  # as of 03-10: `later` was not usable then
    assert forgiven == 2 * C and amounts(back) == [("unused", 3 * C)]
    assert_conserved(state)


# ---------------------------------------------------------------- the property

KINDS = st.sampled_from(["monthly", "event", "coupon", "promotional", "purchased"])
BASE = t("2026-03-01T00:00:00Z")


@st.composite
def lot_lists(draw: st.DrawFn) -> list[CreditLot]:
    out = []
    for n in range(draw(st.integers(0, 6))):
        kind = draw(KINDS)
        granted_at = BASE + timedelta(days=draw(st.integers(0, 20)))
        expires_at = None
        if kind != "purchased" and draw(st.booleans()):
            expires_at = granted_at + timedelta(days=draw(st.integers(1, 40)))
        amount = draw(st.integers(0, 100 * C))
        out.append(CreditLot(lot_id=f"l{n}", kind=kind, granted=amount, remaining=amount, granted_at=granted_at,
                             expires_at=expires_at))
    return out


def usable(lot_: CreditLot, at: datetime) -> bool:
    return lot_.granted_at <= at and (lot_.expires_at is None or at < lot_.expires_at)


@settings(max_examples=60, deadline=None)
@given(lot_lists(), st.integers(0, 20), st.integers(0, 400 * C), st.integers(0, 400 * C))
def test_any_charge_spends_usable_lots_in_burn_order_and_keeps_the_books(
    lot_list: list[CreditLot], day: int, charge: int, correction: int,
) -> None:
    state = state_with(*lot_list)
    at = BASE + timedelta(days=day)
    before = {x.lot_id: x.remaining for x in state.lots}
    available = sum(r for x in state.lots if usable(x, at) for r in [x.remaining])
    paid, debt = lots.pay(state, charge, at, at)
    # the reference: usable lots in the documented order, each emptied before the next
    order = sorted((x for x in lot_list if usable(x, at) and before[x.lot_id]),
                   key=lambda x: (x.kind == "purchased",
                                  x.granted_at if x.kind == "purchased" else (x.expires_at or datetime.max.replace(
                                      tzinfo=at.tzinfo)),
                                  x.granted_at, x.lot_id))
    expected, left = [], charge
    for x in order:
        part = min(before[x.lot_id], left)
        if part:
            expected.append((x.lot_id, part))
            left -= part
    assert amounts(paid) == expected
    assert debt == max(0, charge - available) == state.debt
    assert state.available(at) == max(0, available - charge)
    assert_conserved(state)
    # a correction never gives back more than was charged, and keeps the books too
    back, forgiven, _ = lots.give_back(state, min(correction, charge), at)
    assert forgiven == min(debt, correction, charge)
    assert sum(p.amount for p in back) + forgiven == min(correction, charge)
    assert state.totals.charged == charge - min(correction, charge)
    assert_conserved(state)


def test_a_late_usage_beyond_its_months_lots_is_paid_by_todays_lots_in_burn_order() -> None:
    """March usage settled on April 2 after March's lot (1 µcr written off) : 1 from March's, then
    April's check-in (expires first), then April's monthly, the rest of which stays."""
    state = state_with(lot("march", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"))
    lots.pay(state, 50 * C - 1, t("2026-03-20T00:00:00Z"), t("2026-03-20T00:00:00Z"))
    lots.expire_lots(state, t("2026-04-01T00:00:00Z"))  # 1 µcr written off
    lots.add_lot(state, lot("april", "monthly", 50 * C, "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"))
    lots.add_lot(state, lot("check-in", "event", 5 * C, "2026-04-01T10:00:00Z", "2026-04-20T00:00:00Z"))
    paid, debt = lots.pay(state, 6 * C, t("2026-03-31T23:00:00Z"), t("2026-04-02T00:00:00Z"))
    assert amounts(paid) == [("march", 1), ("check-in", 5 * C), ("april", C - 1)] and debt == 0
    assert_conserved(state)


def test_a_correction_returns_to_what_each_lot_spent_skipping_lots_that_spent_nothing() -> None:
    state = state_with(lot("m", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
                       lot("b", "purchased", 10 * C, "2026-03-02T00:00:00Z"),
                       lot("new", "purchased", 10 * C, "2026-03-03T00:00:00Z"),
                       lot("future", "purchased", 10 * C, "2026-03-15T00:00:00Z"))
    lots.pay(state, 54 * C, MARCH_10, MARCH_10)  # m 50, b 4 (6 remain); `new` nothing
    back, _, _ = lots.give_back(state, 8 * C, MARCH_10)  # `future` was not usable then
    assert amounts(back) == [("b", 4 * C), ("m", 4 * C)]
    back, _, _ = lots.give_back(state, 1, MARCH_10)
    assert amounts(back) == [("m", 1)]
    assert_conserved(state)


def test_a_correction_to_two_lots_expired_since_writes_off_both_parts() -> None:
    state = state_with(lot("m", "monthly", 50 * C, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
                       lot("e", "event", 5 * C, "2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z"))
    lots.pay(state, 10 * C, MARCH_10, MARCH_10)  # e 5, m 5
    lots.expire_lots(state, t("2026-04-01T00:00:00Z"))
    back, forgiven, written_off = lots.give_back(state, 8 * C, MARCH_10)
    assert amounts(back) == [("m", 5 * C), ("e", 3 * C)] and (forgiven, written_off) == (0, 8 * C)
    assert_conserved(state)
