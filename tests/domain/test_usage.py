"""Usage for a range (billing-rules.md, "The usage report", "Attribution and ranges"): what was
charged less corrections, by day and hour of the deduction, per attribution cell, summed into
periods and groups, filtered by any dimension; only groups that had usage appear."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain import usage
from billing.domain.model import ChargeLine, LedgerEntry
from billing.domain.usage import Cell, UsageDay
from tests.domain.accounts import C, t

SMALL = ChargeLine(resource="container", item="small", tier="small", amount=6_800_000, month="2026-03",
                   container_id="c1", labels={"team": "a"})
CS = ChargeLine(resource="container", item="code_supporter", tier="small", amount=1_960_000, month="2026-03",
                container_id="c1", labels={"team": "a"})
STORAGE = ChargeLine(resource="storage", item="storage", tier="ignored", amount=270_000, month="2026-03",
                     container_id="c1")
CHAT = ChargeLine(resource="ai", item="chat", model="gpt-5-nano", tier="x", amount=36, month="2026-03",
                  labels={"project": "p", "team": "b"})


def entry(type_: str, at: str, *lines: ChargeLine, n: int = 1) -> LedgerEntry:
    return LedgerEntry(entry_id=f"e:{n:03d}", type=type_, amount=sum(x.amount for x in lines), at=t(at),  # type: ignore[arg-type]
                       reason="r", event_id="e", lines=list(lines))


def test_the_cell_of_a_line_is_its_attribution_without_its_container() -> None:
    assert usage.cell_of(SMALL) == Cell("container", tier="small", labels=(("team", "a"),))
    assert usage.cell_of(CS) == Cell("container", tier="small", feature="code_supporter", labels=(("team", "a"),))
    assert usage.cell_of(STORAGE) == Cell("storage")  # a tier on a storage line is not its attribution
    assert usage.cell_of(CHAT) == Cell("ai", model="gpt-5-nano", feature="chat",
                                       labels=(("project", "p"), ("team", "b")))
    assert usage.cell_of(ChargeLine(resource="container", item="small", amount=1, month="2026-03")) == Cell(
        "container")  # no tier recorded: ""


def test_deductions_add_corrections_subtract_and_nothing_else_counts() -> None:
    entries = [
        entry("deduction", "2026-03-02T10:00:00Z", SMALL, STORAGE),
        entry("correction", "2026-03-02T11:00:00Z", CS),
        entry("grant", "2026-03-02T12:00:00Z", SMALL),
        entry("debt", "2026-03-02T12:00:00Z", SMALL),
        entry("deduction", "2026-03-02T13:00:00Z", ChargeLine(resource="storage", item="storage", amount=0,
                                                              month="2026-03")),
    ]
    assert [(at, line.item, amount) for at, line, amount in usage.charged(entries)] == [
        (t("2026-03-02T10:00:00Z"), "small", 6_800_000), (t("2026-03-02T10:00:00Z"), "storage", 270_000),
        (t("2026-03-02T11:00:00Z"), "code_supporter", -1_960_000)]


def test_usage_days_of_the_account_and_of_each_container() -> None:
    days = usage.days_of([
        entry("deduction", "2026-03-02T10:30:00Z", SMALL, CS),
        entry("deduction", "2026-03-02T10:59:59Z", SMALL),
        entry("deduction", "2026-03-02T23:00:00Z", CHAT),
        entry("correction", "2026-03-03T00:00:00Z", SMALL),
    ])
    small, cs = usage.cell_of(SMALL), usage.cell_of(CS)
    assert set(days) == {(date(2026, 3, 2), None), (date(2026, 3, 2), "c1"), (date(2026, 3, 3), None),
                         (date(2026, 3, 3), "c1")}
    account = days[(date(2026, 3, 2), None)]
    assert (account.day, account.container_id) == (date(2026, 3, 2), None)
    assert account.hours == {10: {small: 13_600_000, cs: 1_960_000}, 23: {usage.cell_of(CHAT): 36}}
    assert days[(date(2026, 3, 2), "c1")].hours == {10: {small: 13_600_000, cs: 1_960_000}}
    assert days[(date(2026, 3, 3), "c1")].hours == {0: {small: -6_800_000}}


def test_periods_of_a_range() -> None:
    assert usage.periods(date(2026, 3, 31), date(2026, 4, 1), "day") == ["2026-03-31", "2026-04-01"]
    assert usage.periods(date(2026, 1, 15), date(2026, 3, 1), "month") == ["2026-01", "2026-02", "2026-03"]
    hours = usage.periods(date(2026, 3, 1), date(2026, 3, 2), "hour")
    assert len(hours) == 48 and hours[0] == "2026-03-01T00" and hours[23] == "2026-03-01T23" and hours[47] == (
        "2026-03-02T23")
    assert usage.periods(date(2026, 3, 2), date(2026, 3, 1), "day") == []
    assert usage.periods(date(2026, 3, 1), date(2026, 3, 1), "month") == ["2026-03"]
    assert usage.MAX_DAYS == 366


def days(container: bool = False) -> list[UsageDay]:
    """The account's days (or, with ``container``, the containers' own days)."""
    return [d for d in usage.days_of([
        entry("deduction", "2026-03-01T23:00:00Z", SMALL),  # before the range
        entry("deduction", "2026-03-02T10:00:00Z", SMALL, CS, STORAGE),
        entry("deduction", "2026-03-03T09:00:00Z", CHAT),
        entry("deduction", "2026-03-04T00:00:00Z", SMALL),  # after the range
    ]).values() if (d.container_id is not None) == container]


def test_a_summary_by_day_of_a_range() -> None:
    s = usage.summarize(days(), date(2026, 3, 2), date(2026, 3, 3), "day")
    # 6.8 + 1.96 + 0.27 on the 2nd, 0.000036 on the 3rd
    assert s.total == 9_030_036
    assert s.by_resource == {"container": 8_760_000, "storage": 270_000, "traffic": 0, "ai": 36}
    assert s.periods == ["2026-03-02", "2026-03-03"]
    assert (s.series.key, s.series.total, s.series.points) == (None, 9_030_036,
                                                              {"2026-03-02": 9_030_000, "2026-03-03": 36})
    assert s.groups == []


def test_a_summary_by_hour_grouped_by_resource() -> None:
    s = usage.summarize(days(), date(2026, 3, 2), date(2026, 3, 3), "hour", group_by="resource")
    assert s.series.points == {"2026-03-02T10": 9_030_000, "2026-03-03T09": 36}
    assert [(g.key, g.total, g.points) for g in s.groups] == [
        ("ai", 36, {"2026-03-03T09": 36}),
        ("container", 8_760_000, {"2026-03-02T10": 8_760_000}),
        ("storage", 270_000, {"2026-03-02T10": 270_000}),
    ]


def test_groups_by_container_label_and_feature_with_usage_lacking_it_under_an_empty_key() -> None:
    # 6.8 x 3 + 1.96 + 0.27 = 22.63 in c1's own days; the account's days are no container's
    by_container = usage.summarize(days(container=True), date(2026, 3, 1), date(2026, 3, 31), "month",
                                   group_by="container")
    assert [(g.key, g.total) for g in by_container.groups] == [("c1", 22_630_000)]
    by_container = usage.summarize(days(), date(2026, 3, 1), date(2026, 3, 31), "month", group_by="container")
    assert [(g.key, g.total) for g in by_container.groups] == [("", 22_630_036)]
    by_team = usage.summarize(days(), date(2026, 3, 2), date(2026, 3, 3), "day", group_by="label:team")
    assert [(g.key, g.total) for g in by_team.groups] == [
        ("", 270_000), ("a", 8_760_000), ("b", 36)]
    by_feature = usage.summarize(days(), date(2026, 3, 2), date(2026, 3, 3), "month", group_by="feature")
    assert [(g.key, g.total, g.points) for g in by_feature.groups] == [
        ("", 7_070_000, {"2026-03": 7_070_000}),
        ("chat", 36, {"2026-03": 36}), ("code_supporter", 1_960_000, {"2026-03": 1_960_000})]


def test_filters_keep_only_matching_cells() -> None:
    s = usage.summarize(days(container=True), date(2026, 3, 1), date(2026, 3, 31), "day", filters={"container": "c1"})
    assert s.total == 22_630_000
    assert usage.summarize(days(), date(2026, 3, 1), date(2026, 3, 31), "day", filters={"container": "c1"}).total == 0
    s = usage.summarize(days(container=True), date(2026, 3, 1), date(2026, 3, 31), "day",
                        filters={"container": "c1", "label:team": "a", "feature": "code_supporter"})
    assert s.total == 1_960_000
    s = usage.summarize(days(), date(2026, 3, 1), date(2026, 3, 31), "day", filters={"model": "gpt-5-nano"},
                        group_by="tier")
    assert s.total == 36 and [(g.key, g.total) for g in s.groups] == [("", 36)]
    assert usage.summarize(days(), date(2026, 3, 1), date(2026, 3, 31), "day", filters={"tier": "xl"}).total == 0


def test_a_group_whose_corrections_cancel_its_charges_is_left_out() -> None:
    cancelled = list(usage.days_of([entry("deduction", "2026-03-02T10:00:00Z", CHAT),
                                    entry("correction", "2026-03-02T10:00:00Z", CHAT)]).values())
    s = usage.summarize(cancelled, date(2026, 3, 2), date(2026, 3, 2), "day", group_by="model")
    assert s.total == 0 and s.groups == []
    # ... but a group whose total is 0 with usage in its periods stays (charged one day, given back the next)
    moved = list(usage.days_of([entry("deduction", "2026-03-02T10:00:00Z", CHAT),
                                entry("correction", "2026-03-03T10:00:00Z", CHAT)]).values())
    s = usage.summarize(moved, date(2026, 3, 2), date(2026, 3, 3), "day", group_by="model")
    assert [(g.key, g.total, g.points) for g in s.groups] == [
        ("gpt-5-nano", 0, {"2026-03-02": 36, "2026-03-03": -36})]


def test_dimensions() -> None:
    cell = usage.cell_of(CHAT)
    assert usage.dimension(cell, "container", "c9") == "c9"
    assert usage.dimension(cell, "label:project", None) == "p"
    assert usage.dimension(cell, "label:nope", None) is None
    assert usage.dimension(cell, "model", None) == "gpt-5-nano"
    assert usage.dimension(cell, "tier", None) is None  # "" is no value
    assert usage.dimension(cell, "user", None) is None  # a line without a member
    member = usage.cell_of(ChargeLine(resource="ai", item="chat", amount=1, month="2026-03", user_id="u-7"))
    assert usage.dimension(member, "user", None) == "u-7"
    # past the day's bound the aggregates attribute the line to _other, whatever its member
    other = usage.cell_of(ChargeLine(resource="ai", item="chat", amount=1, month="2026-03", user_id="u-7",
                                     attributed_user="_other"))
    assert usage.dimension(other, "user", None) == "_other"
    assert usage.DIMENSIONS == ("resource", "container", "tier", "model", "feature", "user")


AMOUNTS = st.integers(-10 * C, 10 * C)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 23), st.sampled_from([SMALL, CS, STORAGE, CHAT]), AMOUNTS),
                max_size=12), st.sampled_from(["hour", "day", "month"]),
       st.sampled_from([None, "resource", "container", "tier", "model", "feature", "label:team"]))
def test_every_split_of_a_range_adds_up_to_its_total(
    charges: list[tuple[int, int, ChargeLine, int]], granularity: str, group_by: str | None,
) -> None:
    entries = [entry("deduction", f"2026-03-{1 + d:02d}T{h:02d}:00:00Z", ChargeLine(
        resource=line.resource, item=line.item, tier=line.tier, model=line.model, month="2026-03",
        container_id=line.container_id, labels=line.labels, amount=amount)) for d, h, line, amount in charges]
    account_days = [d for d in usage.days_of(entries).values() if d.container_id is None]
    s = usage.summarize(account_days, date(2026, 3, 1), date(2026, 3, 5), granularity, group_by)  # type: ignore[arg-type]
    assert s.total == sum(a for *_, a in charges) == sum(s.by_resource.values()) == s.series.total
    assert sum(s.series.points.values()) == s.total and set(s.series.points) <= set(s.periods)
    if group_by:
        assert sum(g.total for g in s.groups) == s.total
        assert [g.key for g in s.groups] == sorted(g.key or "" for g in s.groups)


def test_usage_without_the_grouped_attribution_comes_first() -> None:
    labelled = ChargeLine(resource="ai", item="chat", model="m", amount=5, month="2026-03", labels={"team": "A"})
    bare = ChargeLine(resource="ai", item="chat", model="m", amount=7, month="2026-03")
    account_days = [d for d in usage.days_of([entry("deduction", "2026-03-02T10:00:00Z", labelled, bare)]).values()
                    if d.container_id is None]
    s = usage.summarize(account_days, date(2026, 3, 2), date(2026, 3, 2), "day", group_by="label:team")
    assert [(g.key, g.total) for g in s.groups] == [("", 7), ("A", 5)]
