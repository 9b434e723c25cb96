"""Worked examples of billing-rules.md on in-memory accounts (every figure derived by hand)."""

from __future__ import annotations

from billing.domain import credits, projection, settle
from tests.domain.accounts import GIB, Account, C, assert_conserved, t


def test_small_run_with_code_supporter_storage_and_traffic():
    a = Account("2026-03-01T00:00:00Z")
    a.create("2026-03-05T10:00:00Z", "c1", 20)
    a.start("2026-03-05T10:00:00Z", "c1", "r1", "small", code_supporter=True)
    stop = a.stop("2026-03-05T12:30:00Z", "c1", "r1", traffic=12 * GIB)
    (deduction,) = stop.entries
    assert {ln.item: ln.amount for ln in deduction.lines} == {
        "small": 17_000_000,  # 6.80 x 2.5 h
        "code_supporter": 4_900_000,  # 1.96 x 2.5 h
        "storage": 675_000,  # (20 - 5) GB x 0.018 x 2.5 h
        "traffic": 16_000_000,  # (12 - 10) GiB x 8
    }
    assert a.state.available() == 50 * C - 38_575_000
    assert_conserved(a.state)


def test_a_month_boundary_settles_as_of_the_months_last_second_then_expires_and_grants():
    a = Account("2026-03-15T00:00:00Z", plan="membership")
    a.start("2026-03-31T22:00:00Z", "c1", "r1", "medium")
    a.stop("2026-04-01T01:30:00Z", "c1", "r1")
    march, april = a.of_type("deduction")
    assert (march.amount, march.at) == (27_200_000, t("2026-03-31T23:59:59Z"))
    assert march.paid_by[0].lot_id == "monthly-2026-03"
    assert [e.amount for e in a.of_type("expiry")] == [972_800_000]
    assert (april.amount, april.paid_by[0].lot_id) == (20_400_000, "monthly-2026-04")
    assert a.state.available() == 1000 * C - 20_400_000
    assert_conserved(a.state)


def test_running_out_settles_everything_and_asks_the_platform_to_stop():
    a = Account("2026-03-01T00:00:00Z")
    a.create("2026-03-02T10:00:00Z", "c1", 8)  # 3 GB billable
    a.start("2026-03-02T10:00:00Z", "c1", "r1", "large")
    stop = a.stop("2026-03-02T12:00:00Z", "c1", "r1")
    # large 27.20 x 2 h = 54.4 + storage 3 GB x 0.018 x 2 h = 0.108: 4.508 beyond the 50 credits
    assert a.state.debt == 4_508_000 and a.state.exhausted
    # ... and, since nothing remains against 0.054 credits an hour of storage, the low-credit mail.
    assert [e.detail_type for e in stop.outbox] == [
        "Container Inactivation Requested", "Credits Exhausted", "Low Balance Notified"]
    exhausted = stop.outbox[1].detail
    assert (exhausted["account_id"], exhausted["debt"]) == ("acct", "4.508000")
    (mail,) = [e for e in stop.effects if e not in stop.outbox]
    # buy: nothing owed + a day at 0.054/h = 1.296 -> 2 whole credits, raised to the purchase minimum 50
    assert mail.data == {"remaining": "0.000000", "hourly_burn": "0.054000", "hours_left": 0.0, "buy": 50}
    assert_conserved(a.state)


def test_a_late_stop_after_a_boundary_settlement_is_corrected():
    a = Account("2026-03-01T00:00:00Z", plan="membership")
    a.start("2026-03-31T22:00:00Z", "c1", "r1", "large")
    a.do(settle.sweep, "2026-04-01T00:00:00Z")  # the monthly job bills the run to the boundary: 54.4
    a.stop("2026-03-31T23:00:00Z", "c1", "r1")  # the stop, late: it ran 1 h, 27.2 is given back
    (correction,) = a.of_type("correction")
    assert correction.amount == 27_200_000
    assert a.state.totals.charged == 27_200_000
    assert_conserved(a.state)


def test_refunds_round_up_to_the_cent():
    # 100 credits for 200 cents; 33.333333 unused -> 66.6666... cents -> 67
    assert credits.refund_cents(200, 100, 33_333_333) == 67


def test_the_projection_rolls_a_copy_and_prices_what_accrued():
    a = Account("2026-03-01T00:00:00Z")
    a.start("2026-03-31T23:00:00Z", "c1", "r1", "micro")
    seen = projection.project(a.state, a.catalog, t("2026-04-01T00:30:00Z"))
    # The boundary settles 1 h of micro (1.96) from March; April's 50 credits; 30 min accrued since.
    assert seen.available == 50 * C and seen.accrued == 980_000 and seen.remaining == 49_020_000
    assert seen.hourly_burn == 1_960_000
    assert a.state.as_of == t("2026-03-31T23:00:00Z")  # the account itself did not move
