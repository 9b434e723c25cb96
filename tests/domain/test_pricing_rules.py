"""Charge lines by hand (billing-rules.md, "Price catalog", "Units and exactness", "Traffic"): every
piece priced by the catalog version in effect and its month, storage above the plan's allowance
following every fact of the container's timeline, traffic beyond the month's 10 GB."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from billing.domain import pricing
from billing.domain.catalog import PriceCatalog, load_catalog
from billing.domain.model import AccountState, Container, Run
from tests.domain.accounts import GIB, t

CATALOG = load_catalog()
V1 = CATALOG.versions[0]
# A second version from April 10: every rate doubled, Membership's allowance 20 GB.
V2 = replace(V1, version="v2", effective_at=t("2026-04-10T00:00:00Z"),
             tiers={name: replace(p, credits_per_hour=p.credits_per_hour * 2) for name, p in V1.tiers.items()},
             code_supporter_credits_per_hour=V1.code_supporter_credits_per_hour * 2,
             storage_credits_per_gb_hour=V1.storage_credits_per_gb_hour * 2,
             traffic_credits_per_gb=V1.traffic_credits_per_gb * 2,
             free_storage_gb={"free": 5, "membership": 20})
TWO = PriceCatalog([V2, V1])


def account(plan: str = "free", *changes: tuple[str, str]) -> AccountState:
    return AccountState(account_id="a", email="a@example.com", created_at=t("2026-03-01T00:00:00Z"),
                        plans=[(t("2026-03-01T00:00:00Z"), plan), *((t(at), p) for at, p in changes)],  # type: ignore[misc]
                        as_of=t("2026-03-01T00:00:00Z"))


def test_pieces_are_cut_at_each_month_boundary_and_version_change() -> None:
    assert pricing.pieces(TWO, t("2026-03-31T23:00:00Z"), t("2026-05-01T00:00:10Z")) == [
        (t("2026-03-31T23:00:00Z"), t("2026-04-01T00:00:00Z")),
        (t("2026-04-01T00:00:00Z"), t("2026-04-10T00:00:00Z")),
        (t("2026-04-10T00:00:00Z"), t("2026-05-01T00:00:00Z")),
        (t("2026-05-01T00:00:00Z"), t("2026-05-01T00:00:10Z")),
    ]
    # ending exactly at a boundary: no empty piece after it; an empty interval has none
    assert pricing.pieces(CATALOG, t("2026-03-31T23:00:00Z"), t("2026-04-01T00:00:00Z")) == [
        (t("2026-03-31T23:00:00Z"), t("2026-04-01T00:00:00Z"))]
    assert pricing.pieces(CATALOG, t("2026-03-05T00:00:00Z"), t("2026-03-05T00:00:00Z")) == []
    assert pricing.pieces(TWO, t("2026-12-31T23:00:00Z"), t("2027-01-01T01:00:00Z")) == [
        (t("2026-12-31T23:00:00Z"), t("2027-01-01T00:00:00Z")), (t("2027-01-01T00:00:00Z"), t("2027-01-01T01:00:00Z"))]


def test_a_run_over_a_price_change_is_priced_by_each_version() -> None:
    lines = pricing.run_lines(TWO, Container(container_id="c"), Run(run_id="r", tier="medium", code_supporter=True),
                              t("2026-04-09T23:00:00Z"), t("2026-04-10T00:30:00Z"))
    assert [(ln.item, ln.month, ln.seconds, ln.amount, ln.start, ln.end) for ln in lines] == [
        ("medium", "2026-04", 3600, 13_600_000, t("2026-04-09T23:00:00Z"), t("2026-04-10T00:00:00Z")),
        ("code_supporter", "2026-04", 3600, 1_960_000, t("2026-04-09T23:00:00Z"), t("2026-04-10T00:00:00Z")),
        ("medium", "2026-04", 1800, 13_600_000, t("2026-04-10T00:00:00Z"), t("2026-04-10T00:30:00Z")),  # 27.2 x 0.5
        ("code_supporter", "2026-04", 1800, 1_960_000, t("2026-04-10T00:00:00Z"), t("2026-04-10T00:30:00Z")),
    ]
    first = lines[0]
    assert (first.resource, first.container_id, first.run_id, first.tier, first.code_supporter, first.labels) == (
        "container", "c", "r", "medium", True, None)


def test_each_tier_at_its_hourly_rate_and_code_supporter_only_when_on() -> None:
    rates = {"micro": 1_960_000, "small": 6_800_000, "medium": 13_600_000, "large": 27_200_000,
             "xlarge": 54_400_000, "gpu-t4": 51_760_000}
    for tier, hourly in rates.items():
        [line] = pricing.run_lines(CATALOG, Container(container_id="c"), Run(run_id="r", tier=tier),
                                   t("2026-03-02T10:00:00Z"), t("2026-03-02T11:00:00Z"))
        assert (line.item, line.amount) == (tier, hourly)
    # 7 s of micro: 1.96 x 7 / 3600 = 0.0038111... -> 3,811 µcr; Code Supporter the same
    lines = pricing.run_lines(CATALOG, Container(container_id="c"), Run(run_id="r", tier="micro", code_supporter=True),
                              t("2026-03-02T10:00:00Z"), t("2026-03-02T10:00:07Z"))
    assert [(ln.item, ln.amount) for ln in lines] == [("micro", 3_811), ("code_supporter", 3_811)]


def container(**facts: object) -> Container:
    return Container(container_id="c", **facts)  # type: ignore[arg-type]


def test_billable_storage_is_the_allocation_above_the_plans_allowance_while_it_exists_and_is_active() -> None:
    state = account("free", ("2026-03-20T00:00:00Z", "membership"))
    c = container(created_at=t("2026-03-02T00:00:00Z"), sizes=[(t("2026-03-02T00:00:00Z"), 20)],
                  activity=[(t("2026-03-10T00:00:00Z"), False), (t("2026-03-12T00:00:00Z"), True)],
                  deleted_at=t("2026-03-25T00:00:00Z"))
    at = pricing.billable_gb_at
    assert at(CATALOG, state, c, t("2026-03-01T23:59:59Z")) == 0  # before its creation
    assert at(CATALOG, state, c, t("2026-03-02T00:00:00Z")) == 15  # 20 - 5 (Free)
    assert at(CATALOG, state, c, t("2026-03-10T00:00:00Z")) == 0  # inactive
    assert at(CATALOG, state, c, t("2026-03-12T00:00:00Z")) == 15
    assert at(CATALOG, state, c, t("2026-03-20T00:00:00Z")) == 5  # 20 - 15 (Membership)
    assert at(CATALOG, state, c, t("2026-03-24T23:59:59Z")) == 5
    assert at(CATALOG, state, c, t("2026-03-25T00:00:00Z")) == 0  # deleted
    small = container(created_at=t("2026-03-02T00:00:00Z"), sizes=[(t("2026-03-02T00:00:00Z"), 3)])
    assert at(CATALOG, state, small, t("2026-03-05T00:00:00Z")) == 0  # 3 GB within the 5 free: never negative
    exact = container(created_at=t("2026-03-02T00:00:00Z"), sizes=[(t("2026-03-02T00:00:00Z"), 5)])
    assert at(CATALOG, state, exact, t("2026-03-05T00:00:00Z")) == 0
    assert at(CATALOG, state, container(), t("2026-03-05T00:00:00Z")) == 0  # never created


def test_storage_follows_every_fact_of_the_timeline() -> None:
    """20 GB from 03-02, 30 GB from 03-03 12:00, inactive 03-04 .. 03-05, Membership from 03-06,
    deleted 03-07 (Free allowance 5 GB, Membership 15, 0.018 credits per GB-hour):
      03-02 00:00 - 03-03 12:00  36 h x 15 GB = 540 GB-h
      03-03 12:00 - 03-04 00:00  12 h x 25 GB = 300
      03-04 - 03-05 inactive     0
      03-05 - 03-06              24 h x 25 GB = 600
      03-06 - 03-07              24 h x 15 GB = 360
      total 1,800 GB-h x 0.018 = 32.4 credits"""
    state = account("free", ("2026-03-06T00:00:00Z", "membership"))
    c = container(created_at=t("2026-03-02T00:00:00Z"),
                  sizes=[(t("2026-03-02T00:00:00Z"), 20), (t("2026-03-03T12:00:00Z"), 30)],
                  activity=[(t("2026-03-04T00:00:00Z"), False), (t("2026-03-05T00:00:00Z"), True)],
                  deleted_at=t("2026-03-07T00:00:00Z"))
    exact = pricing.storage_amounts(CATALOG, state, c, t("2026-03-01T00:00:00Z"), t("2026-03-08T00:00:00Z"))
    assert exact == {("2026-03", ()): (32_400_000, (t("2026-03-01T00:00:00Z"), t("2026-03-08T00:00:00Z")))}
    line = pricing.storage_line(CATALOG, state, c, ("2026-03", ()), 32_400_000,
                                (t("2026-03-02T00:00:00Z"), t("2026-03-08T00:00:00Z")))
    assert (line.resource, line.item, line.amount, line.month, line.container_id, line.seconds, line.storage_gb,
            line.billable_gb, line.start, line.end, line.labels) == (
        "storage", "storage", 32_400_000, "2026-03", "c", 6 * 86400, 20, 15, t("2026-03-02T00:00:00Z"),
        t("2026-03-08T00:00:00Z"), None)


def test_storage_starts_at_the_creation_the_container_carries() -> None:
    """A size known from 03-01 (a resize delivered before the creation), created 03-02 12:00: 15 GB
    billable on Free from the creation only, 12 h to 03-03: 180 GB-h x 0.018 = 3.24."""
    state = account()
    c = container(created_at=t("2026-03-02T12:00:00Z"), sizes=[(t("2026-03-01T00:00:00Z"), 20)])
    exact = pricing.storage_amounts(CATALOG, state, c, t("2026-03-01T00:00:00Z"), t("2026-03-03T00:00:00Z"))
    assert exact[("2026-03", ())][0] == 3_240_000
    never = pricing.storage_amounts(CATALOG, state, container(sizes=[(t("2026-03-01T00:00:00Z"), 20)]),
                                  t("2026-03-01T00:00:00Z"), t("2026-03-03T00:00:00Z"))
    assert [value for value, _ in never.values()] == [0]  # never created: nothing


def test_a_storage_line_carries_its_labels() -> None:
    state = account()
    c = container(created_at=t("2026-03-02T00:00:00Z"), sizes=[(t("2026-03-02T00:00:00Z"), 20)])
    line = pricing.storage_line(CATALOG, state, c, ("2026-03", (("team", "a"),)), 5,
                                (t("2026-03-02T00:00:00Z"), t("2026-03-02T01:00:00Z")))
    assert (line.labels, line.seconds, line.amount) == ({"team": "a"}, 3600, 5)


def test_a_run_relabelled_is_attributed_to_each_label_interval() -> None:
    """(How the amount is split among the intervals is the attribution's rule, not pinned here.)"""
    c = container(labels=[(t("2026-03-02T10:00:00Z"), {"team": "a"}), (t("2026-03-02T10:30:00Z"), {"team": "b"})])
    lines = pricing.run_lines(CATALOG, c, Run(run_id="r", tier="small"), t("2026-03-02T10:00:00Z"),
                              t("2026-03-02T11:00:00Z"))
    assert [(ln.labels, ln.seconds) for ln in lines] == [({"team": "a"}, 1800), ({"team": "b"}, 1800)]
    assert sum(ln.amount for ln in lines) == 6_800_000


def test_storage_over_a_month_boundary_and_a_price_change_is_kept_apart_by_month() -> None:
    """10 GB on Free (5 billable) from 03-31 22:00 to 04-10 01:00: March 2 h x 5 x 0.018 = 0.18;
    April 9 days at 0.018 (216 h x 5 = 1,080 GB-h -> 19.44) and 1 h at 0.036 (5 GB-h -> 0.18): 19.62."""
    state = account()
    c = container(created_at=t("2026-03-31T22:00:00Z"), sizes=[(t("2026-03-31T22:00:00Z"), 10)])
    exact = pricing.storage_amounts(TWO, state, c, t("2026-03-31T22:00:00Z"), t("2026-04-10T01:00:00Z"))
    assert exact == {
        ("2026-03", ()): (180_000, (t("2026-03-31T22:00:00Z"), t("2026-04-01T00:00:00Z"))),
        ("2026-04", ()): (19_620_000, (t("2026-04-01T00:00:00Z"), t("2026-04-10T01:00:00Z"))),
    }


def test_traffic_beyond_the_allowance_at_the_months_rate() -> None:
    run = Run(run_id="r", tier="small", pending_traffic={"2026-04": 3 * GIB, "2026-03": GIB},
              pending_billable={"2026-04": GIB + GIB // 2})
    labelled = container(labels=[(t("2026-04-01T00:00:00Z"), {"team": "a"}), (t("2026-04-21T00:00:00Z"), {})])
    line = pricing.traffic_line(TWO, labelled, run, "2026-04", t("2026-04-20T00:00:00Z"))
    # April's rate is March's (the version of the month's first second): 8 x 1.5 GB = 12 credits, with
    # the labels the container has when it is settled
    assert (line.resource, line.item, line.month, line.container_id, line.run_id, line.traffic_bytes,
            line.amount, line.labels) == ("traffic", "traffic", "2026-04", "c", "r", 3 * GIB, 12_000_000,
                                          {"team": "a"})
    may = pricing.traffic_line(TWO, container(), replace(run, pending_traffic={"2026-05": GIB},
                                                         pending_billable={"2026-05": 2**20}), "2026-05",
                               t("2026-05-02T00:00:00Z"))
    assert may.amount == 15_625  # May, the new version: 16 credits per GB x 1 MiB = 16 / 1024 = 0.015625
    march = pricing.traffic_line(TWO, container(), run, "2026-03", t("2026-04-20T00:00:00Z"))
    assert (march.traffic_bytes, march.amount) == (GIB, 0)  # nothing beyond the allowance


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 8 * GIB), max_size=8), st.integers(0, 12 * GIB))
def test_the_billable_parts_of_a_months_reports_add_up_to_what_lies_beyond_the_allowance(
    reports: list[int], free: int,
) -> None:
    used, billed = 0, 0
    for reported in reports:
        part = pricing.billable_traffic(free, used, reported)
        assert 0 <= part <= reported
        billed += part
        used += reported
    assert billed == max(0, used - free)


def test_an_ai_use_at_each_token_price() -> None:
    # 1,000,000 in x 0.000004 + 250,000 out x 0.000032 = 4 + 8 = 12 credits (gpt-5-nano)
    line = pricing.ai_line(CATALOG, t("2026-03-02T10:00:00Z"), "snap", "gpt-5-nano", 1_000_000, 250_000, "c1",
                           {"team": "x"})
    assert (line.resource, line.item, line.month, line.container_id, line.model, line.input_tokens,
            line.output_tokens, line.start, line.end, line.labels, line.amount) == (
        "ai", "snap", "2026-03", "c1", "gpt-5-nano", 1_000_000, 250_000, t("2026-03-02T10:00:00Z"),
        t("2026-03-02T10:00:00Z"), {"team": "x"}, 12_000_000)
    # one output token of gpt-5-nano: 0.000032 credits = 32 µcr; one input token 4 µcr
    assert pricing.ai_line(CATALOG, t("2026-03-02T10:00:00Z"), "chat", "gpt-5-nano", 1, 1, None).amount == 36
    assert pricing.ai_line(CATALOG, t("2026-03-02T10:00:00Z"), "chat", "gpt-5-nano", 0, 0, None, {}).labels is None


def test_a_month_piece_is_rounded_on_its_own() -> None:
    """A run of micro from 03-31 23:59:59 to 04-01 00:00:01: each second 1.96 / 3600 = 544.44 µcr,
    rounded per month piece: 544 + 544 (one rounding of both would give 1,089)."""
    lines = pricing.run_lines(CATALOG, container(), Run(run_id="r", tier="micro"), t("2026-03-31T23:59:59Z"),
                              t("2026-04-01T00:00:01Z"))
    assert [(ln.month, ln.amount) for ln in lines] == [("2026-03", 544), ("2026-04", 544)]
    assert sum(ln.seconds or 0 for ln in lines) == 2 and lines[0].end == lines[1].start
    assert timedelta(seconds=lines[1].seconds or 0) == lines[1].end - lines[1].start  # type: ignore[operator]
