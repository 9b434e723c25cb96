"""Attribution never changes what is charged, and never blocks a charge (billing-rules.md, "Where
features meet"): the pure rules.

micro and Code Supporter: 1.96 cr/h = 544.444... µcr/s; storage 0.018 cr/GB-h = 5 µcr/GB-s.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise

from msgspec.structs import replace

from billing.domain import attribution, pricing, settle
from billing.domain.catalog import PriceCatalog, load_catalog
from billing.domain.clock import format_time
from billing.domain.model import AccountState, ChargeLine, Container, Run
from tests.domain.accounts import Account, t

CATALOG = load_catalog()
MICRO_PER_SECOND = Decimal("1.96") * 1_000_000 / 3600


def priced(units: int, per_unit: Decimal = MICRO_PER_SECOND) -> int:
    """The exact price rounded once, half-up, in µcr."""
    return int((per_unit * units).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def later(at: str, seconds: int) -> str:
    return format_time(t(at) + timedelta(seconds=seconds))


def relabelled_run(account: Account, start: str, relabels: int, every: int, tail: int, gb: int = 0,
                   code_supporter: bool = False) -> str:
    """c1 created at ``start`` (``gb`` GB), a micro run from ``start``, relabelled every ``every`` s;
    stopped ``tail`` s after the last relabel. Returns the stop."""
    if gb:
        account.create(start, "c1", gb)
    account.start(start, "c1", "r1", "micro", code_supporter)
    for i in range(1, relabels + 1):
        account.do(settle.container_labeled, later(start, i * every), "c1", {"team": f"t{i % 3}"})
    stop = later(start, relabels * every + tail)
    account.stop(stop, "c1", "r1")
    return stop


def test_run_lines_telescope_from_the_runs_start():
    run = Run(run_id="r1", tier="micro", started_at=t("2026-03-02T10:00:00Z"))
    c = Container(container_id="c1")
    cuts = [t("2026-03-02T10:00:00Z") + timedelta(seconds=7 * i) for i in range(301)]
    lines = [ln for a, b in pairwise(cuts) for ln in pricing.run_lines(CATALOG, c, run, a, b)]
    # 300 pieces of 7 s (3,811.11 µcr each; 3,811 if each were rounded on its own: 1,143,300 in all);
    # telescoped they add up to 1.96 x 2100 / 3600 = 1.143333... cr -> 1,143,333 µcr.
    assert sum(ln.amount for ln in lines) == priced(2100) == 1_143_333
    assert {ln.amount for ln in lines} == {3811, 3812}
    # One piece alone, from the run's start, is priced as before: 7 s -> 3,811 µcr.
    assert [ln.amount for ln in pricing.run_lines(CATALOG, c, run, cuts[0], cuts[1])] == [3811]


def test_a_relabelled_run_costs_what_it_costs_without_labels():
    labelled, plain = Account("2026-03-01T00:00:00Z"), Account("2026-03-01T00:00:00Z")
    relabelled_run(labelled, "2026-03-02T10:00:00Z", relabels=300, every=7, tail=5, code_supporter=True)
    relabelled_run(plain, "2026-03-02T10:00:00Z", relabels=0, every=7, tail=2105, code_supporter=True)
    # 2,105 s of micro and of Code Supporter: 1.96 x 2105 / 3600 -> 1,146,056 µcr each.
    assert labelled.state.totals.charged == plain.state.totals.charged == 2 * priced(2105) == 2 * 1_146_056
    labelled_lines = [ln for e in labelled.of_type("deduction") for ln in e.lines if ln.resource == "container"]
    assert len(labelled_lines) == 2 * 301 and {ln.labels["team"] for ln in labelled_lines if ln.labels} == {
        "t0", "t1", "t2"}


def test_a_relabelled_run_is_rounded_per_month_across_a_boundary():
    account = Account("2026-03-01T00:00:00Z", plan="membership")
    relabelled_run(account, "2026-03-31T23:40:00Z", relabels=300, every=7, tail=5)
    by_month: dict[str, int] = {}
    for entry in account.entries:
        for ln in entry.lines:
            if ln.resource == "container":
                signed = ln.amount if entry.type == "deduction" else -ln.amount
                by_month[ln.month] = by_month.get(ln.month, 0) + signed
    # March 1,200 s -> 653,333 µcr; April 905 s -> 492,722 µcr (0.653333... and 0.492722...).
    assert by_month == {"2026-03": priced(1200), "2026-04": priced(905)} == {"2026-03": 653_333, "2026-04": 492_722}


def test_a_late_stop_gives_back_time_billed_past_it_consistently():
    account = Account("2026-03-01T00:00:00Z")
    account.start("2026-03-02T10:00:00Z", "c1", "r1", "micro")
    for i in range(1, 86):  # relabelled every 7 s up to 10:09:55: settled up to there
        account.do(settle.container_labeled, later("2026-03-02T10:00:00Z", 7 * i), "c1", {"team": f"t{i}"})
    account.stop("2026-03-02T10:05:03Z", "c1", "r1")  # the stop arrives late
    # What stays charged is 303 s: 1.96 x 303 / 3600 = 0.164966... -> 164,967 µcr.
    assert account.state.totals.charged == priced(303) == 164_967
    assert len(account.of_type("correction")) == 1


def test_storage_at_an_inexact_rate_is_rounded_once_per_month_also_when_resized_late():
    version = replace(CATALOG.versions[0], storage_credits_per_gb_hour=Decimal("0.0181"))
    catalog = PriceCatalog([version])
    labelled, plain = (Account("2026-03-01T00:00:00Z", catalog=catalog) for _ in range(2))
    for account, relabels in ((labelled, 100), (plain, 0)):
        account.create("2026-03-02T10:00:00Z", "c1", 20)
        for i in range(1, relabels + 1):
            account.do(settle.container_labeled, later("2026-03-02T10:00:00Z", 7 * i), "c1", {"team": f"t{i}"})
        account.do(settle.sweep, "2026-03-02T10:20:00Z")
        account.create("2026-03-02T10:20:00Z", "c2", 1)  # an event that settles nothing of c1
        account.do(settle.container_resized, "2026-03-02T10:10:03Z", "c1", 30)  # a late resize
        account.do(settle.container_labeled, "2026-03-02T10:30:00Z", "c1", {"team": "last"})
    # Free plan: 5 GB free. c1: 15 GB billable 10:00:00-10:10:03 (603 s), 25 GB to 10:30:00 (1,197 s):
    # 15 x 603 + 25 x 1197 = 38,970 GB-s x 0.0181 / 3600 cr = 0.1959325 cr -> 195,933 µcr (half up),
    # rounded once.
    expected = priced(15 * 603 + 25 * 1197, Decimal("0.0181") * 1_000_000 / 3600)
    assert expected == 195_933
    assert labelled.state.totals.charged == plain.state.totals.charged == expected


def test_the_label_history_keeps_what_unbilled_usage_needs():
    account = Account("2026-03-01T00:00:00Z")
    relabelled_run(account, "2026-03-02T10:00:00Z", relabels=450, every=7, tail=5, gb=20)
    assert len(account.containers["c1"].labels) <= 2
    history = [(t("2026-03-02T10:00:00Z") + timedelta(seconds=i), {"k": str(i)}) for i in range(100)]
    c = Container(container_id="c", labels=list(history))
    attribution.prune_labels(c, t("2026-03-02T11:00:00Z"))  # nothing accrues unbilled: the one in effect
    assert [labels["k"] for _, labels in c.labels] == ["99"]
    c.runs["r"] = Run(run_id="r", started_at=t("2026-03-02T09:00:00Z"), billed_until=t("2026-03-02T10:00:10Z"))
    c.labels = list(history[:20])
    attribution.prune_labels(c, t("2026-03-02T11:00:00Z"))  # the run is billed to 10:00:10
    assert [labels["k"] for _, labels in c.labels] == [str(i) for i in range(10, 20)]
    c.runs["r"].billed_until = t("2026-03-02T09:00:00Z")
    c.labels = list(history)
    attribution.prune_labels(c, t("2026-03-02T11:00:00Z"))  # at most 64 however early the run is billed
    assert [labels["k"] for _, labels in c.labels] == [str(i) for i in range(100 - 64, 100)]


def _state() -> AccountState:
    return AccountState(account_id="a", email="a@example.com", created_at=t("2026-03-01T00:00:00Z"),
                        plans=[(t("2026-03-01T00:00:00Z"), "free")], as_of=t("2026-03-01T00:00:00Z"))


def test_a_day_keeps_200_combinations_then_each_key_gets_other():
    state, noon = _state(), t("2026-03-02T12:00:00Z")
    kept = [attribution.bounded(state, noon, {"team": f"t{i}"}) for i in range(200)]
    assert kept == [{"team": f"t{i}"} for i in range(200)]
    assert attribution.bounded(state, noon, {"team": "t7"}) == {"team": "t7"}  # known that day
    assert attribution.bounded(state, noon, {"team": "new"}) == {"team": "_other"}
    assert attribution.bounded(state, noon, {"team": "x", "env": "y"}) == {"team": "_other", "env": "_other"}
    for i in range(20):  # _other key sets are bounded too; past them, one catch-all combination
        attribution.bounded(state, noon, {f"key{i}": "v"})
    assert attribution.bounded(state, noon, {"zzz": "v"}) == {"other": "_other"}
    assert len(state.label_days.combinations) == 200 + attribution.MAX_OTHER + 1
    # The next day starts afresh; the day before keeps its combinations (a month's close is dated there).
    assert attribution.bounded(state, t("2026-03-03T00:00:00Z"), {"team": "new"}) == {"team": "new"}
    assert len(state.label_days.past["2026-03-02"]) == 217
    assert attribution.bounded(state, t("2026-03-02T23:59:59Z"), {"team": "t1"}) == {"team": "t1"}
    assert attribution.bounded(state, t("2026-03-02T23:59:59Z"), {"team": "late"}) == {"team": "_other"}  # known
    assert attribution.bounded(state, t("2026-03-02T23:59:59Z"), {"new_key": "v"}) == {"other": "_other"}


def test_earlier_days_keep_their_combinations_while_few_then_their_count():
    state = _state()
    for day in range(2, 5):  # 100 combinations on Mar 2, 3 and 4: 300 hashes of earlier days at Mar 5
        for i in range(100):
            attribution.bounded(state, t(f"2026-03-0{day}T12:00:00Z"), {"team": f"t{i}"})
    attribution.bounded(state, t("2026-03-05T00:00:00Z"), {"team": "a"})
    days = state.label_days
    assert sorted(days.past) == ["2026-03-03", "2026-03-04"] and days.counted == {"2026-03-02": 100}
    # Mar 2 knows only its count now: each late admission counts, 100 more fit.
    late = [attribution.bounded(state, t("2026-03-02T13:00:00Z"), {"team": "t0"})["team"] for _ in range(101)]
    assert late[-2:] == ["t0", "_other"]
    assert attribution.bounded(state, t("2026-03-03T13:00:00Z"), {"team": "t5"}) == {"team": "t5"}


def test_a_late_day_not_known_keeps_200_combinations():
    state = _state()
    attribution.bounded(state, t("2026-03-10T00:00:00Z"), {"team": "a"})
    late = t("2026-03-05T00:00:00Z")
    assert [attribution.bounded(state, late, {"team": f"t{i}"})["team"] for i in range(201)][-2:] == ["t199", "_other"]
    assert attribution.bounded(state, late, {"team": "t3"}) == {"team": "t3"}


def test_overflowing_lines_of_one_entry_merge_into_one():
    state, noon = _state(), t("2026-03-02T12:00:00Z")
    for i in range(200):
        attribution.bounded(state, noon, {"team": f"t{i}"})
    lines = [ChargeLine(resource="container", item="micro", amount=3811, month="2026-03", container_id="c1",
                        run_id="r1", seconds=7, labels={"team": f"n{i}"}) for i in range(5)]
    [line] = attribution.bounded_lines(state, noon, [*lines])
    assert (line.amount, line.seconds, line.labels) == (5 * 3811, 35, {"team": "_other"})


def test_no_labels_are_no_combination():
    state = _state()
    line = ChargeLine(resource="ai", item="chat", amount=1, month="2026-03")
    assert attribution.bounded_lines(state, datetime.fromisoformat("2026-03-02T00:00:00+00:00"), [line]) == [line]
    assert state.label_days.combinations == []


def test_a_member_is_one_more_attribution_bounded_with_the_labels():
    """Issue 19: ``user_id`` counts in the day's combinations with the labels; past the 200 (and the
    ``_other`` ones) the aggregates attribute the line to member ``_other``, and ``user_id`` (what a
    member's limit counts) is kept on the line."""
    state = _state()
    at = t("2026-03-02T10:00:00Z")

    def line(user: str | None, team: str | None = None, amount: int = 5) -> ChargeLine:
        return ChargeLine(resource="ai", item="chat", amount=amount, month="2026-03", model="m", user_id=user,
                          labels={"team": team} if team else None)

    # 200 members, no labels: each one a combination of its own, kept as given
    kept = attribution.bounded_lines(state, at, [line(f"u{i}") for i in range(200)])
    assert [(ln.user_id, ln.attributed_user, ln.labels) for ln in kept[:2]] == [("u0", None, None), ("u1", None, None)]
    assert all(ln.attributed_user is None for ln in kept)
    # a 201st member and a 202nd, both unlabelled: one _other combination, one line per member (their
    # limits count their own), each attributed to _other; amounts untouched (7 + 11)
    over = attribution.bounded_lines(state, at, [line("u200", amount=7), line("u201", amount=11)])
    assert [(ln.user_id, ln.attributed_user, ln.amount) for ln in over] == [
        ("u200", "_other", 7), ("u201", "_other", 11)]
    # a member already counted stays as given; a line without a member or labels is never counted
    again = attribution.bounded_lines(state, at, [line("u5"), line(None)])
    assert [(ln.user_id, ln.attributed_user) for ln in again] == [("u5", None), (None, None)]
    # labels and member together: past the bound the labels' values and the member are both _other
    both = attribution.bounded_lines(state, at, [line("u9", team="ml")])
    assert [(ln.labels, ln.attributed_user) for ln in both] == [({"team": "_other"}, "_other")]
    # a combination without a member hashes as before (a day's labels keep their places)
    assert attribution.combination({"team": "ml"}) == attribution.combination({"team": "ml"}, None)
    assert attribution.combination({"team": "ml"}, "u1") != attribution.combination({"team": "ml"})
