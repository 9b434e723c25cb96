"""The usage API against DynamoDB Local: a scripted month for one account, every figure derived by hand
from billing-rules.md (small 6.80 cr/h, micro 1.96 cr/h, Code Supporter 1.96 cr/h, storage 0.018
cr/GB/h above 5 GB on the Free plan, traffic 8 cr/GB beyond 10 GiB a month, claude-haiku-4.5 0.00008 /
0.0004 and gpt-5-mini 0.00002 / 0.00016 per token, 1 credit = $0.02)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest

from billing.domain.amounts import format_credits
from billing.domain.clock import parse_time
from billing.store.cursors import CursorCodec
from billing.store.ledger import Ledger
from tests.api_helpers import RequestCounter, api_event, call
from tests.helpers import GIB, ROOT, Platform, load_handler, wire
from tests.helpers import grant as give

C = 1_000_000
API = load_handler("usage_api")
NOW = datetime(2026, 3, 20, 12, 0, 0, tzinfo=UTC)
SECRET = "test-cursor-secret"


def cr(text: str) -> int:
    """Hand-written credits as µcr ("0.018" -> 18000)."""
    return int(Decimal(text) * C)


def grant(ledger: Ledger, account: str, event_id: str, at: str, kind: str, credits: str,
          expires: datetime | None, reason: str) -> None:
    give(ledger, account, event_id, parse_time(at), kind, cr(credits), expires, reason)  # type: ignore[arg-type]


def ai(p: Platform, at: str, feature: str, model: str, tin: int, tout: int, container: str | None) -> None:
    fields: dict[str, Any] = {"feature": feature, "model": model, "input_tokens": tin, "output_tokens": tout}
    if container:
        fields["container_id"] = container
    p.send("AI Usage Recorded", at, **fields)


@pytest.fixture()
def month(ledger: Ledger) -> Platform:
    """Free plan (50 monthly credits, 5 GB free storage). February: a check-in (5 cr, valid to
    2026-03-10T09:00). March: c1 with 6 GB (1 billable GB), two runs, traffic, three AI uses, then a
    purchase of 100 credits and a check-in."""
    p = Platform(ledger, "acct-1")
    p.send("Account Created", "2026-02-05T08:00:00Z", email="a@example.com", plan="free")
    grant(ledger, "acct-1", "checkin-feb", "2026-02-10T09:00:00Z", "event", "5",
          datetime(2026, 3, 10, 9, tzinfo=UTC), "daily_check_in")
    p.send("Container Created", "2026-03-12T10:00:00Z", container_id="c1", storage_gb=6)
    p.send("Container Started", "2026-03-12T10:00:00Z", container_id="c1", run_id="r1", tier="small",
           code_supporter=True)
    p.send("Container Traffic Reported", "2026-03-12T11:00:00Z", container_id="c1", run_id="r1",
           traffic_bytes=8 * GIB)
    p.send("Container Stopped", "2026-03-12T12:30:00Z", container_id="c1", run_id="r1", traffic_bytes=3 * GIB)
    ai(p, "2026-03-13T09:00:00Z", "chat", "claude-haiku-4.5", 1000, 500, "c1")
    ai(p, "2026-03-14T15:00:00Z", "snap", "gpt-5-mini", 10000, 2000, None)
    ai(p, "2026-03-15T07:00:00Z", "ai_supporter", "claude-haiku-4.5", 100, 100, "c1")
    p.send("Container Started", "2026-03-15T08:00:00Z", container_id="c1", run_id="r2", tier="micro",
           code_supporter=False)
    p.send("Container Stopped", "2026-03-15T09:00:00Z", container_id="c1", run_id="r2", traffic_bytes=0)
    grant(ledger, "acct-1", "purchase-1", "2026-03-16T10:00:00Z", "purchased", "100", None, "purchase")
    grant(ledger, "acct-1", "checkin-mar", "2026-03-17T07:00:00Z", "event", "5",
          datetime(2026, 4, 17, 7, tzinfo=UTC), "daily_check_in")
    wire(API, ledger=ledger, cursor_codec=CursorCodec(SECRET), clock=lambda: NOW)
    return p


# Hand-derived March figures (µcr).
SMALL_R1 = cr("6.80") * 9000 // 3600  # 2.5 h = 17.0
CS_R1 = cr("1.96") * 9000 // 3600  # 4.9
STORAGE_R1 = cr("0.018") * 9000 // 3600  # 1 GB x 2.5 h = 0.045
TRAFFIC_R1 = cr("8")  # 8 + 3 GiB = 11 GiB; 1 GiB beyond the 10 GiB allowance
STORAGE_GAP = cr("0.018") * 675 // 10  # 12th 12:30 -> 15th 08:00 = 67.5 h = 1.215
MICRO_R2 = cr("1.96")  # 1 h
STORAGE_R2 = cr("0.018")  # 1 h
AI_CHAT = 1000 * 80 + 500 * 400  # 0.28
AI_SNAP = 10000 * 20 + 2000 * 160  # 0.52
AI_SUPPORTER = 100 * 80 + 100 * 400  # 0.048
CONTAINER = SMALL_R1 + CS_R1 + MICRO_R2
STORAGE = STORAGE_R1 + STORAGE_GAP + STORAGE_R2
TRAFFIC = TRAFFIC_R1
AI_TOTAL = AI_CHAT + AI_SNAP + AI_SUPPORTER
TOTAL = CONTAINER + STORAGE + TRAFFIC + AI_TOTAL
DAILY = {12: SMALL_R1 + CS_R1 + STORAGE_R1 + TRAFFIC_R1, 13: AI_CHAT, 14: AI_SNAP,
         15: AI_SUPPORTER + STORAGE_GAP + MICRO_R2 + STORAGE_R2}


def cents(micro: int) -> int:
    return int((Decimal(micro) / C * Decimal("0.02") * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_hand_figures_are_consistent() -> None:
    assert cr("33.986") == TOTAL
    assert sum(DAILY.values()) == TOTAL
    assert (cr("23.86"), cr("1.278"), cr("8"), cr("0.848")) == (CONTAINER, STORAGE, TRAFFIC, AI_TOTAL)


def test_balance(month: Platform) -> None:
    version = month.state().version
    status, body, _ = call(API, api_event("/v1/balance"))
    assert status == 200, body
    monthly_left = cr("50") - TOTAL  # March usage paid by the March lot (the Feb check-in expired on the 10th)
    accrued = cr("0.018") * 123  # storage from 15th 09:00 to 20th 12:00 = 123 h, 1 billable GB
    available = monthly_left + cr("5") + cr("100")
    remaining = available - accrued
    assert body["account_id"] == "acct-1"
    assert body["plan"] == "free"
    assert body["available"] == format_credits(available) == "121.014000"
    assert body["free"] == format_credits(monthly_left + cr("5"))
    assert body["purchased"] == "100.000000"
    assert body["debt"] == "0.000000"
    assert body["exhausted"] is False
    assert body["credit_mail"] is True
    assert body["accrued"] == format_credits(accrued) == "2.214000"
    assert body["remaining"] == format_credits(remaining) == "118.800000"
    assert body["hourly_burn"] == "0.018000"
    assert body["hours_left"] == 6600.0  # 118.8 / 0.018
    assert body["next_monthly_grant_at"] == "2026-04-01T00:00:00Z"
    lots = {lot["lot_id"]: lot for lot in body["lots"]}
    assert [lot["lot_id"] for lot in body["lots"]] == ["monthly-2026-03", "event-checkin-mar", "purchased-purchase-1"]
    assert lots["monthly-2026-03"]["remaining"] == format_credits(monthly_left)
    assert lots["event-checkin-mar"]["expires_at"] == "2026-04-17T07:00:00Z"
    assert lots["purchased-purchase-1"]["expires_at"] is None
    assert [(e["lot_id"], e["expires_at"]) for e in body["upcoming_expirations"]] == [
        ("monthly-2026-03", "2026-04-01T00:00:00Z"), ("event-checkin-mar", "2026-04-17T07:00:00Z")]
    assert month.state().version == version  # nothing written


def test_balance_rolls_a_month_in_memory_without_writing(month: Platform) -> None:
    wire(API, ledger=month.ledger, cursor_codec=CursorCodec(SECRET), clock=lambda: datetime(2026, 4, 2, tzinfo=UTC))
    version = month.state().version
    status, body, _ = call(API, api_event("/v1/balance"))
    assert status == 200
    # The boundary settles storage 15th 09:00 -> Apr 1 (399 h) from the March lot, which then expires;
    # April's 50 credits arrive; one day of storage has accrued since.
    assert body["available"] == "155.000000"
    assert body["free"] == "55.000000"
    assert body["accrued"] == format_credits(cr("0.018") * 24)
    assert body["next_monthly_grant_at"] == "2026-05-01T00:00:00Z"
    assert [lot["lot_id"] for lot in body["lots"]] == ["event-checkin-mar", "monthly-2026-04", "purchased-purchase-1"]
    assert month.state().version == version


def test_usage_current_month(month: Platform) -> None:
    status, body, _ = call(API, api_event("/v1/usage", {"month": "2026-03", "cumulative": "false"}))
    assert status == 200, body
    assert body["month"] == "2026-03" and body["unit"] == "credits"
    assert body["total"] == format_credits(TOTAL) == "33.986000"
    assert body["by_resource"] == {"container": "23.860000", "storage": "1.278000", "traffic": "8.000000",
                                   "ai": "0.848000"}
    assert sum(cr(v) for v in body["by_resource"].values()) == cr(body["total"])
    assert [p["date"] for p in body["series"]] == [f"2026-03-{d:02d}" for d in range(1, 21)]
    running = 0
    for day, point in enumerate(body["series"], start=1):
        running += DAILY.get(day, 0)
        assert point["amount"] == format_credits(DAILY.get(day, 0))
        assert point["cumulative"] == format_credits(running)
    average = TOTAL // 20  # 1.6993 exactly
    assert body["average_daily"] == format_credits(average) == "1.699300"
    remaining = cr("118.8")
    seconds = remaining * 86400 // average
    expected = datetime.fromtimestamp(NOW.timestamp() + seconds, UTC)
    assert body["projected_run_out"] == expected.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_usage_default_month_cumulative_and_filters(month: Platform) -> None:
    # Cumulative by default (interfaces.md): the page draws the running total, ``cumulative``; each
    # point's ``amount`` is its day's own all the same (billing-rules.md, "Where features meet").
    _, default, _ = call(API, api_event("/v1/usage"))
    assert default["month"] == "2026-03" and default["total"] == "33.986000" and default["cumulative_mode"] is True
    assert default["series"][-1]["cumulative"] == "33.986000"
    assert default["series"][-1]["amount"] == "0.000000"  # nothing used on the 20th
    _, daily, _ = call(API, api_event("/v1/usage", {"cumulative": "false"}))
    assert daily["series"] == default["series"]
    assert sum(cr(p["amount"]) for p in daily["series"]) == cr("33.986")
    _, ai_only, _ = call(API, api_event("/v1/usage", {"resource": "ai", "cumulative": "false"}))
    assert ai_only["total"] == "0.848000"
    assert [p["amount"] for p in ai_only["series"][12:15]] == ["0.280000", "0.520000", "0.048000"]
    _, c1, _ = call(API, api_event("/v1/usage", {"container_id": "c1"}))
    # The snap (no container) is not the container's; chat and AI Supporter named c1.
    assert c1["total"] == format_credits(TOTAL - AI_SNAP)
    assert c1["by_resource"]["ai"] == format_credits(AI_CHAT + AI_SUPPORTER)
    _, none, _ = call(API, api_event("/v1/usage", {"container_id": "nope"}))
    assert none["total"] == "0.000000"


def test_usage_in_dollars(month: Platform) -> None:
    status, body, _ = call(API, api_event("/v1/usage", {"unit": "usd"}))
    assert status == 200
    assert body["unit"] == "usd"
    assert body["total"] == {"currency": "USD", "amount_minor": 68, "cents": 68}  # 33.986 x 0.02 = 0.67972
    assert body["by_resource"] == {
        "container": {"currency": "USD", "amount_minor": 48, "cents": 48},  # 0.4772
        "storage": {"currency": "USD", "amount_minor": 3, "cents": 3},  # 0.02556
        "traffic": {"currency": "USD", "amount_minor": 16, "cents": 16},
        "ai": {"currency": "USD", "amount_minor": 2, "cents": 2},  # 0.01696
    }
    assert body["series"][11]["amount"] == {"currency": "USD", "amount_minor": cents(DAILY[12]),
                                            "cents": cents(DAILY[12])}  # 0.5989 -> 60
    assert body["series"][-1]["cumulative"] == {"currency": "USD", "amount_minor": 68, "cents": 68}


def test_usage_past_month(month: Platform) -> None:
    _, body, _ = call(API, api_event("/v1/usage", {"month": "2026-02"}))
    assert body["total"] == "0.000000" and len(body["series"]) == 28
    assert body["projected_run_out"] is None


def test_usage_makes_a_constant_number_of_requests(month: Platform) -> None:
    counter = RequestCounter(month.ledger.models)
    call(API, api_event("/v1/usage"))
    assert counter.calls == ["BatchGetItem", "Query"]  # the balance item, the month's day aggregates


def test_container_log(month: Platform) -> None:
    status, body, _ = call(API, api_event("/v1/usage/containers", {"date": "2026-03-12"}))
    assert status == 200, body
    assert body["date"] == "2026-03-12"
    # One row per deduction and container: the stop's time, Code Supporter, traffic and storage.
    [run] = body["entries"]
    assert (run["container_id"], run["run_id"], run["tier"], run["seconds"], run["code_supporter"]) == (
        "c1", "r1", "small", 9000, True)
    assert (run["traffic_bytes"], run["storage_gb"], run["billable_gb"]) == (11 * GIB, 6, 1)
    # 29.9 for the run (time, Code Supporter, traffic) and 1 GB x 0.018 x 2.5 h = 0.045 of storage
    assert run["credits"] == format_credits(SMALL_R1 + CS_R1 + TRAFFIC_R1 + 45_000) == "29.945000"
    assert run["deducted_at"] == "2026-03-12T12:30:00Z"
    _, day15, _ = call(API, api_event("/v1/usage/containers", {"date": "2026-03-15"}))
    assert [(e["run_id"], e["credits"], e["deducted_at"]) for e in day15["entries"]] == [
        (None, "1.215000", "2026-03-15T08:00:00Z"),
        ("r2", "1.978000", "2026-03-15T09:00:00Z"),  # micro 1 h 1.96 + storage 0.018
    ]
    assert day15["entries"][1]["tier"] == "micro" and day15["entries"][1]["code_supporter"] is False
    _, empty, _ = call(API, api_event("/v1/usage/containers", {"date": "2026-03-13"}))
    assert empty["entries"] == []


def test_ai_log_pages_newest_first(month: Platform) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(5):
        query = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        status, body, _ = call(API, api_event("/v1/usage/ai", query))
        assert status == 200, body
        seen.extend(body["entries"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [(e["type"], e["container_id"], e["model"], e["input_tokens"], e["output_tokens"], e["credits"], e["at"])
            for e in seen] == [
        ("AI Supporter", "c1", None, 100, 100, "0.048000", "2026-03-15T07:00:00Z"),
        ("Snap", None, None, 10000, 2000, "0.520000", "2026-03-14T15:00:00Z"),
        ("Chat", "c1", "claude-haiku-4.5", 1000, 500, "0.280000", "2026-03-13T09:00:00Z"),
    ]
    _, all_at_once, _ = call(API, api_event("/v1/usage/ai"))
    assert len(all_at_once["entries"]) == 3 and all_at_once["next_cursor"] is None


def test_ledger_pages_every_entry_once_and_adds_up(month: Platform) -> None:
    direct = month.entries()
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        query = {"from": "2026-02-01", "to": "2026-03-31", "limit": "2"} | ({"cursor": cursor} if cursor else {})
        status, body, _ = call(API, api_event("/v1/ledger", query))
        assert status == 200, body
        assert len(body["entries"]) <= 2
        seen.extend(body["entries"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [e["entry_id"] for e in seen] == [e.entry_id for e in direct]
    assert len({e["entry_id"] for e in seen}) == len(seen)
    march = [e for e in seen if e["at"].startswith("2026-03")]
    deductions = [e for e in march if e["type"] == "deduction"]
    assert sum(cr(e["amount"]) for e in deductions) == TOTAL
    assert all(sum(cr(p["amount"]) for p in e["paid_by"]) == cr(e["amount"]) for e in deductions)
    assert all(p["lot_id"] == "monthly-2026-03" for e in deductions for p in e["paid_by"])
    expiries = [(e["amount"], e["at"], e["reason"]) for e in seen if e["type"] == "expiry"]
    assert expiries == [("50.000000", "2026-03-01T00:00:00Z", "monthly_credits_expired"),
                        ("5.000000", "2026-03-10T09:00:00Z", "event_credits_expired")]
    grants = [(e["amount"], e["reason"]) for e in seen if e["type"] == "grant"]
    assert grants == [("50.000000", "monthly_credits_free"), ("5.000000", "daily_check_in"),
                      ("50.000000", "monthly_credits_free"), ("100.000000", "purchase"),
                      ("5.000000", "daily_check_in")]
    stop = next(e for e in seen if e["at"] == "2026-03-12T12:30:00Z")
    assert {(ln["resource"], ln["item"], ln["amount"]) for ln in stop["lines"]} == {
        ("container", "small", "17.000000"), ("container", "code_supporter", "4.900000"),
        ("traffic", "traffic", "8.000000"), ("storage", "storage", "0.045000")}


def test_ledger_default_range_and_csv(month: Platform) -> None:
    _, body, _ = call(API, api_event("/v1/ledger"))
    _, everything, _ = call(API, api_event("/v1/ledger", {"from": "2000-01-01"}))
    assert body["entries"] == everything["entries"]  # no range: the whole history
    assert body["entries"][0]["type"] == "grant" and body["entries"][0]["reason"].startswith("monthly_credits")
    _, body, _ = call(API, api_event("/v1/ledger", {"from": "2026-03-01"}))
    assert body["entries"][0]["at"].startswith("2026-03")
    status, text, headers = call(API, api_event("/v1/ledger", {"from": "2026-03-01", "format": "csv"}))
    assert status == 200
    assert headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["entry_id"] for r in rows] == [e["entry_id"] for e in body["entries"]]
    assert sum(cr(r["amount"]) for r in rows if r["type"] == "deduction") == TOTAL
    assert "x-next-cursor" not in headers


def test_cursors_are_bound_and_signed(month: Platform) -> None:
    Platform(month.ledger, "acct-2").send("Account Created", "2026-03-01T00:00:00Z", email="b@example.com",
                                          plan="free")
    _, page, _ = call(API, api_event("/v1/usage/ai", {"limit": "1"}))
    cursor = page["next_cursor"]
    status, body, _ = call(API, api_event("/v1/usage/ai", {"limit": "1", "cursor": cursor}, sub="acct-2"))
    assert status == 400 and body["error"]["code"] == "invalid_input"
    tampered = ("A" if cursor[0] != "A" else "B") + cursor[1:]
    assert call(API, api_event("/v1/usage/ai", {"cursor": tampered}))[0] == 400
    resigned = cursor[:-1] + ("0" if cursor[-1] != "0" else "1")
    assert call(API, api_event("/v1/usage/ai", {"cursor": resigned}))[0] == 400
    assert call(API, api_event("/v1/usage/ai", {"cursor": "garbage"}))[0] == 400
    # A valid cursor of one log is not one of the other.
    assert call(API, api_event("/v1/ledger", {"cursor": cursor}))[0] == 400
    _, lpage, _ = call(API, api_event("/v1/ledger", {"from": "2026-02-01", "limit": "1"}))
    assert call(API, api_event("/v1/usage/ai", {"cursor": lpage["next_cursor"]}))[0] == 400
    # A cursor outside the range asked for (DynamoDB would refuse the start key) is a 400, not a 500.
    assert call(API, api_event("/v1/ledger", {"cursor": lpage["next_cursor"], "from": "2026-03-01"}))[0] == 400


BAD_PARAMS = [
    ("/v1/usage", {"month": "2026-13"}),
    ("/v1/usage", {"month": "0000-01"}),
    ("/v1/usage", {"month": "March"}),
    ("/v1/usage", {"unit": "eur"}),
    ("/v1/usage", {"resource": "gpu"}),
    ("/v1/usage", {"granularity": "week"}),
    ("/v1/usage", {"label.Team": "ml"}),
    ("/v1/usage", {"label.team": ""}),
    ("/v1/usage", {"container": "c1", "container_id": "c2"}),
    ("/v1/usage.csv", {"group_by": "colour"}),
    ("/v1/usage.csv", {"from": "2026-03-01"}),
    ("/v1/usage", {"cumulative": "maybe"}),
    ("/v1/usage", {"container_id": ""}),
    ("/v1/usage/containers", {}),
    ("/v1/usage/containers", {"date": "2026-02-30"}),
    ("/v1/usage/containers", {"date": "yesterday"}),
    ("/v1/usage/ai", {"limit": "0"}),
    ("/v1/usage/ai", {"limit": "101"}),
    ("/v1/usage/ai", {"limit": "ten"}),
    ("/v1/ledger", {"from": "2026-03-32"}),
    ("/v1/ledger", {"from": "2026-03-20", "to": "2026-03-01"}),
    ("/v1/ledger", {"to": "2026-03-01T00:00:00+09:00"}),
    ("/v1/ledger", {"format": "xml"}),
    ("/v1/ledger", {"limit": "-1"}),
    ("/v1/ledger", {"cursor": ""}),
]


def test_bad_params_are_400(ledger: Ledger) -> None:
    Platform(ledger, "acct-1").send("Account Created", "2026-03-01T00:00:00Z", email="a@example.com", plan="free")
    wire(API, ledger=ledger, cursor_codec=CursorCodec(SECRET), clock=lambda: NOW)
    for path, query in BAD_PARAMS:
        status, body, _ = call(API, api_event(path, query))
        assert status == 400, (path, query, body)
        assert body["error"]["code"] == "invalid_input" and body["error"]["message"]


def test_auth_and_unknown_account(month: Platform) -> None:
    assert call(API, api_event("/v1/balance", sub=None))[0] == 401
    assert call(API, api_event("/v1/balance", sub="acct-nobody"))[0] == 404
    assert call(API, api_event("/v1/usage", sub="acct-nobody"))[0] == 404
    _, body, _ = call(API, api_event("/v1/usage/ai", sub="acct-nobody"))
    assert body == {"entries": [], "next_cursor": None}
    assert call(API, api_event("/v1/nothing"))[0] == 404


def test_sample_events_of_every_route(ledger: Ledger) -> None:
    """The files in events/usage_api drive the real handler: 200 for each route, 400 for invalid-*."""
    Platform(ledger, "acct-sample").send("Account Created", "2026-11-01T00:00:00Z", email="s@example.com",
                                         plan="free")
    wire(API, ledger=ledger, cursor_codec=CursorCodec(SECRET), clock=lambda: datetime(2026, 11, 2, 14, tzinfo=UTC))
    samples = sorted((ROOT / "events" / "usage_api").glob("*.json"))
    routes = set()
    for path in samples:
        event = json.loads(path.read_text())
        status, body, _ = call(API, event)
        assert status == (400 if path.name.startswith("invalid-") else 200), (path.name, body)
        routes.add(event["rawPath"])
    assert routes == {"/v1/balance", "/v1/usage", "/v1/usage/containers", "/v1/usage/ai", "/v1/ledger"}
