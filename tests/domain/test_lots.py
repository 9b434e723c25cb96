"""The burn-down order, debt, grants that repay debt, expiry (billing-rules.md, "Credit lots")."""

from __future__ import annotations

from billing.domain import lots
from billing.domain.model import AccountState, CreditLot
from tests.domain.accounts import C, assert_conserved, t


def state_with(*lot_list: CreditLot) -> AccountState:
    state = AccountState(account_id="a", email="a@example.com", created_at=t("2026-03-01T00:00:00Z"),
                         plans=[(t("2026-03-01T00:00:00Z"), "free")], as_of=t("2026-03-10T00:00:00Z"))
    for lot in lot_list:
        lots.add_lot(state, lot)
    return state


def lot(lot_id: str, kind: str, credits: int, granted: str, expires: str | None) -> CreditLot:
    return CreditLot(lot_id=lot_id, kind=kind, granted=credits * C, remaining=credits * C,  # type: ignore[arg-type]
                     granted_at=t(granted), expires_at=t(expires) if expires else None)


def test_free_credits_first_soonest_expiry_first_then_purchased_oldest_first():
    state = state_with(
        lot("bought-old", "purchased", 10, "2026-01-05T00:00:00Z", None),
        lot("bought-new", "purchased", 10, "2026-02-05T00:00:00Z", None),
        lot("check-in", "event", 5, "2026-03-05T00:00:00Z", "2026-04-05T00:00:00Z"),
        lot("monthly", "monthly", 50, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
    )
    paid, debt = lots.pay(state, 60 * C, t("2026-03-10T00:00:00Z"), t("2026-03-10T00:00:00Z"))
    assert [(p.lot_id, p.amount) for p in paid] == [("monthly", 50 * C), ("check-in", 5 * C), ("bought-old", 5 * C)]
    assert debt == 0
    assert_conserved(state)


def test_a_charge_beyond_the_balance_empties_every_lot_and_the_rest_is_debt_repaid_by_the_next_grant():
    state = state_with(lot("monthly", "monthly", 50, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"))
    _, debt = lots.pay(state, 56_500_000, t("2026-03-10T00:00:00Z"), t("2026-03-10T00:00:00Z"))
    assert debt == 6_500_000 and state.debt == 6_500_000 and state.available(t("2026-03-10T00:00:00Z")) == 0
    repaid = lots.add_lot(state, lot("grant", "event", 10, "2026-03-11T00:00:00Z", None))
    assert repaid == 6_500_000 and state.debt == 0
    assert state.available(t("2026-03-11T00:00:00Z")) == 3_500_000
    assert_conserved(state)


def test_expired_remainders_are_written_off():
    state = state_with(lot("monthly", "monthly", 50, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"))
    lots.pay(state, 20 * C, t("2026-03-10T00:00:00Z"), t("2026-03-10T00:00:00Z"))
    expired = lots.expire_lots(state, t("2026-04-01T00:00:00Z"))
    assert [(x.lot_id, x.expired) for x in expired] == [("monthly", 30 * C)]
    assert state.totals.expired == 30 * C
    assert_conserved(state)


def test_a_correction_forgives_debt_first_then_returns_credits_in_reverse_burn_order():
    state = state_with(
        lot("monthly", "monthly", 50, "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
        lot("bought", "purchased", 10, "2026-03-02T00:00:00Z", None),
    )
    lots.pay(state, 63 * C, t("2026-03-10T00:00:00Z"), t("2026-03-10T00:00:00Z"))  # 3 credits of debt
    back, forgiven, written_off = lots.give_back(state, 8 * C, t("2026-03-10T00:00:00Z"))
    assert forgiven == 3 * C and written_off == 0
    assert [(p.lot_id, p.amount) for p in back] == [("bought", 5 * C)]  # spent last, returned first
    assert_conserved(state)
