"""Usage for any range, by any attribution (billing-rules.md, "Attribution and ranges"): labels on
container and AI events and on Container Labeled, recorded on the charge lines, summed by hour, day or
month, grouped and filtered by resource, container, tier, model, feature or a label.

The scenario (Membership: 15 GB of storage free per container; every figure by hand):
- c1: 20 GB (5 GB billable at 0.018 = 0.09 an hour), labels team=core, from Mar 2 00:00.
  A small run with Code Supporter 10:00-12:00. Storage 00:00-10:00 (0.9) is deducted at the start;
  at the stop, small 6.80 x 2 = 13.6, Code Supporter 1.96 x 2 = 3.92 and storage 0.18: 17.7.
- Mar 3 00:00: c1 is relabeled team=platform; its storage 12:00-24:00 under team=core: 1.08.
- c2: 5 GB (nothing billable), team=ml: a medium run Mar 3 08:00-09:00 = 13.6; an AI chat on c2 at
  10:00 (claude-haiku-4.5, 1000 in / 500 out = 0.08 + 0.2 = 0.28) with labels team=ml, api_key=k1.
- Mar 4: c1 micro 10:00-11:00: storage Mar 3 00:00 -> Mar 4 10:00 (34 h) = 3.06 at the start; micro
  1.96 and storage 0.09 at the stop; all team=platform.
Totals: Mar 2 18.6; Mar 3 1.08 + 13.6 + 0.28 = 14.96; Mar 4 3.06 + 2.05 = 5.11; in all 38.67.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from billing.api.requests import usage_query_of
from billing.domain.errors import InvalidInput
from billing.services.usage import usage_csv, usage_report
from billing.store.ledger import Ledger
from tests.helpers import Platform

NOW = datetime(2026, 3, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def account(module_ledger: Ledger) -> Platform:
    """Built once for the module: every test here only reads it."""
    p = Platform(module_ledger, "acct-r")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="r@example.com", plan="membership")
    p.send("Container Created", "2026-03-02T00:00:00Z", container_id="c1", storage_gb=20, labels={"team": "core"})
    p.send("Container Created", "2026-03-02T00:00:00Z", container_id="c2", storage_gb=5, labels={"team": "ml"})
    p.send("Container Started", "2026-03-02T10:00:00Z", container_id="c1", run_id="r1", tier="small",
           code_supporter=True)
    p.send("Container Stopped", "2026-03-02T12:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    p.send("Container Labeled", "2026-03-03T00:00:00Z", container_id="c1", labels={"team": "platform"})
    p.send("Container Started", "2026-03-03T08:00:00Z", container_id="c2", run_id="r2", tier="medium")
    p.send("Container Stopped", "2026-03-03T09:00:00Z", container_id="c2", run_id="r2", traffic_bytes=0)
    p.send("AI Usage Recorded", "2026-03-03T10:00:00Z", feature="chat", model="claude-haiku-4.5",
           input_tokens=1000, output_tokens=500, container_id="c2", labels={"team": "ml", "api_key": "k1"})
    p.send("Container Started", "2026-03-04T10:00:00Z", container_id="c1", run_id="r3", tier="micro")
    p.send("Container Stopped", "2026-03-04T11:00:00Z", container_id="c1", run_id="r3", traffic_bytes=0)
    return p


def report(p: Platform, **params: str) -> dict[str, Any]:
    return usage_report(p.ledger, p.account_id, usage_query_of(params), NOW)


def amounts(series: list[dict[str, Any]]) -> dict[str, str]:
    return {point["date"]: point["amount"] for point in series}


RANGE = {"from": "2026-03-02", "to": "2026-03-04", "cumulative": "false"}


def test_labels_are_recorded_on_every_charge_line(account: Platform) -> None:
    lines = [ln for e in account.entries() if e.type == "deduction" for ln in e.lines]
    assert {(ln.item, ln.container_id, tuple(sorted((ln.labels or {}).items()))) for ln in lines} == {
        ("storage", "c1", (("team", "core"),)), ("small", "c1", (("team", "core"),)),
        ("code_supporter", "c1", (("team", "core"),)), ("storage", "c1", (("team", "platform"),)),
        ("medium", "c2", (("team", "ml"),)), ("storage", "c2", (("team", "ml"),)),  # 5 GB: a line of 0
        ("chat", "c2", (("api_key", "k1"), ("team", "ml"))),
        ("micro", "c1", (("team", "platform"),)),
    }


def test_a_range_by_day(account: Platform) -> None:
    body = report(account, **RANGE)
    assert body["total"] == "38.670000"
    assert amounts(body["series"]) == {"2026-03-02": "18.600000", "2026-03-03": "14.960000",
                                       "2026-03-04": "5.110000"}
    assert body["by_resource"] == {"container": "33.080000", "storage": "5.310000", "traffic": "0.000000",
                                   "ai": "0.280000"}
    assert "groups" not in body
    cumulative = report(account, **{**RANGE, "cumulative": "true"})  # amount is still the day's own
    assert amounts(cumulative["series"]) == amounts(body["series"])
    assert {p["date"]: p["cumulative"] for p in cumulative["series"]} == {
        "2026-03-02": "18.600000", "2026-03-03": "33.560000", "2026-03-04": "38.670000"}


def test_groups_by_label_tier_feature_and_container(account: Platform) -> None:
    def groups(by: str) -> dict[str | None, str]:
        return {g["key"]: g["total"] for g in report(account, **RANGE, group_by=by)["groups"]}

    assert groups("label:team") == {"core": "19.680000", "ml": "13.880000", "platform": "5.110000"}
    assert groups("label:api_key") == {"": "38.390000", "k1": "0.280000"}
    assert groups("tier") == {"small": "17.520000", "medium": "13.600000", "micro": "1.960000",
                              "": "5.590000"}
    assert groups("feature") == {"code_supporter": "3.920000", "chat": "0.280000", "": "34.470000"}
    assert groups("container") == {"c1": "24.790000", "c2": "13.880000"}
    assert groups("resource") == {"container": "33.080000", "storage": "5.310000", "ai": "0.280000"}
    by_team = report(account, **RANGE, group_by="label:team")["groups"]
    assert [(g["key"], amounts(g["series"])["2026-03-03"]) for g in by_team] == [
        ("core", "1.080000"), ("ml", "13.880000"), ("platform", "0.000000")]


def test_filters_and_granularities(account: Platform) -> None:
    assert report(account, **RANGE, **{"label.api_key": "k1"})["total"] == "0.280000"
    assert report(account, **RANGE, **{"label.team": "ml"}, resource="container")["total"] == "13.600000"
    hourly = report(account, **{**RANGE, "to": "2026-03-02"}, granularity="hour", container_id="c1")
    assert len(hourly["series"]) == 24
    assert {k: v for k, v in amounts(hourly["series"]).items() if v != "0.000000"} == {
        "2026-03-02T10": "0.900000", "2026-03-02T12": "17.700000"}
    monthly = report(account, **RANGE, granularity="month")
    assert amounts(monthly["series"]) == {"2026-03": "38.670000"}
    assert report(account, month="2026-03")["total"] == "38.670000"  # the month, up to today (Mar 5)
    usd = report(account, **RANGE, unit="usd", group_by="container")
    assert [(g["key"], g["total"]) for g in usd["groups"]] == [
        ("c1", {"currency": "USD", "amount_minor": 50, "cents": 50}),  # 0.4958
        ("c2", {"currency": "USD", "amount_minor": 28, "cents": 28})]  # 0.2776


def test_csv_of_the_same_report(account: Platform) -> None:
    text = usage_csv(report(account, **RANGE, group_by="label:team"))
    rows = [line.split(",") for line in text.strip().split("\r\n")]
    assert rows[0] == ["period", "label:team", "amount_credits", "cumulative_credits"]
    assert ["2026-03-03", "core", "1.080000", "19.680000"] in rows
    assert ["2026-03-04", "platform", "5.110000", "5.110000"] in rows
    usd = usage_csv(report(account, **RANGE, unit="usd"))
    assert usd.strip().split("\r\n")[1] == "2026-03-02,0.37,0.37"  # 18.6 credits x 0.02


@pytest.mark.parametrize(("params", "message"), [
    ({"form": "2026-03-01"}, "form: unknown query parameter"),
    ({"from": "2026-03-01"}, "from and to go together"),
    ({"from": "2026-03-05", "to": "2026-03-01"}, "from must not be after to"),
    ({"from": "2025-01-01", "to": "2026-03-01"}, "at most 366 days"),
    ({"month": "2026-03", "from": "2026-03-01", "to": "2026-03-02"}, "either month or from/to"),
    ({"group_by": "colour"}, "unknown group_by 'colour'"),
    ({"group_by": "label:Team"}, "unknown label key 'Team'"),
    ({"granularity": "week"}, "granularity: Invalid enum value 'week'"),
    ({"cumulative": "maybe"}, "cumulative: Expected `bool`"),
    ({"unit": "eur"}, "unit: Invalid enum value 'eur'"),
    ({"label.Team": "ml"}, "label.Team: a label key is"),
    ({"label.team": "x" * 65}, "label.team: a label value is 1 to 64 printable characters"),
])
def test_bad_parameters_are_refused_with_their_name(account: Platform, params: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        report(account, **params)
    assert message in refused.value.message


def test_a_range_reads_the_day_aggregates_not_the_ledger(account: Platform) -> None:
    from tests.api_helpers import RequestCounter

    counter = RequestCounter(account.ledger.models)
    report(account, **RANGE)
    assert counter.calls == ["BatchGetItem", "Query"]  # the balance item, the days of the range
    counter.reset()
    report(account, **RANGE, group_by="container")
    # every container's days in one Query of the containers' index (GSI1), never one Query per container
    assert counter.calls == ["BatchGetItem", "Query"]


def test_the_same_report_over_http_json_and_csv(account: Platform) -> None:
    """``GET /v1/usage`` and ``/v1/usage.csv`` with ``label.<key>`` filters, as the page and a script call them."""
    from billing.store.cursors import CursorCodec
    from tests.api_helpers import api_event, call
    from tests.helpers import load_handler, wire

    api = wire(load_handler("usage_api"), ledger=account.ledger, cursor_codec=CursorCodec("s"), clock=lambda: NOW)
    status, body, _ = call(api, api_event("/v1/usage", {**RANGE, "label.team": "ml"}, sub="acct-r"))
    assert status == 200, body
    # team=ml: c2's medium hour 13.6 and the chat 0.28 on Mar 3 (c2's 5 GB storage costs nothing).
    assert body["total"] == "13.880000" and body["filters"] == {"label:team": "ml"}
    assert amounts(body["series"]) == {"2026-03-02": "0.000000", "2026-03-03": "13.880000",
                                       "2026-03-04": "0.000000"}
    status, text, headers = call(api, api_event(
        "/v1/usage.csv", {"from": "2026-03-02", "to": "2026-03-04", "group_by": "label:team"}, sub="acct-r"))
    assert status == 200 and headers["content-type"] == "text/csv"
    assert headers["content-disposition"] == 'attachment; filename="usage.csv"'
    rows = [line.split(",") for line in text.strip().split("\r\n")]
    assert rows[0] == ["period", "label:team", "amount_credits", "cumulative_credits"]
    # Cumulative by default: core 18.6 on Mar 2, + 1.08 of storage on Mar 3 = 19.68, then nothing;
    # the amount is each day's own all the same.
    assert ["2026-03-03", "core", "1.080000", "19.680000"] in rows
    assert ["2026-03-04", "platform", "5.110000", "5.110000"] in rows
    assert len(rows) == 1 + 3 * 3  # three days x three teams
    status, refused, _ = call(api, api_event("/v1/usage.csv", {"label.Team": "ml"}, sub="acct-r"))
    assert status == 400 and refused["error"]["message"].startswith("label.Team: a label key is")
