"""The credit-usage page (web/, served by WebPageFunction) in a real browser: headless Debian Chromium
driven by Playwright, against the whole stack served over a real socket.

Accounts live through the last three days (platform events older than 30 days are refused). The page
must show exactly what the API answers; it is signed in the way the platform does it
(``#token=<jwt>``; the local API reads an unsigned token's ``sub``). Screenshots go to ``out/``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from localsam.http_api import make_jwt
from localsam.runner import StackRunner
from tests.helpers import ROOT
from tests.travel import mid_month

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
# the page makes its first load's ten calls to a local server on a shared machine: give answers time
expect.set_options(timeout=15_000)

CHROMIUM = Path("/usr/bin/chromium")
WEB = ROOT / "web"
OUT = ROOT / "out"
OPERATOR = "arn:aws:iam::123456789012:role/billing-operator"
MAIN, EXHAUSTED, EMPTY = "page-main", "page-broke", "page-empty"
AI_USES = 25  # more than one page of the AI log (20)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError("/usr/bin/chromium is missing: `make test` installs it (apt-get install chromium)")
    pytest.skip("/usr/bin/chromium is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def _mid_month() -> Iterator[None]:
    """This module's stories happen "now": at a fixed moment mid-month, so that no month, day or year
    boundary changes their figures whatever the date the suite runs at."""
    with mid_month():
        yield


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def ensure_built() -> None:
    """web/dist as `make web` builds it, when missing or older than web/src (pytest run alone)."""
    built = WEB / "dist" / "index.html"
    sources = [*WEB.joinpath("src").iterdir(), WEB / "build.mjs"]
    if built.exists() and built.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return
    if not (WEB / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True)
    subprocess.run(["node", "build.mjs"], cwd=WEB, check=True)


class Platform:
    """Puts the platform's events through the stack's rules and queues."""

    def __init__(self, stack: StackRunner) -> None:
        self.stack, self.seq = stack, 0

    def event(self, at: datetime, account: str, detail_type: str, **fields: Any) -> None:
        self.seq += 1
        source = {"Account Created": "platform.accounts", "AI Usage Recorded": "platform.ai"}.get(
            detail_type, "platform.containers")
        detail = {"event_id": f"page-{self.seq}", "account_id": account, "occurred_at": iso(at), **fields}
        result = self.stack.put_event(source, detail_type, detail, time=at)
        assert result.ok, result

    def run(self, account: str, container: str, start: datetime, minutes: int, tier: str, **fields: Any) -> None:
        run_id = f"{container}-{start:%d%H%M}"
        self.event(start, account, "Container Started", container_id=container, run_id=run_id, tier=tier,
                   code_supporter=fields.pop("code_supporter", False))
        self.event(start + timedelta(minutes=minutes), account, "Container Stopped", container_id=container,
                   run_id=run_id, traffic_bytes=fields.pop("traffic_bytes", 0))


@pytest.fixture(scope="module")
def site(local_stack: StackRunner) -> dict[str, Any]:
    ensure_built()
    now = datetime.now(UTC).replace(microsecond=0)
    p, t0 = Platform(local_stack), now - timedelta(hours=75)
    for account, at in ((MAIN, t0), (EXHAUSTED, now - timedelta(hours=6)), (EMPTY, now - timedelta(minutes=2))):
        p.event(at, account, "Account Created", email=f"{account}@example.com", plan="free")
    p.event(t0 + timedelta(minutes=1), MAIN, "Container Created", container_id="web-1", storage_gb=10)
    for day in range(3):  # one run a day; AI uses spread over the days
        p.run(MAIN, "web-1", t0 + timedelta(days=day, hours=1), 60 + 30 * day, "small",
              code_supporter=day == 1, traffic_bytes=(day + 1) * 2**29)
    for i in range(AI_USES):
        p.event(t0 + timedelta(days=i % 3, hours=4, minutes=i), MAIN, "AI Usage Recorded", feature="chat",
                model="claude-haiku-4.5", input_tokens=1000 + i, output_tokens=200, container_id="web-1")
    # deleted: nothing accrues any more, so the balance the page shows is the one the test reads
    p.event(now - timedelta(minutes=10), MAIN, "Container Deleted", container_id="web-1")
    # 5 hours of a large container (27.2 credits an hour) against 50 free credits (100 should a month
    # begin meanwhile): exhausted, in debt
    p.event(now - timedelta(hours=6) + timedelta(minutes=1), EXHAUSTED, "Container Created", container_id="big",
            storage_gb=5)
    p.run(EXHAUSTED, "big", now - timedelta(hours=5, minutes=30), 300, "large")
    p.event(now - timedelta(minutes=9), EXHAUSTED, "Container Deleted", container_id="big")
    local_stack.drain()
    return {"base": local_stack.serve_api(0), "stack": local_stack,
            "run_day": (t0 + timedelta(days=2, hours=3)).strftime("%Y-%m-%d")}  # the last run's stop


def api(site: dict[str, Any], path: str, sub: str = MAIN, **query: Any) -> Any:
    response = site["stack"].api_request("GET", path, sub=sub, query=query)
    assert response.status == 200, response.body
    return response.json() if "json" in response.headers.get("content-type", "") else response.body


def token(sub: str, ttl: int = 3600) -> str:
    return make_jwt({"sub": sub, "exp": int(time.time()) + ttl})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=ARGS, accept_downloads=True,
            viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        # The page reads the month and a token's expiry from its own clock: the tests' (mid_month).
        context.clock.install(time=datetime.now(UTC))
        yield context
        context.close()


@pytest.fixture()
def open_page(site: dict[str, Any], browser: Any) -> Iterator[Any]:
    """A new tab (its own sessionStorage) signed in through ``#token=``; fails on any CSP report."""
    pages: list[Any] = []
    refused: list[str] = []

    def watch(message: Any) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    def open_(sub: str | None = MAIN, ttl: int = 3600, before: Any = None) -> Any:
        page = browser.new_page()
        page.on("console", watch)
        if before:
            before(page)
        page.goto(site["base"] + "/" + (f"#token={token(sub, ttl)}" if sub else ""))
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()
    assert refused == [], refused


def shown(credits: str) -> str:
    """A credit string as the page shows it: 2 decimals, half-up, thousands separators (en and ko)."""
    return f"{Decimal(credits).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"


def dollars(money: dict[str, Any]) -> str:
    return f"${Decimal(money['cents']) / 100:,.2f}"


def last_30_days() -> dict[str, str]:
    today = datetime.now(UTC).date()
    return {"from": str(today - timedelta(days=29)), "to": str(today)}


def chart_data(page: Any) -> list[float]:
    return page.evaluate("() => Chart.getChart('usage-canvas').data.datasets[0].data")


def text(page: Any, testid: str) -> Any:
    return expect(page.get_by_test_id(testid))


# ------------------------------------------------------------------------------------------ tests
def test_the_page_is_served_small_compressed_and_cached(site: dict[str, Any]) -> None:
    with urllib.request.urlopen(site["base"] + "/") as r:
        assert r.headers["content-type"].startswith("text/html") and r.headers["cache-control"] == "no-cache"
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        html = r.read().decode()
    chart = html.split('src="page/vendor/')[1].split('"')[0]
    app = html.split('<script type="module" src="page/')[1].split('"')[0]
    assert re.fullmatch(r"app\.[0-9a-f]{10}\.js", app), app  # named by its content's hash
    for name in (f"vendor/{chart}", app):
        request = urllib.request.Request(f"{site['base']}/page/{name}", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request) as r:
            assert "immutable" in r.headers["cache-control"] and r.headers["content-type"].startswith("text/javascript")
            assert r.headers["content-encoding"] == "gzip"
            assert len(gzip.decompress(r.read())) > 1000
    for bad in ("/page/../template.yaml", "/page/%2e%2e/%2e%2e/template.yaml", "/page/nothing.js", "/page/index.html"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(site["base"] + bad)
        assert refused.value.code == 404, bad


def test_signed_in_the_page_shows_what_the_api_says(site: dict[str, Any], open_page: Any) -> None:
    page = open_page()
    balance = api(site, "/v1/balance")
    for field in ("available", "remaining", "free", "purchased"):
        text(page, field).to_have_text(shown(balance[field]))
        text(page, field).to_have_attribute("title", balance[field])  # the exact amount on hover
    expect(page.get_by_test_id("debt")).to_be_hidden()  # no debt, no debt card
    assert "#token" not in page.url and page.evaluate("sessionStorage.length") == 1
    text(page, "account-id").to_have_text(MAIN)
    # the default period: the last 30 days, one call per figure
    usage = api(site, "/v1/usage", **last_30_days(), granularity="day", cumulative="true", unit="credits")
    text(page, "total").to_have_text(shown(usage["total"]))
    parts = [page.get_by_test_id(f"by-resource-{r}").inner_text() for r in usage["by_resource"]]
    # the parts shown add up to the total shown (largest remainder)
    assert sum(Decimal(p.replace(",", "")) for p in parts) == Decimal(shown(usage["total"]).replace(",", ""))
    assert float(usage["total"]) > 0
    expect(page.get_by_test_id("usage-chart")).to_be_visible()
    assert chart_data(page) == [float(p["cumulative"]) for p in usage["series"]]

    page.get_by_test_id("cumulative-toggle").click()  # bars: each day's own usage
    text(page, "cumulative-toggle").to_have_attribute("aria-pressed", "false")
    text(page, "usage-chart").to_contain_text("Usage per period in credits")
    assert chart_data(page) == [float(p["amount"]) for p in usage["series"]]

    page.get_by_test_id("unit-toggle").click()  # money, each figure as the API converts it
    usd = api(site, "/v1/usage", **last_30_days(), granularity="day", cumulative="false", unit="usd")
    text(page, "total").to_have_text(dollars(usd["total"]))
    text(page, "usage-chart").to_contain_text("Usage per period in money")
    assert chart_data(page) == [p["amount"]["cents"] / 100 for p in usd["series"]]

    page.get_by_test_id("unit-toggle").click()
    page.get_by_test_id("cumulative-toggle").click()
    text(page, "usage-chart").to_contain_text("Cumulative usage in credits")
    # one forecast, from the balance's hours_left: nothing runs on this account any more
    text(page, "hours-left").to_have_text("Nothing is using credits")
    expect(page.get_by_test_id("run-out-at")).to_be_hidden()
    OUT.mkdir(exist_ok=True)
    page.screenshot(path=OUT / "page-desktop.png", full_page=True)
    bottom = page.evaluate("document.getElementById('usage-chart').getBoundingClientRect().bottom + scrollY")
    page.screenshot(path=OUT / "credit-usage-page.png", full_page=True,  # the README's: down to the chart
                    clip={"x": 0, "y": 0, "width": 1280, "height": bottom + 16})


def test_first_load_asks_each_figure_once(site: dict[str, Any], open_page: Any) -> None:
    calls: list[str] = []

    def watch(page: Any) -> None:
        page.on("request", lambda request: calls.append(request.url) if "/v1/" in request.url else None)

    page = open_page(before=watch)
    expect(page.get_by_test_id("container-log-row").first).to_be_visible()
    expect(page.get_by_test_id("audit-log-row").first).to_be_visible()
    paths = [url.split(site["base"])[1].split("?")[0] for url in calls]
    assert sorted(set(paths)) == sorted(paths), paths  # no route asked twice (GET /v1/usage was)


def test_the_logs_page_day_by_day_and_download(site: dict[str, Any], open_page: Any) -> None:
    page = open_page()
    ai = api(site, "/v1/usage/ai", limit=20)
    rows = page.get_by_test_id("ai-log-row")
    expect(rows).to_have_count(20)
    expect(rows.first).to_contain_text(shown(ai["entries"][0]["credits"]))
    page.get_by_test_id("ai-log-next").click()
    expect(rows).to_have_count(AI_USES)
    expect(page.get_by_test_id("ai-log-next")).to_be_hidden()

    # the container log opens on the latest day with usage, not on an empty today
    usage = api(site, "/v1/usage", **last_30_days(), granularity="day", cumulative="false", unit="credits")
    latest = [p["date"] for p in usage["series"] if float(p["amount"]) > 0][-1]
    day, run_day = page.get_by_test_id("day-input"), site["run_day"]
    expect(day).to_have_value(latest)
    while day.input_value() > run_day:
        page.get_by_test_id("day-prev").click()
    expect(day).to_have_value(run_day)
    log = api(site, "/v1/usage/containers", date=run_day)["entries"]
    expect(page.get_by_test_id("container-log-row")).to_have_count(len(log))
    run = next(e for e in log if e["run_id"])
    row = page.get_by_test_id("container-log-row").filter(has_text=run["run_id"])
    expect(row).to_contain_text(shown(run["credits"]))
    expect(row).to_contain_text(f"{run['seconds'] // 3600} h")  # the last run: 2 h of small
    page.get_by_test_id("day-prev").click()
    expect(day).to_have_value((datetime.fromisoformat(run_day) - timedelta(days=1)).strftime("%Y-%m-%d"))
    page.get_by_test_id("day-next").click()
    expect(day).to_have_value(run_day)

    start, end = page.get_by_test_id("audit-from").input_value(), page.get_by_test_id("audit-to").input_value()
    with page.expect_download() as download:
        page.get_by_test_id("csv-download").click()
    csv = Path(download.value.path()).read_bytes().decode()
    assert csv == api(site, "/v1/ledger", format="csv", **{"from": start, "to": end})
    assert csv.startswith("entry_id,")  # exact amounts and UTC times in the export

    with page.expect_download() as download:
        page.get_by_test_id("usage-csv").click()
    usage_csv = Path(download.value.path()).read_bytes().decode()
    assert usage_csv == api(site, "/v1/usage.csv", **last_30_days(), granularity="day", unit="credits")


def test_the_audit_log_speaks_plain_words_with_a_running_balance(site: dict[str, Any], open_page: Any) -> None:
    balance = api(site, "/v1/balance", sub=EXHAUSTED)
    page = open_page(EXHAUSTED)
    rows = page.get_by_test_id("audit-log-row")
    expect(rows.first).to_be_visible()
    texts = rows.all_inner_texts()
    assert not any(re.search(r"[a-z]+_[a-z]+", t) for t in texts), texts  # no raw code
    amounts = page.locator("[data-testid=audit-log-row] td:nth-child(2)").all_inner_texts()
    assert all(a.strip("+−") != "0.00" for a in amounts), amounts  # no zero row
    assert any("Owed" in t for t in texts) and any("Not enough credits" in t for t in texts), texts
    # the balance after the last movement is the balance now: available less debt
    last = page.get_by_test_id("audit-balance").last
    expect(last).to_have_text(shown(str(Decimal(balance["available"]) - Decimal(balance["debt"]))))
    expect(page.get_by_test_id("exhausted-banner")).to_be_visible()
    text(page, "debt").to_have_text(shown(balance["debt"]))
    text(page, "available").to_have_text(shown(balance["available"]))
    page.screenshot(path=OUT / "page-in-debt.png", full_page=True)


def test_controls_change_the_account_and_show_their_state(site: dict[str, Any], open_page: Any) -> None:
    stack = site["stack"]
    created = stack.api_request("POST", "/v1/admin/coupons", iam=OPERATOR, body={
        "code": "PAGE-TEN", "credits": 10, "valid_days": 30,
        "expires_at": iso(datetime.now(UTC) + timedelta(days=60)), "max_redemptions": 5})
    assert created.status in (200, 201), created.body
    page = open_page()
    text(page, "available").to_have_text(shown(api(site, "/v1/balance")["available"]))
    page.get_by_test_id("coupon-code").fill("no-such-code")
    page.get_by_test_id("coupon-redeem").click()
    text(page, "coupon-error").to_contain_text("Check the spelling")
    page.get_by_test_id("coupon-code").fill("page-ten")
    page.get_by_test_id("coupon-redeem").click()
    text(page, "coupon-status").to_contain_text("Coupon redeemed: +10.00 credits")
    text(page, "available").to_have_text(shown(api(site, "/v1/balance")["available"]))

    page.get_by_test_id("check-in").click()
    text(page, "check-in-status").to_contain_text("Checked in: +5.00 credits")
    text(page, "available").to_have_text(shown(api(site, "/v1/balance")["available"]))
    expect(page.get_by_test_id("check-in")).to_be_disabled()  # checked in: no longer offered
    text(page, "check-in").to_have_text("Checked in today")

    mail = page.get_by_test_id("credit-mail")
    expect(mail).to_be_checked()
    mail.uncheck()
    text(page, "credit-mail-status").to_have_text("Credit mail is off.")
    assert api(site, "/v1/balance")["credit_mail"] is False
    mail.check()
    text(page, "credit-mail-status").to_have_text("Credit mail is on.")
    assert api(site, "/v1/balance")["credit_mail"] is True


def test_credit_controls_auto_top_up_spend_cap_and_alert_rules(site: dict[str, Any], open_page: Any) -> None:
    page = open_page()
    text(page, "auto-top-up-current").to_have_text("Off: nothing is bought automatically.")
    expect(page.get_by_test_id("auto-top-up-remove")).to_be_hidden()  # nothing to remove
    expect(page.get_by_test_id("auto-top-up-below")).to_be_disabled()
    page.get_by_test_id("auto-top-up-enabled").check()
    page.get_by_test_id("auto-top-up-below").fill("20")
    page.get_by_test_id("auto-top-up-credits").fill("100")
    page.get_by_test_id("auto-top-up-max").fill("2")
    page.get_by_test_id("auto-top-up-save").click()
    text(page, "auto-top-up-status").to_have_text("Auto top-up saved.")
    text(page, "auto-top-up-current").to_have_text(
        "On: buys 100.00 credits when remaining falls below 20.00, at most 2 times a month.")
    auto = api(site, "/v1/settings")["auto_top_up"]
    assert (auto["enabled"], auto["below"], auto["credits"], auto["max_per_month"]) == (True, "20.000000", 100, 2)
    page.get_by_test_id("auto-top-up-credits").fill("49")  # below the minimum purchase: refused on the page
    page.get_by_test_id("auto-top-up-save").click()
    text(page, "auto-top-up-error").to_have_text("Buy a whole number of credits from 50 to 1,000,000.")
    page.get_by_test_id("auto-top-up-remove").click()
    text(page, "auto-top-up-status").to_have_text("Auto top-up removed.")
    assert api(site, "/v1/settings")["auto_top_up"] is None

    page.get_by_test_id("spend-cap-input").fill("1250.5")
    page.get_by_test_id("spend-cap-save").click()
    text(page, "spend-cap-status").to_have_text("Spend cap saved.")
    text(page, "spend-cap-current").to_have_text("Cap: 1,250.50 credits a month.")
    assert api(site, "/v1/settings")["spend_cap"] == "1250.500000"
    page.get_by_test_id("spend-cap-remove").click()
    text(page, "spend-cap-current").to_have_text("No cap.")
    assert api(site, "/v1/settings")["spend_cap"] is None

    page.get_by_test_id("alert-kind").select_option("remaining_below")
    page.get_by_test_id("alert-threshold").fill("15")
    page.get_by_test_id("alert-add").click()
    expect(page.get_by_test_id("alert-row")).to_have_count(1)
    text(page, "alert-state").to_have_text("Watching")  # armed: it has not gone off
    [rule] = api(site, "/v1/alerts")["alerts"]
    assert (rule["kind"], rule["threshold"]) == ("remaining_below", "15.000000")
    page.get_by_test_id("alert-delete").click()
    expect(page.get_by_test_id("alert-row")).to_have_count(0)
    assert api(site, "/v1/alerts")["alerts"] == []


def test_a_new_account_sees_its_empty_state(site: dict[str, Any], open_page: Any) -> None:
    page = open_page(EMPTY)
    expect(page.get_by_test_id("empty-usage")).to_be_visible()
    expect(page.get_by_test_id("usage-chart")).to_be_hidden()
    text(page, "total").to_have_text("0.00")
    page.screenshot(path=OUT / "page-empty.png", full_page=True)


def test_an_unknown_account_is_told_what_to_do(site: dict[str, Any], open_page: Any) -> None:
    page = open_page("page-nobody")
    text(page, "no-account").to_contain_text("This account has no credits yet.")
    expect(page.get_by_test_id("available")).to_be_hidden()
    expect(page.get_by_test_id("error-banner")).to_be_hidden()


def test_an_expired_token_asks_to_sign_in_again(site: dict[str, Any], open_page: Any) -> None:
    page = open_page(MAIN, ttl=-60)
    expect(page.get_by_test_id("session-expired")).to_be_visible()
    text(page, "session-expired").to_contain_text("expired")
    expect(page.locator("#app")).to_be_hidden()
    # locally a sign-in that picks an account stands in for the platform's login
    page.get_by_test_id("sign-in-account").fill(MAIN)
    page.get_by_test_id("sign-in-submit").click()
    text(page, "available").to_have_text(shown(api(site, "/v1/balance")["available"]))


def test_an_api_error_shows_the_banner_and_try_again_recovers(site: dict[str, Any], open_page: Any) -> None:
    def usage(url: str) -> bool:
        return "/v1/usage?" in url

    def fail_usage(page: Any) -> None:
        page.route(usage, lambda route: route.fulfill(
            status=500, content_type="application/json", body=json.dumps({"message": "Internal Server Error"})))

    page = open_page(before=fail_usage)
    expect(page.get_by_test_id("error-banner")).to_be_visible()
    text(page, "usage-error").to_have_text("Something went wrong, try again")
    page.unroute(usage)
    page.get_by_test_id("error-retry").click()
    expect(page.get_by_test_id("error-banner")).to_be_hidden()
    text(page, "total").to_have_text(shown(api(site, "/v1/usage", **last_30_days())["total"]))


# ---------------------------------------------- shapes of the contract, by route interception
def fulfil(body: Any, status: int = 200) -> Any:
    return lambda route: route.fulfill(status=status, content_type="application/json", body=json.dumps(body))


RESOURCES = ("container", "storage", "traffic", "ai")


def test_parts_add_up_to_the_total_shown_and_unlabelled_usage_has_a_name(site: dict[str, Any], open_page: Any) -> None:
    """The API's own figures (usage in money: each part converted on its own) add up to a cent more
    than the total; the page apportions the total shown instead. Route interception: the shapes are
    the contract's."""
    def cents(n: int) -> dict[str, Any]:
        return {"currency": "USD", "cents": n, "amount_minor": n}
    money = {"total": cents(2488), "unit": "usd", "average_daily": cents(83),
             "by_resource": {"container": cents(623), "storage": cents(622), "traffic": cents(622), "ai": cents(622)},
             "series": [{"date": last_30_days()["to"], "amount": cents(2488), "cumulative": cents(2488)}],
             "projected_run_out": None}
    credit = {"total": "1244.000000", "unit": "credits", "average_daily": "41.466667",
              "by_resource": {"container": "311.004000", "storage": "311.004000", "traffic": "311.004000",
                              "ai": "310.988000"},
              "series": [{"date": last_30_days()["to"], "amount": "1244.000000", "cumulative": "1244.000000"}],
              "groups": [{"key": None, "total": "622.006000", "series": []},
                         {"key": "web", "total": "621.994000", "series": []}],
              "projected_run_out": None}

    def usage(route: Any) -> None:
        fulfil(money if "unit=usd" in route.request.url else credit)(route)

    page = open_page(before=lambda p: p.route(lambda url: "/v1/usage?" in url, usage))
    # credits: 311.004 x 3 + 310.988 = 1244.000; rounded down 311.00 x 3 + 310.98 = 1243.98, two
    # hundredths short: the largest remainders get them, .008 (ai) then the first .004 (container)
    text(page, "total").to_have_text("1,244.00")
    shown_parts = [page.get_by_test_id(f"by-resource-{r}").inner_text() for r in RESOURCES]
    assert shown_parts == ["311.01", "311.00", "311.00", "310.99"], shown_parts
    text(page, "by-resource-ai").to_have_attribute("title", "310.988000")
    page.get_by_test_id("group-by").select_option("tier")
    rows = page.get_by_test_id("usage-group-row")
    expect(rows.first).to_contain_text("(no label)")  # unlabelled usage has a name, not a blank
    expect(rows.first).to_contain_text("622.01")
    expect(rows.nth(1)).to_contain_text("621.99")  # 622.01 + 621.99 = 1,244.00
    page.get_by_test_id("unit-toggle").click()
    # money: 6.23 + 6.22 x 3 = 24.89 against 24.88: apportioned by the parts, the first loses the cent
    text(page, "total").to_have_text("$24.88")
    shown_parts = [page.get_by_test_id(f"by-resource-{r}").inner_text() for r in RESOURCES]
    assert sum(Decimal(p.strip("$")) for p in shown_parts) == Decimal("24.88"), shown_parts


def test_one_forecast_how_long_and_until_when(site: dict[str, Any], open_page: Any) -> None:
    balance = api(site, "/v1/balance")

    def answer(route: Any) -> None:
        fulfil({**balance, "hours_left": 1958.5, "hourly_burn": "0.640000"})(route)

    page = open_page(before=lambda p: p.route(lambda url: url.endswith("/v1/balance"), answer))
    text(page, "hours-left").to_have_text("About 81 days")  # 1958.5 h = 81.6 days
    run_out = datetime.now(UTC) + timedelta(hours=1958.5)
    text(page, "run-out-at").to_contain_text(f"{run_out:%b} {run_out.day}, {run_out.year}")
    expect(page.get_by_text("Nothing is using credits")).to_have_count(0)


STRIPE_FAKE = """
window.Stripe = function (key) {
  window.stripeKey = key;
  return {
    elements: () => ({ create: () => ({ mount(el) { const i = document.createElement('input');
      i.setAttribute('aria-label', 'Card number'); i.dataset.testid = 'card-number'; el.append(i); },
      unmount() {} }) }),
    confirmCardPayment: async (secret) => {
      window.paidWith = secret; return { paymentIntent: { status: 'succeeded' } }; },
    confirmCardSetup: async (secret) => { window.setupWith = secret; return { setupIntent: { status: 'succeeded' } }; },
  };
};
"""


def test_buying_pays_with_stripe_saves_a_card_and_shows_the_receipt(site: dict[str, Any], open_page: Any) -> None:
    """Stripe's backend is not on this branch: POST /v1/purchases answers the contract's `payment`,
    Stripe.js is a stand-in served from the page's origin (as the page's configuration names it), and
    GET /v1/purchases/{id} the paid purchase with its receipt, all by route interception."""
    base = site["base"]
    purchase = {"purchase_id": "pur_stripe1", "credits": "500.000000", "price": {"currency": "USD", "cents": 1000},
                "status": "pending", "created_at": iso(datetime.now(UTC)),
                "payment": {"provider": "stripe", "payment_intent_id": "pi_1", "client_secret": "pi_1_secret_x"}}
    paid = {**purchase, "status": "paid", "paid_at": iso(datetime.now(UTC)), "refund": None, "auto": False,
            "receipt": {"number": "R-000042", "credits": "500.000000", "price": {"currency": "USD", "cents": 1000},
                        "paid_at": iso(datetime.now(UTC)), "payment_reference": "pi_1"}}
    asked: list[str] = []

    def setup(page: Any) -> None:
        def index(route: Any) -> None:
            response = route.fetch()
            html = response.text().replace('name="billing-stripe-js" content=""',
                                           f'name="billing-stripe-js" content="{base}/test-only/stripe-v3.js"')
            html = html.replace('name="billing-stripe-key" content=""', 'name="billing-stripe-key" content="pk_test_1"')
            route.fulfill(response=response, body=html)
        page.route(f"{base}/", index)
        page.route("**/test-only/stripe-v3.js", lambda r: r.fulfill(body=STRIPE_FAKE, content_type="text/javascript"))
        page.route(lambda url: url.endswith("/v1/purchases/pur_stripe1"), fulfil(paid))

        def purchases(route: Any) -> None:
            asked.append(route.request.method)
            if route.request.method == "POST":
                fulfil(purchase, 201)(route)
            else:
                route.fallback()
        page.route(lambda url: url.endswith("/v1/purchases"), purchases)
        page.route(lambda url: url.endswith("/v1/payment-methods"), fulfil({"client_secret": "seti_1_secret_y"}, 201))

    page = open_page(before=setup)
    page.get_by_test_id("buy-credits-amount").fill("500")
    page.get_by_test_id("buy-credits").click()
    expect(page.get_by_test_id("pay")).to_be_visible()
    text(page, "pay-panel").to_contain_text("Pay $10.00")
    page.screenshot(path=OUT / "page-mid-purchase.png", full_page=False)
    page.get_by_test_id("pay").click()
    receipt = page.get_by_test_id("receipt")
    expect(receipt).to_be_visible()
    expect(receipt).to_contain_text("R-000042")
    expect(receipt).to_contain_text("500.00")
    expect(receipt).to_contain_text("$10.00")
    assert page.evaluate("window.paidWith") == "pi_1_secret_x" and page.evaluate("window.stripeKey") == "pk_test_1"
    text(page, "purchase-status").to_contain_text("500.00 credits were added")
    with page.expect_download() as download:
        page.get_by_test_id("receipt-pdf").click()
    assert Path(download.value.path()).read_bytes()[:5] == b"%PDF-"
    assert download.value.suggested_filename == "receipt-R-000042.pdf"

    page.get_by_test_id("payment-method").click()
    page.get_by_test_id("save-card").click()
    text(page, "payment-method-status").to_contain_text("Card saved")
    assert page.evaluate("window.setupWith") == "seti_1_secret_y"


def test_a_team_sees_members_limits_and_activity(site: dict[str, Any], open_page: Any) -> None:
    """A team's members, limits and activity (GET /v1/members, PUT /v1/members/{id}/limit, GET
    /v1/activity answer the contract's shapes by route interception, to show every role). A personal
    account, whose members are its owner alone, is offered no members list."""
    members = {"members": [
        {"user_id": MAIN, "role": "owner", "email": "owner@example.com", "monthly_limit": None,
         "spent_this_month": "1200.500000"},
        {"user_id": "dev-1", "role": "member", "email": "dev@example.com", "monthly_limit": "200.000000",
         "spent_this_month": "199.995000"}]}
    activity = {"entries": [{"at": iso(datetime.now(UTC)), "actor": "owner@example.com",
                             "action": "member.limit_set", "details": {"user_id": "dev-1"}}], "next_cursor": None}
    limits: list[Any] = []

    def setup(role: str) -> Any:
        def install(page: Any) -> None:
            body = json.loads(json.dumps(members))
            body["members"][0]["role"] = role
            page.route(lambda url: url.endswith("/v1/members"), fulfil(body))
            page.route(lambda url: "/v1/activity" in url, fulfil(activity))

            def limit(route: Any) -> None:
                limits.append(json.loads(route.request.post_data))
                fulfil({"user_id": "dev-1", "monthly_limit": "250.000000"})(route)
            page.route(lambda url: url.endswith("/v1/members/dev-1/limit"), limit)
        return install

    plain = open_page()
    text(plain, "available").to_be_visible()
    # a personal account (its owner alone): no members offered, its own activity still shown
    expect(plain.locator("#members-block")).to_be_hidden()

    page = open_page(before=setup("owner"))
    rows = page.get_by_test_id("members").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("200.00")  # 199.995 half-up
    expect(page.get_by_test_id("activity")).to_contain_text("set a member's monthly limit")
    page.get_by_label("Monthly limit of dev@example.com in credits (empty: no limit)").fill("250")
    page.get_by_test_id("member-limit").nth(1).click()
    text(page, "members-status").to_contain_text("dev@example.com may now use 250.00 credits a month.")
    assert limits == [{"monthly_limit": "250"}]
    page.screenshot(path=OUT / "page-team.png", full_page=True)

    member = open_page(before=setup("member"))
    expect(member.get_by_test_id("members").locator("tbody tr")).to_have_count(2)
    expect(member.get_by_test_id("member-limit")).to_have_count(0)  # a member may not set limits
    expect(member.get_by_test_id("auto-top-up-save")).to_be_hidden()
    expect(member.get_by_test_id("spend-cap-save")).to_be_hidden()


def test_the_account_switcher_acts_on_the_chosen_account(site: dict[str, Any], browser: Any) -> None:
    """The platform's link names the organization's account with the token (`#token=…&account=<id>`;
    no token claim lists a user's accounts): the page opens on it, sending it as `Billing-Account`,
    and the switcher offers it and the user's own account. (GET /v1/balance answers the other
    account's balance by route interception when the header names it.) A token with an `accounts`
    claim and no link offers nothing more: the claim is not read."""
    broke = api(site, "/v1/balance", sub=EXHAUSTED)
    headers: list[str | None] = []

    def balance(route: Any) -> None:
        named = route.request.headers.get("billing-account")
        headers.append(named)
        if named == EXHAUSTED:
            fulfil(broke)(route)
        else:
            route.fallback()

    page = browser.new_page()
    page.route(lambda url: url.endswith("/v1/balance"), balance)
    jwt = make_jwt({"sub": MAIN, "exp": int(time.time()) + 3600})
    page.goto(site["base"] + f"/#token={jwt}&account={EXHAUSTED}")
    switcher = page.get_by_test_id("account-switcher")
    expect(switcher).to_be_visible()
    expect(page.get_by_test_id("exhausted-banner")).to_be_visible()
    text(page, "debt").to_have_text(shown(broke["debt"]))
    assert headers[0] == EXHAUSTED and "account=" not in page.url  # the link leaves the address bar
    switcher.select_option(MAIN)
    text(page, "available").to_have_text(shown(api(site, "/v1/balance")["available"]))
    assert headers[-1] is None
    page.close()

    claimed = browser.new_page()
    jwt = make_jwt({"sub": MAIN, "exp": int(time.time()) + 3600, "accounts": [MAIN, EXHAUSTED]})
    claimed.goto(site["base"] + f"/#token={jwt}")
    text(claimed, "available").to_have_text(shown(api(site, "/v1/balance")["available"]))
    expect(claimed.get_by_test_id("account-switcher")).to_be_hidden()
    claimed.close()


# ------------------------------------------------------------- Korean, phone, accessibility
LATIN_ALLOWED = {"US", "GB", "MB", "KB", "AI", "CSV", "UTC", "PDF", "Code", "Supporter", "English", "small", "large",
                 "medium", "xlarge", "YYYY", "MM", "project", "web", "Chat", "claude", "haiku"}


def untranslated(page: Any) -> list[str]:
    """Visible text outside identifiers (ids, codes: .mono, translate=no) with a Latin word."""
    found = page.evaluate("""() => {
      const out = [];
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const el = n.parentElement;
        if (!el || el.closest('script, style, .mono, [translate=no], [data-no-i18n], option')) continue;
        if (!el.checkVisibility()) continue;
        const text = n.nodeValue.trim();
        const where = el.closest('[data-testid]');
        if (text) out.push(text + (/[A-Za-z]{2}/.test(text) && where ? ` @${where.dataset.testid}` : ''));
      }
      for (const el of document.querySelectorAll('[aria-label], [placeholder]')) {
        if (el.closest('[data-no-i18n]') || !el.checkVisibility()) continue;
        for (const a of ['aria-label', 'placeholder']) if (el.getAttribute(a)) out.push(el.getAttribute(a));
      }
      return out;
    }""")
    return [t for t in found if any(w not in LATIN_ALLOWED for w in re.findall(r"[A-Za-z]{2,}", t.split(" @")[0])
                                    if not w.startswith(("page", "web", "pur", "lot")))]


def settled(read: Any, want: Any, tries: int = 40) -> bool:
    """The API's answer becomes ``want`` (the page's PUT is on its way), within about 10 s."""
    for _ in range(tries):
        if read() == want:
            return True
        time.sleep(0.25)
    return False


def test_in_korean_nothing_is_left_in_english(site: dict[str, Any], open_page: Any) -> None:
    page = open_page()
    balance = api(site, "/v1/balance")
    text(page, "available").to_have_text(shown(balance["available"]))
    expect(page.get_by_test_id("ai-log-row").first).to_be_visible()
    expect(page.get_by_test_id("audit-log-row").first).to_be_visible()
    try:
        page.get_by_test_id("language").select_option("ko")
        expect(page.locator("html")).to_have_attribute("lang", "ko")
        expect(page.locator("#balance-title")).to_have_text("잔액과 요금제")
        # every section asks again and answers in Korean (the local server takes its time)
        expect(page.get_by_test_id("plan-badge")).to_have_text("무료 요금제", timeout=20_000)
        expect(page.get_by_test_id("ai-log-row").first).to_contain_text("채팅", timeout=20_000)
        expect(page.get_by_test_id("audit-log-row").first).to_contain_text("크레딧 추가", timeout=20_000)
        text(page, "available").to_have_text(shown(balance["available"]))
        for section in ("containers", "ai", "audit", "controls"):
            expect(page.locator(f"#{section}-body")).to_be_visible()
        left = untranslated(page)
        for _ in range(40):  # until every section's answer has come back in Korean
            if not left:
                break
            page.wait_for_timeout(250)
            left = untranslated(page)
        assert left == [], left
        assert settled(lambda: api(site, "/v1/settings")["locale"], "ko")  # the page saved the choice
        # a fresh tab follows the account's setting
        again = open_page()
        expect(again.locator("#balance-title")).to_have_text("잔액과 요금제")
        page.get_by_test_id("time-zone").select_option("Asia/Seoul")
        expect(page.get_by_test_id("time-zone")).to_have_value("Asia/Seoul")
        assert settled(lambda: api(site, "/v1/settings")["time_zone"], "Asia/Seoul")
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=OUT / "page-phone-ko-open.png", full_page=True)
    finally:
        response = site["stack"].api_request("PUT", "/v1/settings", sub=MAIN, body={"locale": None, "time_zone": None})
        assert response.status == 200, response.body
        page.evaluate("localStorage.clear()")


def run_axe(page: Any, axe: str, base: str, name: str) -> None:
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.route("**/test-only/axe.min.js", lambda route: route.fulfill(body=axe, content_type="text/javascript"))
        page.add_script_tag(url=base + "/test-only/axe.min.js")
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result
               if v["impact"] in ("serious", "critical")]
    assert serious == [], f"{name}: {serious}"


@pytest.mark.parametrize("language", ["en", "ko"])
@pytest.mark.parametrize("account", [MAIN, EXHAUSTED, EMPTY])
def test_accessibility_and_the_phone_layout(site: dict[str, Any], open_page: Any, account: str, language: str) -> None:
    axe = (WEB / "dist" / "vendor" / "axe.min.js").read_text()
    choose = f"localStorage.setItem('billing.language', '{language}')"
    page = open_page(account, before=lambda p: p.add_init_script(choose))
    text(page, "available").to_have_text(shown(api(site, "/v1/balance", sub=account)["available"]))
    expect(page.locator("html")).to_have_attribute("lang", language)
    for width, height, name in ((1280, 800, "desktop"), (390, 844, "phone")):
        page.set_viewport_size({"width": width, "height": height})
        if name == "phone":  # collapsed sections open one by one: every state checked
            for section in ("containers", "ai", "audit", "controls"):
                page.locator(f"#{section}-title button").click()
                expect(page.locator(f"#{section}-body")).to_be_visible()
        run_axe(page, axe, site["base"], f"{account} {language} {name}")
        if name == "phone":
            assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing scrolls sideways
    if account == MAIN:
        page.reload()
        text(page, "available").to_be_visible()
        assert page.evaluate("document.documentElement.scrollHeight") < 4000  # sections start collapsed
        page.screenshot(path=OUT / f"page-phone-{language}.png", full_page=True)
