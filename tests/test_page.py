"""The credit-usage page (web/, served by WebPageFunction) in a real browser: headless Debian Chromium
driven by Playwright, against the whole stack served over a real socket.

Accounts live through the last three days (platform events older than 30 days are refused). The page
must show exactly what the API answers; it is signed in the way the platform does it
(``#token=<jwt>``; the local API reads an unsigned token's ``sub``). Screenshots go to ``out/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from localsam.http_api import make_jwt
from localsam.runner import StackRunner
from tests.helpers import ROOT
from tests.travel import mid_month

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

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


def chart_data(page: Any) -> list[float]:
    return page.evaluate("() => Chart.getChart('usage-canvas').data.datasets[0].data")


def text(page: Any, testid: str) -> Any:
    return expect(page.get_by_test_id(testid))


# ------------------------------------------------------------------------------------------ tests
def test_the_page_is_served_with_strict_headers(site: dict[str, Any]) -> None:
    with urllib.request.urlopen(site["base"] + "/") as r:
        assert r.headers["content-type"].startswith("text/html") and r.headers["cache-control"] == "no-cache"
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        html = r.read().decode()
    chart = html.split('src="page/vendor/')[1].split('"')[0]
    with urllib.request.urlopen(f"{site['base']}/page/vendor/{chart}") as r:
        assert "immutable" in r.headers["cache-control"] and r.headers["content-type"].startswith("text/javascript")
    for bad in ("/page/../template.yaml", "/page/%2e%2e/%2e%2e/template.yaml", "/page/nothing.js", "/page/index.html"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(site["base"] + bad)
        assert refused.value.code == 404, bad


def test_signed_in_the_page_shows_what_the_api_says(site: dict[str, Any], open_page: Any) -> None:
    page = open_page()
    balance, month = api(site, "/v1/balance"), datetime.now(UTC).strftime("%Y-%m")
    for field in ("available", "remaining", "debt", "free", "purchased"):
        text(page, field).to_have_text(balance[field])
    assert "#token" not in page.url and page.evaluate("sessionStorage.length") == 1
    text(page, "account-id").to_have_text(MAIN)
    usage = api(site, "/v1/usage", month=month, granularity="day", cumulative="true", unit="credits")
    text(page, "total").to_have_text(usage["total"])
    for resource, amount in usage["by_resource"].items():
        text(page, f"by-resource-{resource}").to_have_text(amount)
    assert float(usage["total"]) > 0
    expect(page.get_by_test_id("usage-chart")).to_be_visible()
    assert chart_data(page) == [float(p["cumulative"]) for p in usage["series"]]

    page.get_by_test_id("cumulative-toggle").click()  # daily bars
    text(page, "cumulative-toggle").to_have_attribute("aria-pressed", "false")
    text(page, "usage-chart").to_contain_text("Daily usage in credits")
    daily = api(site, "/v1/usage", month=month, granularity="day", cumulative="false", unit="credits")
    assert chart_data(page) == [float(p["amount"]) for p in daily["series"]]
    # The bars are each day's own usage whichever the request's mode (it was the running total).
    assert chart_data(page) == [float(p["amount"]) for p in usage["series"]]

    page.get_by_test_id("unit-toggle").click()  # dollars, each figure as the API converts it
    usd = api(site, "/v1/usage", month=month, granularity="day", cumulative="false", unit="usd")
    text(page, "total").to_have_text(f"${usd['total']['cents'] // 100}.{usd['total']['cents'] % 100:02d}")
    for resource, money in usd["by_resource"].items():
        text(page, f"by-resource-{resource}").to_have_text(f"${money['cents'] // 100}.{money['cents'] % 100:02d}")
    text(page, "usage-chart").to_contain_text("Daily usage in dollars")
    assert chart_data(page) == [p["amount"]["cents"] / 100 for p in usd["series"]]

    page.get_by_test_id("unit-toggle").click()
    page.get_by_test_id("cumulative-toggle").click()
    text(page, "usage-chart").to_contain_text("Cumulative usage in credits")
    OUT.mkdir(exist_ok=True)
    page.screenshot(path=OUT / "page-desktop.png", full_page=True)
    bottom = page.evaluate("document.getElementById('usage-chart').getBoundingClientRect().bottom + scrollY")
    page.screenshot(path=OUT / "credit-usage-page.png", full_page=True,  # the README's: down to the chart
                    clip={"x": 0, "y": 0, "width": 1280, "height": bottom + 16})


def test_the_logs_page_day_by_day_and_download(site: dict[str, Any], open_page: Any) -> None:
    page = open_page()
    ai = api(site, "/v1/usage/ai", limit=20)
    rows = page.get_by_test_id("ai-log-row")
    expect(rows).to_have_count(20)
    expect(rows.first).to_contain_text(ai["entries"][0]["credits"])
    page.get_by_test_id("ai-log-next").click()
    expect(rows).to_have_count(AI_USES)
    expect(page.get_by_test_id("ai-log-next")).to_be_hidden()

    day, run_day = page.get_by_test_id("day-input"), site["run_day"]
    while day.input_value() > run_day:
        page.get_by_test_id("day-prev").click()
    expect(day).to_have_value(run_day)
    log = api(site, "/v1/usage/containers", date=run_day)["entries"]
    expect(page.get_by_test_id("container-log-row")).to_have_count(len(log))
    run = next(e for e in log if e["run_id"])
    row = page.get_by_test_id("container-log-row").filter(has_text=run["run_id"])
    expect(row).to_contain_text(run["credits"])
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
    assert csv.startswith("entry_id,")


def test_controls_change_the_account(site: dict[str, Any], open_page: Any) -> None:
    stack = site["stack"]
    created = stack.api_request("POST", "/v1/admin/coupons", iam=OPERATOR, body={
        "code": "PAGE-TEN", "credits": 10, "valid_days": 30,
        "expires_at": iso(datetime.now(UTC) + timedelta(days=60)), "max_redemptions": 5})
    assert created.status in (200, 201), created.body
    page = open_page()
    text(page, "available").to_have_text(api(site, "/v1/balance")["available"])
    page.get_by_test_id("coupon-code").fill("page-ten")
    page.get_by_test_id("coupon-redeem").click()
    text(page, "coupon-status").to_contain_text("Coupon redeemed: +10.000000 credits")
    text(page, "available").to_have_text(api(site, "/v1/balance")["available"])

    page.get_by_test_id("check-in").click()
    text(page, "check-in-status").to_contain_text("Checked in: +5.000000 credits")
    text(page, "available").to_have_text(api(site, "/v1/balance")["available"])
    page.get_by_test_id("check-in").click()
    text(page, "check-in-error").to_have_text("Already checked in today.")

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
    text(page, "auto-top-up-current").to_have_text("Off: no automatic purchases.")
    page.get_by_test_id("auto-top-up-enabled").check()
    page.get_by_test_id("auto-top-up-below").fill("20")
    page.get_by_test_id("auto-top-up-credits").fill("100")
    page.get_by_test_id("auto-top-up-max").fill("2")
    page.get_by_test_id("auto-top-up-save").click()
    text(page, "auto-top-up-status").to_have_text("Auto top-up saved.")
    text(page, "auto-top-up-current").to_have_text(
        "On: buy 100 credits when remaining falls below 20.000000, at most 2 times a month.")
    auto = api(site, "/v1/settings")["auto_top_up"]
    assert (auto["enabled"], auto["below"], auto["credits"], auto["max_per_month"]) == (True, "20.000000", 100, 2)
    page.get_by_test_id("auto-top-up-credits").fill("49")  # below the minimum purchase: refused on the page
    page.get_by_test_id("auto-top-up-save").click()
    text(page, "auto-top-up-error").to_have_text("Buy a whole number of credits from 50 to 1,000,000.")
    page.get_by_test_id("auto-top-up-remove").click()
    text(page, "auto-top-up-status").to_have_text("Auto top-up removed.")
    assert api(site, "/v1/settings")["auto_top_up"] is None

    page.get_by_test_id("spend-cap-input").fill("250.5")
    page.get_by_test_id("spend-cap-save").click()
    text(page, "spend-cap-status").to_have_text("Spend cap saved.")
    text(page, "spend-cap-current").to_have_text("Cap: 250.500000 credits a month.")
    assert api(site, "/v1/settings")["spend_cap"] == "250.500000"
    page.get_by_test_id("spend-cap-remove").click()
    text(page, "spend-cap-current").to_have_text("No cap.")
    assert api(site, "/v1/settings")["spend_cap"] is None

    page.get_by_test_id("alert-kind").select_option("remaining_below")
    page.get_by_test_id("alert-threshold").fill("15")
    page.get_by_test_id("alert-add").click()
    expect(page.get_by_test_id("alert-row")).to_have_count(1)
    [rule] = api(site, "/v1/alerts")["alerts"]
    assert (rule["kind"], rule["threshold"]) == ("remaining_below", "15.000000")
    page.get_by_test_id("alert-delete").click()
    expect(page.get_by_test_id("alert-row")).to_have_count(0)
    assert api(site, "/v1/alerts")["alerts"] == []


def test_an_exhausted_account_sees_its_debt(site: dict[str, Any], open_page: Any) -> None:
    balance = api(site, "/v1/balance", sub=EXHAUSTED)
    assert balance["exhausted"] and float(balance["debt"]) > 0, balance
    page = open_page(EXHAUSTED)
    expect(page.get_by_test_id("exhausted-banner")).to_be_visible()
    text(page, "debt").to_have_text(balance["debt"])
    text(page, "available").to_have_text(balance["available"])


def test_a_month_without_usage_shows_the_empty_state(site: dict[str, Any], open_page: Any) -> None:
    page = open_page(EMPTY)
    expect(page.get_by_test_id("empty-usage")).to_be_visible()
    expect(page.get_by_test_id("usage-chart")).to_be_hidden()
    text(page, "total").to_have_text("0.000000")


def test_an_expired_token_asks_to_sign_in_again(site: dict[str, Any], open_page: Any) -> None:
    page = open_page(MAIN, ttl=-60)
    expect(page.get_by_test_id("session-expired")).to_be_visible()
    text(page, "session-expired").to_contain_text("expired")
    expect(page.locator("#app")).to_be_hidden()
    # locally a sign-in that picks an account stands in for the platform's login
    page.get_by_test_id("sign-in-account").fill(MAIN)
    page.get_by_test_id("sign-in-submit").click()
    text(page, "available").to_have_text(api(site, "/v1/balance")["available"])


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
    month = datetime.now(UTC).strftime("%Y-%m")
    text(page, "total").to_have_text(api(site, "/v1/usage", month=month)["total"])


def test_accessibility_and_the_phone_layout(site: dict[str, Any], open_page: Any) -> None:
    axe = (WEB / "dist" / "vendor" / "axe.min.js").read_text()
    page = open_page()
    text(page, "available").to_have_text(api(site, "/v1/balance")["available"])
    expect(page.get_by_test_id("ai-log-row")).to_have_count(20)
    # axe comes from this origin (the CSP allows no other script), served from the file by the test
    page.route("**/test-only/axe.min.js", lambda route: route.fulfill(body=axe, content_type="text/javascript"))
    page.add_script_tag(url=site["base"] + "/test-only/axe.min.js")
    for width, height, name in ((1280, 900, "desktop"), (390, 844, "phone")):
        page.set_viewport_size({"width": width, "height": height})
        result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
        serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result
                   if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{name}: {serious}"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than a phone
    page.screenshot(path=OUT / "page-phone.png", full_page=True)
