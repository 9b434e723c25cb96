"""Worked examples of container settlement, each number computed by hand from billing-rules.md.

Rates used (catalog defaults): small 6.80 cr/h, medium 13.60, large 27.20, micro 1.96; Code
Supporter 1.96 cr/h; storage 0.018 cr per GB-hour above 5 GB (Free) / 15 GB (Membership); traffic
8 cr per GiB beyond 10 GiB a month; monthly credits Free 50, Membership 1,000.
"""

from __future__ import annotations

import pytest

from billing.domain.clock import add_one_month, parse_time
from billing.domain.errors import ServiceBusy
from tests.helpers import GIB, C, Platform, assert_conserved, grant


def open_free(p: Platform, at: str = "2026-03-01T00:00:00Z") -> None:
    p.send("Account Created", at, email="dev@example.com", plan="free")


def test_small_run_with_code_supporter_storage_and_traffic_beyond_allowance(ledger):
    p = Platform(ledger)
    open_free(p)
    # 9 GiB of traffic already used this month by another container (5 GB: within the allowance).
    p.send("Container Created", "2026-03-05T08:00:00Z", container_id="c0", storage_gb=5)
    p.send("Container Started", "2026-03-05T08:00:00Z", container_id="c0", run_id="r0", tier="micro",
           code_supporter=False)
    p.send("Container Stopped", "2026-03-05T08:30:00Z", container_id="c0", run_id="r0", traffic_bytes=9 * GIB)
    # micro 1.96 cr/h x 0.5 h = 0.98 credits; 9 GiB is within the 10 GiB allowance.
    assert p.state().available() == 50 * C - 980_000

    p.send("Container Created", "2026-03-05T10:00:00Z", container_id="c1", storage_gb=20)
    p.send("Container Started", "2026-03-05T10:00:00Z", container_id="c1", run_id="r1", tier="small",
           code_supporter=True)
    p.send("Container Stopped", "2026-03-05T12:30:00Z", container_id="c1", run_id="r1", traffic_bytes=3 * GIB)

    stop = [e for e in p.entries() if e.event_id == p.entries()[-1].event_id]
    assert [e.type for e in stop] == ["deduction"]
    by_item = {line.item: line.amount for line in stop[0].lines}
    assert by_item == {
        "small": 17_000_000,  # 6.80 x 2.5 h
        "code_supporter": 4_900_000,  # 1.96 x 2.5 h
        "storage": 675_000,  # (20 - 5) GB x 0.018 x 2.5 h
        "traffic": 16_000_000,  # (9 + 3 - 10) GiB x 8
    }
    assert stop[0].amount == 38_575_000
    assert stop[0].paid_by[0].lot_id == "monthly-2026-03"
    state = p.state()
    assert state.available() == 50 * C - 980_000 - 38_575_000  # 10.445000 credits
    assert state.traffic_used["2026-03"] == 12 * GIB
    assert_conserved(state)


def test_run_across_a_month_boundary_is_split_and_paid_by_each_month(ledger):
    p = Platform(ledger)
    p.send("Account Created", "2026-03-15T00:00:00Z", email="m@example.com", plan="membership")
    p.send("Container Created", "2026-03-15T00:00:00Z", container_id="c1", storage_gb=10)  # within 15 GB
    p.send("Container Started", "2026-03-31T22:00:00Z", container_id="c1", run_id="r1", tier="medium",
           code_supporter=False)
    p.send("Container Stopped", "2026-04-01T01:30:00Z", container_id="c1", run_id="r1", traffic_bytes=0)

    entries = p.entries()
    deductions = [e for e in entries if e.type == "deduction"]
    # March: 22:00 -> 24:00 = 2 h x 13.60 = 27.2, paid as of the month's last second by March's lot.
    march = next(e for e in deductions if e.lines[0].month == "2026-03")
    assert march.amount == 27_200_000
    assert march.at == parse_time("2026-03-31T23:59:59Z")
    assert [(x.lot_id, x.amount) for x in march.paid_by] == [("monthly-2026-03", 27_200_000)]
    # March's lot expires with 1000 - 27.2 = 972.8 left; April's lot of 1000 is granted.
    expiry = next(e for e in entries if e.type == "expiry")
    assert expiry.amount == 972_800_000 and expiry.lot_id == "monthly-2026-03"
    # April: 00:00 -> 01:30 = 1.5 h x 13.60 = 20.4, paid by April's lot.
    april = next(e for e in deductions if e.lines[0].month == "2026-04")
    assert april.amount == 20_400_000
    assert [(x.lot_id, x.amount) for x in april.paid_by] == [("monthly-2026-04", 20_400_000)]
    state = p.state()
    assert state.available() == 1000 * C - 20_400_000
    assert_conserved(state)


def test_run_paid_partly_by_a_check_in_lot(ledger):
    p = Platform(ledger)
    open_free(p)
    # A check-in on March 10: 5 credits valid one month (to April 10), so it burns after the
    # monthly lot, which expires sooner (April 1).
    at = parse_time("2026-03-10T09:00:00Z")
    grant(ledger, p.account_id, "checkin-1", at, "event", 5 * C, add_one_month(at), "daily_check_in")
    p.send("Container Created", "2026-03-10T10:00:00Z", container_id="c1", storage_gb=5)
    p.send("Container Started", "2026-03-10T10:00:00Z", container_id="c1", run_id="r1", tier="large",
           code_supporter=False)
    p.send("Container Stopped", "2026-03-10T12:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    # large 27.20 x 2 h = 54.4: the monthly lot pays 50, the check-in lot 4.4 and keeps 0.6.
    stop = [e for e in p.entries() if e.type == "deduction"][-1]
    assert stop.amount == 54_400_000
    assert [(x.lot_id, x.amount) for x in stop.paid_by] == [
        ("monthly-2026-03", 50_000_000),
        ("event-checkin-1", 4_400_000),
    ]
    state = p.state()
    check_in_lot = next(lot for lot in state.lots if lot.lot_id == "event-checkin-1")
    assert check_in_lot.remaining == 600_000
    assert check_in_lot.expires_at == parse_time("2026-04-10T09:00:00Z")
    assert state.debt == 0 and not state.exhausted
    assert_conserved(state)


def test_run_that_exhausts_the_credits(ledger):
    p = Platform(ledger)
    open_free(p)
    p.send("Container Created", "2026-03-02T10:00:00Z", container_id="c1", storage_gb=5)
    p.send("Container Created", "2026-03-02T10:00:00Z", container_id="c2", storage_gb=8)  # 3 GB billable
    p.send("Container Created", "2026-03-02T10:00:00Z", container_id="c3", storage_gb=5)
    p.send("Container Started", "2026-03-02T10:00:00Z", container_id="c1", run_id="r1", tier="large",
           code_supporter=False)
    p.send("Container Started", "2026-03-02T11:00:00Z", container_id="c3", run_id="r3", tier="micro",
           code_supporter=False)
    # A start settles only that container's storage (c3: within the allowance): nothing yet.
    assert p.state().available() == 50 * C
    p.send("Container Stopped", "2026-03-02T12:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    # c1: 27.20 x 2 h = 54.4 > 50 available: final settlement at 12:00 of everything else:
    # c3 micro 1 h = 1.96, c2 storage 3 GB x 0.018 x 2 h = 0.108. Debt = 54.4 + 1.96 + 0.108 - 50.
    state = p.state()
    assert state.available() == 0
    assert state.debt == 54_400_000 + 1_960_000 + 108_000 - 50_000_000  # 6.468 credits
    assert state.exhausted
    assert p.publisher.of_type("Stop Containers Requested") == [
        {"account_id": "acct-1", "container_ids": ["c3"], "reason": "credits_exhausted"}
    ]
    assert p.publisher.of_type("Container Inactivation Requested") == [
        {"account_id": "acct-1", "container_id": "c2", "reason": "credits_exhausted"}
    ]
    assert p.publisher.of_type("Credits Exhausted") == [{"account_id": "acct-1", "debt": "6.468000"}]
    types = [e.type for e in p.entries() if e.at == parse_time("2026-03-02T12:00:00Z")]
    assert types.count("debt") == 2  # the stop's unpaid part and the final settlement's

    # The platform stops c3 ten minutes later: 1.96 / 6 = 0.32666... rounds half-up to 0.326667.
    p.send("Container Stopped", "2026-03-02T12:10:00Z", container_id="c3", run_id="r3", traffic_bytes=0)
    state = p.state()
    assert state.debt == 6_468_000 + 326_667
    assert_conserved(state)

    # A grant pays the debt first and ends the exhausted state.
    grant(ledger, p.account_id, "grant-1", parse_time("2026-03-02T13:00:00Z"), "event", 10 * C, None, "support")
    state = p.state()
    assert state.debt == 0 and not state.exhausted
    assert state.available() == 10 * C - 6_794_667
    assert_conserved(state)


def test_storage_accrues_while_stopped_and_is_deducted_at_start(ledger):
    p = Platform(ledger)
    p.send("Account Created", "2026-03-01T00:00:00Z", email="m@example.com", plan="membership")
    p.send("Container Created", "2026-03-03T00:00:00Z", container_id="c1", storage_gb=25)  # 10 GB billable
    p.send("Container Started", "2026-03-04T00:00:00Z", container_id="c1", run_id="r1", tier="micro",
           code_supporter=True)
    start = [e for e in p.entries() if e.type == "deduction"][-1]
    # 10 GB x 0.018 x 24 h = 4.32 credits, deducted at the start.
    assert [(x.item, x.amount) for x in start.lines] == [("storage", 4_320_000)]
    p.send("Container Inactivated", "2026-03-05T00:00:00Z", container_id="c1")
    p.send("Container Reactivated", "2026-03-06T00:00:00Z", container_id="c1")
    p.send("Container Deleted", "2026-03-06T12:00:00Z", container_id="c1")
    deductions = [e for e in p.entries() if e.type == "deduction"]
    storage = [line.amount for e in deductions for line in e.lines if line.item == "storage"]
    # Mar 4 -> 5 billed at inactivation (4.32); nothing while inactive; Mar 6 00:00 -> 12:00 is 2.16.
    assert storage == [4_320_000, 4_320_000, 2_160_000]


def test_plan_change_settles_everything_and_applies_the_new_allowance(ledger):
    p = Platform(ledger)
    open_free(p)
    p.send("Container Created", "2026-03-02T00:00:00Z", container_id="c1", storage_gb=20)
    p.send("Container Started", "2026-03-02T00:00:00Z", container_id="c1", run_id="r1", tier="small",
           code_supporter=False)
    p.send("Plan Changed", "2026-03-02T01:00:00Z", plan="membership")
    change = [e for e in p.entries() if e.type == "deduction"][-1]
    # Everything accrued: 1 h small (6.8) and 15 GB above the Free allowance for 1 h (0.27).
    assert {x.item: x.amount for x in change.lines} == {"small": 6_800_000, "storage": 270_000}
    p.send("Container Stopped", "2026-03-02T03:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    stop = [e for e in p.entries() if e.type == "deduction"][-1]
    # Membership allows 15 GB: 5 GB billable for 2 h = 0.18; time 2 h small = 13.6.
    assert {x.item: x.amount for x in stop.lines} == {"small": 13_600_000, "storage": 180_000}
    state = p.state()
    assert state.plan == "membership"
    # The current month's lot stays as it is (50, Free); the new amount comes with next month.
    assert [lot.granted for lot in state.lots] == [50 * C]


def test_a_late_plan_change_reprices_the_storage_of_every_running_container(ledger):
    """Membership's 15 GB allowance applies from the change's own time for each container whose
    storage was billed past it, not only the first one re-priced."""
    p = Platform(ledger)
    open_free(p)
    for cid, gb, run in (("c1", 20, "r1"), ("c2", 25, "r2")):
        p.send("Container Created", "2026-03-02T00:00:00Z", container_id=cid, storage_gb=gb)
        p.send("Container Started", "2026-03-02T00:00:00Z", container_id=cid, run_id=run, tier="small",
               code_supporter=False)
    # A label at 03:00 settles each container to 03:00 (both keep running): small 3 h x 6.8 = 20.4
    # each; storage above Free's 5 GB: c1 15 GB x 3 h x 0.018 = 0.81, c2 20 GB x 3 h x 0.018 = 1.08.
    p.send("Container Labeled", "2026-03-02T03:00:00Z", container_id="c1", labels={"team": "a"})
    p.send("Container Labeled", "2026-03-02T03:00:00Z", container_id="c2", labels={"team": "b"})
    charged = 2 * 20_400_000 + 810_000 + 1_080_000  # 42.69
    assert p.state().available() == 50 * C - charged

    # Membership from 01:00, delivered at 03:00 (2 h late): 01:00 -> 03:00 is re-priced at 15 GB
    # allowance. c1: 15 -> 5 billable GB, 10 GB x 2 h x 0.018 = 0.36 back; c2: 20 -> 10 GB, 0.36 back.
    p.send("Plan Changed", "2026-03-02T01:00:00Z", "late-plan", plan="membership")
    [correction] = [e for e in p.entries() if e.event_id == "late-plan"]
    assert (correction.type, correction.amount) == ("correction", 720_000)
    assert sorted((x.container_id, x.item, x.amount, x.storage_gb, x.billable_gb) for x in correction.lines) == [
        ("c1", "storage", 360_000, 20, 5), ("c2", "storage", 360_000, 25, 10)]
    state = p.state()
    assert state.available() == 50 * C - charged + 720_000  # 8.03
    assert state.totals.charged == charged - 720_000
    assert_conserved(state)

    # From 03:00 on both are priced at Membership's allowance: stopped at 03:30, c1 5 GB x 0.5 h x
    # 0.018 = 0.045 and c2 10 GB x 0.5 h x 0.018 = 0.09 of storage, each with small 0.5 h = 3.4.
    for cid, run in (("c1", "r1"), ("c2", "r2")):
        p.send("Container Stopped", "2026-03-02T03:30:00Z", container_id=cid, run_id=run, traffic_bytes=0)
    state = p.state()
    assert state.available() == 50 * C - charged + 720_000 - 2 * 3_400_000 - 45_000 - 90_000  # 1.095
    assert_conserved(state)


def test_stop_delivered_before_its_start_charges_the_same(ledger):
    p = Platform(ledger)
    open_free(p)
    p.send("Container Created", "2026-03-02T10:00:00Z", container_id="c1", storage_gb=5)
    p.send("Container Stopped", "2026-03-02T11:30:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    assert p.state().available() == 50 * C  # nothing known to charge yet
    p.send("Container Started", "2026-03-02T10:00:00Z", container_id="c1", run_id="r1", tier="small",
           code_supporter=True)
    # (6.80 + 1.96) x 1.5 h = 13.14 credits
    assert p.state().available() == 50 * C - 13_140_000
    assert not p.container("c1").runs  # the run is complete


def test_duplicate_events_charge_once(ledger):
    p = Platform(ledger)
    open_free(p)
    p.send("Container Started", "2026-03-02T10:00:00Z", event_id="start-1", container_id="c1", run_id="r1",
           tier="small", code_supporter=False)
    first = p.send("Container Stopped", "2026-03-02T11:00:00Z", event_id="stop-1", container_id="c1",
                   run_id="r1", traffic_bytes=0)
    again = p.send("Container Stopped", "2026-03-02T11:00:00Z", event_id="stop-1", container_id="c1",
                   run_id="r1", traffic_bytes=0)
    p.send("Container Started", "2026-03-02T10:00:00Z", event_id="start-1", container_id="c1", run_id="r1",
           tier="small", code_supporter=False)
    assert first["duplicate"] is False and again["duplicate"] is True
    assert p.state().available() == 50 * C - 6_800_000
    assert len([e for e in p.entries() if e.type == "deduction"]) == 1


def test_late_created_bills_storage_from_its_creation_time(ledger):
    p = Platform(ledger)
    open_free(p)
    p.send("Container Started", "2026-03-02T10:00:00Z", container_id="c1", run_id="r1", tier="micro",
           code_supporter=False)
    p.send("Container Created", "2026-03-02T08:00:00Z", container_id="c1", storage_gb=15)
    # Created at 08:00 with 10 GB billable: 10 x 0.018 x 2 h (08:00 -> 10:00, the last event seen).
    assert p.state().available() == 50 * C - 360_000
    p.send("Container Stopped", "2026-03-02T11:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    # + 1 h micro (1.96) + 1 h storage (0.18)
    assert p.state().available() == 50 * C - 360_000 - 1_960_000 - 180_000


def test_stop_older_than_an_already_settled_boundary_is_corrected(ledger):
    p = Platform(ledger)
    p.send("Account Created", "2026-03-15T00:00:00Z", email="m@example.com", plan="membership")
    p.send("Container Started", "2026-03-31T20:00:00Z", container_id="c1", run_id="r1", tier="medium",
           code_supporter=False)
    # The monthly job settles the running container up to the boundary: 4 h x 13.6 = 54.4.
    sweep = load_sweep()
    sweep(ledger, p)
    state = p.state()
    assert state.as_of == parse_time("2026-04-01T00:00:00Z")
    assert state.totals.charged == 54_400_000
    # The stop (22:00) arrives late: 2 h were billed that did not run: a correction of 27.2.
    p.send("Container Stopped", "2026-03-31T22:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    entries = p.entries()
    correction = next(e for e in entries if e.type == "correction")
    assert correction.amount == 27_200_000
    assert [(x.item, x.seconds) for x in correction.lines] == [("medium", 7200)]
    state = p.state()
    assert state.totals.charged == 27_200_000  # exactly the 2 h that ran
    # March's lot paid and has expired: the credits go back to it and stay written off;
    # April's lot is untouched.
    assert state.available() == 1000 * C
    assert_conserved(state)
    # A repeated monthly job changes nothing.
    sweep(ledger, p)
    assert p.state().totals.charged == 27_200_000


def load_sweep():
    from billing.services.settlement import settle_account

    def sweep(ledger, p):
        settle_account(p.account_id, parse_time("2026-04-01T00:00:00Z"), "sweep:month:2026-04", ledger)

    return sweep


def test_deleting_a_running_container_ends_its_run(ledger):
    p = Platform(ledger)
    open_free(p)
    p.send("Container Created", "2026-03-02T10:00:00Z", container_id="c1", storage_gb=5)
    p.send("Container Started", "2026-03-02T10:00:00Z", container_id="c1", run_id="r1", tier="small",
           code_supporter=False)
    p.send("Container Deleted", "2026-03-02T10:30:00Z", container_id="c1")
    # small 6.80 x 0.5 h = 3.4 credits, and nothing more after the deletion, even past a boundary.
    assert p.state().totals.charged == 3_400_000
    load_sweep()(ledger, p)
    assert p.state().totals.charged == 3_400_000


def test_an_account_untouched_for_years_is_caught_up_month_by_month(ledger):
    """26 boundaries with 5 containers would be ~230 items in one transaction (the limit is 100):
    they are committed a month at a time, at most 12 per invocation; the trigger's retry goes on."""
    p = Platform(ledger)
    p.send("Account Created", "2024-01-01T00:00:00Z", email="old@example.com", plan="free")
    for i in range(5):
        p.send("Container Created", "2024-01-01T00:00:00Z", container_id=f"c{i}", storage_gb=15)
    deleted = p.event("Container Deleted", "2026-03-01T00:00:00Z", container_id="c0")
    with pytest.raises(ServiceBusy):  # 12 months are committed, then the invocation fails as busy
        p.deliver(deleted)
    assert p.state().as_of == parse_time("2025-01-01T00:00:00Z")
    p.deliver(deleted)  # the trigger's retry: 5 more months alone, then the last 9 with the deletion
    state = p.state()
    # 5 containers x 10 GB above the Free allowance x 0.018 credits x 18,960 h (790 days) = 17,064 credits
    assert state.totals.charged == 5 * 10 * 18_000 * 18_960
    assert state.as_of == parse_time("2026-03-01T00:00:00Z")
    grants = [e for e in p.entries() if e.type == "grant"]
    assert len(grants) == 27  # the creation month and 26 monthly grants, each once
    assert ledger.stored(p.account_id, "roll:2024-02") is not None  # committed on its own
    assert_conserved(state)


def test_late_resizes_restate_storage_already_billed(ledger):
    """A resize applies from its own time: storage billed past it is re-priced, the difference
    charged (a larger size) or corrected back to the lots (a smaller one)."""
    p = Platform(ledger)
    open_free(p)
    p.send("Container Created", "2026-03-02T00:00:00Z", container_id="c1", storage_gb=20)
    p.send("Container Started", "2026-03-02T10:00:00Z", container_id="c1", run_id="r1", tier="small",
           code_supporter=False)
    # Storage 00:00 -> 10:00: (20 - 5) GB x 10 h x 0.018 = 2.7
    assert p.state().available() == 50 * C - 2_700_000
    p.send("Container Stopped", "2026-03-02T12:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    # small 2 h x 6.8 = 13.6, storage 15 GB x 2 h x 0.018 = 0.54
    assert p.state().available() == 50 * C - 2_700_000 - 14_140_000

    # Resized to 30 GB at 11:00, delivered after storage was billed to 12:00: 11:00 -> 12:00 is
    # re-priced at 25 GB instead of 15: 10 GB x 1 h x 0.018 = 0.18 more.
    p.send("Container Resized", "2026-03-02T11:00:00Z", "resize-30", container_id="c1", storage_gb=30)
    [last] = [e for e in p.entries() if e.event_id == "resize-30"]  # dated 11:00, the resize's time
    assert (last.type, last.amount) == ("deduction", 180_000)
    assert [(x.item, x.seconds, x.storage_gb, x.billable_gb) for x in last.lines] == [("storage", 3600, 30, 25)]
    assert p.state().available() == 50 * C - 2_700_000 - 14_140_000 - 180_000

    # Resized to 8 GB at 05:00 (an even older fact): 05:00 -> 11:00 drops from 15 to 3 billable GB,
    # 11:00 -> 12:00 stays at 30 GB. Before 15 x 6 + 25 x 1 = 115 GB-h (2.07), after 3 x 6 + 25 x 1
    # = 43 GB-h (0.774): a correction of 1.296 back to March's lot.
    p.send("Container Resized", "2026-03-02T05:00:00Z", "resize-8", container_id="c1", storage_gb=8)
    [correction] = [e for e in p.entries() if e.event_id == "resize-8"]
    assert (correction.type, correction.amount) == ("correction", 1_296_000)
    assert [(x.item, x.start, x.end) for x in correction.lines] == [
        ("storage", parse_time("2026-03-02T05:00:00Z"), parse_time("2026-03-02T12:00:00Z"))
    ]
    state = p.state()
    assert state.available() == 50 * C - 2_700_000 - 14_140_000 - 180_000 + 1_296_000  # 34.276
    assert_conserved(state)

    # From 12:00 on the latest size (30 GB) counts: 25 GB x 2 h x 0.018 = 0.9 until the next start.
    p.send("Container Started", "2026-03-02T14:00:00Z", container_id="c1", run_id="r2", tier="small",
           code_supporter=False)
    state = p.state()
    assert state.available() == 34_276_000 - 900_000
    assert state.totals.charged == 2_700_000 + 14_140_000 + 180_000 - 1_296_000 + 900_000
    assert_conserved(state)
