"""Attribution never changes what is charged, and never blocks a charge (billing-rules.md, "Where
features meet"), through the platform-events handler and the usage report.

Prices used (the default catalog): micro 1.96 cr/h = 544.444... µcr/s; Code Supporter 1.96 cr/h;
storage 0.018 cr/GB-h = 5 µcr/GB-s. Membership: 15 GB of storage free per container, 1,000 credits
a month, so nothing here runs out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from billing.api.requests import usage_query_of
from billing.domain.clock import format_time
from billing.services.usage import usage_report
from billing.store.ledger import Ledger
from tests.helpers import Platform

MICRO_PER_SECOND = Decimal("1.96") * 1_000_000 / 3600  # µcr of micro (or Code Supporter) a second


def priced(seconds: int, per_second: Decimal = MICRO_PER_SECOND) -> int:
    """round_half_up(rate x seconds), in µcr: a run priced once, as if it had no labels."""
    return int((per_second * seconds).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def at(moment: datetime) -> str:
    return format_time(moment)


def open_account(ledger: Ledger, account_id: str) -> Platform:
    p = Platform(ledger, account_id)
    p.send("Account Created", "2026-03-01T00:00:00Z", email=f"{account_id}@example.com", plan="membership")
    return p


def run_with_relabels(p: Platform, container_id: str, start: datetime, relabels: int, every: int, tail: int,
                      labels: Any = None, storage_gb: int = 5, code_supporter: bool = False) -> datetime:
    """A container created and started at ``start``, relabelled every ``every`` s ``relabels`` times
    (``labels(i)`` gives the i-th labels, None: never), stopped ``tail`` s after the last; returns the stop."""
    created = {"labels": labels(0)} if labels else {}
    p.send("Container Created", at(start), container_id=container_id, storage_gb=storage_gb, **created)
    p.send("Container Started", at(start), container_id=container_id, run_id=f"{container_id}-r",
           tier="micro", code_supporter=code_supporter)
    if labels:
        for i in range(1, relabels + 1):
            p.send("Container Labeled", at(start + timedelta(seconds=i * every)), container_id=container_id,
                   labels=labels(i))
    stop = start + timedelta(seconds=relabels * every + tail)
    p.send("Container Stopped", at(stop), container_id=container_id, run_id=f"{container_id}-r", traffic_bytes=0)
    return stop


def report(p: Platform, day: str, now: datetime, **params: str) -> dict[str, Any]:
    return usage_report(p.ledger, p.account_id, usage_query_of({"from": day, "to": day, **params}), now)


def micro(text: str) -> int:
    return int(Decimal(text) * 1_000_000)


def test_a_run_relabelled_300_times_costs_what_it_costs_without_labels(ledger: Ledger) -> None:
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    labelled = open_account(ledger, "acct-lab")
    stop = run_with_relabels(labelled, "c1", start, relabels=300, every=7, tail=5,
                             labels=lambda i: {"team": f"t{i % 3}"})
    plain = open_account(ledger, "acct-plain")
    run_with_relabels(plain, "c1", start, relabels=300, every=7, tail=5)
    # 300 x 7 + 5 = 2,105 s of micro: 1.96 x 2105 / 3600 = 1.146055555... cr -> 1,146,056 µcr, rounded
    # once (priced per 7 s piece it was 300 x 3,811 + 2,722 = 1,146,022). 5 GB are free: storage 0.
    expected = priced(2105)
    assert expected == 1_146_056
    assert plain.state().totals.charged == expected
    assert labelled.state().totals.charged == expected
    now = stop + timedelta(hours=1)
    body = report(labelled, "2026-03-02", now, group_by="label:team")
    assert micro(body["total"]) == expected
    assert sum(micro(g["total"]) for g in body["groups"]) == expected  # the parts add up exactly
    assert {g["key"] for g in body["groups"]} == {"t0", "t1", "t2"}


def test_a_relabelled_run_crossing_a_month_boundary_is_rounded_per_month(ledger: Ledger) -> None:
    start = datetime(2026, 3, 31, 23, 40, tzinfo=UTC)
    p = open_account(ledger, "acct-month")
    run_with_relabels(p, "c1", start, relabels=300, every=7, tail=5, labels=lambda i: {"team": f"t{i % 2}"})
    # March 23:40:00-24:00:00 = 1,200 s: 1.96 x 1200 / 3600 = 0.653333... -> 653,333 µcr;
    # April 00:00:00-00:35:05 = 905 s: 0.492722... -> 492,722 µcr. Each month rounded on its own.
    march, april = priced(1200), priced(905)
    assert (march, april) == (653_333, 492_722)
    lines = [(e.type, ln) for e in p.entries() if e.type in ("deduction", "correction") for ln in e.lines
             if ln.resource == "container"]
    by_month: dict[str, int] = {}
    for kind, ln in lines:
        by_month[ln.month] = by_month.get(ln.month, 0) + (ln.amount if kind == "deduction" else -ln.amount)
    assert by_month == {"2026-03": march, "2026-04": april}
    assert p.state().totals.charged == march + april


def test_450_relabels_in_a_day_keep_200_label_combinations_and_the_stop_settles(ledger: Ledger) -> None:
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    p = open_account(ledger, "acct-many")

    def labels(i: int) -> dict[str, str]:
        # Five keys of 32 characters, values of 64 (the largest labels there are), distinct each time.
        return {f"k{j}" + "x" * 30: f"{i:03d}" + "v" * 61 for j in range(5)}

    stop = run_with_relabels(p, "c1", start, relabels=450, every=7, tail=5, labels=labels, storage_gb=20,
                             code_supporter=True)
    assert not p.container("c1").runs  # the stop settled and closed the run
    # 450 x 7 + 5 = 3,155 s: micro and Code Supporter 1.96 x 3155 / 3600 = 1.717722... -> 1,717,722 µcr
    # each; storage 5 billable GB x 5 µcr x 3155 s = 78,875 µcr.
    seconds = 3155
    expected = 2 * priced(seconds) + 5 * 5 * seconds
    assert expected == 2 * 1_717_722 + 78_875
    assert p.state().totals.charged == expected
    body = report(p, "2026-03-02", stop + timedelta(hours=1), group_by="label:k0" + "x" * 30)
    keys = [g["key"] for g in body["groups"]]
    assert len(keys) == 201 and "_other" in keys  # combinations 0-199, then _other
    assert sorted(k for k in keys if k != "_other") == [f"{i:03d}" + "v" * 61 for i in range(200)]
    assert micro(body["total"]) == expected
    assert sum(micro(g["total"]) for g in body["groups"]) == expected
    assert len(p.container("c1").labels) <= 2  # the label history does not grow with relabels
