"""Issue 22's "Done when", as one story: a new user of a team's account, on a phone (390×844), in
Korean (the browser's language), answers from the page alone how many credits are left, when they
run out, what used them this week, by which project (label) and which member; buys credits, pays
(the Stripe stand-in's test card), saves a card, sees the receipt and sets a limit (spend cap and a
member's limit); and nowhere on the page is a raw code or a number with more than two decimals.
Every figure read is compared with the API's answer.

The stack has no Stripe here (its stand-in, localstripe, confirms payments only through a 3-D Secure
modal of its own): Stripe.js is the small stand-in the other pay test uses, served from the page's
origin, that accepts the test card 4242 4242 4242 4242 and has the payment provider confirm the
payment through the stack's signed payment webhook (``POST /v1/webhooks/payments``). The purchase,
its price, its receipt and the balance are the API's own; only two Stripe-only answers are added by
route interception: the purchase's ``payment`` (the PaymentIntent's client secret) and ``POST
/v1/payment-methods`` (a SetupIntent's client secret).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from localsam.aws import LOCAL_PARAMETERS
from localsam.http_api import make_jwt
from localsam.runner import StackRunner
from tests.test_page import ARGS, CHROMIUM, OUT, WEB, Platform, ensure_built, iso, run_axe, shown
from tests.travel import mid_month

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
expect.set_options(timeout=15_000)

TEAM, ANA, BO = "page-team", "ana", "bo"
SEOUL = ZoneInfo("Asia/Seoul")
TEST_CARD = "4242424242424242"
# Snake-case words (container_stopped, insufficient_credits, member_limit, user_id) and numbers with
# more than two decimals ("1255.850760"): neither may be read anywhere on the page.
RAW_CODE = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")
LONG_DECIMAL = re.compile(r"\d\.\d{3,}")

STRIPE_STAND_IN = """
window.Stripe = function (key) {
  let input = null;
  const card = () => ({
    mount(el) { input = document.createElement('input'); input.setAttribute('aria-label', 'Card number');
      input.dataset.testid = 'card-number'; input.inputMode = 'numeric'; el.append(input); },
    unmount() { input?.remove(); input = null; } });
  const tested = () => (input?.value || '').replace(/\\s/g, '') === '4242424242424242';
  return {
    elements: () => ({ create: card }),
    confirmCardPayment: async (secret) => {
      if (!tested()) return { error: { message: 'Your card number is incorrect.' } };
      await window.providerConfirms(secret);  // the provider's webhook, as after a real charge
      return { paymentIntent: { status: 'succeeded' } };
    },
    confirmCardSetup: async (secret) => {
      if (!tested()) return { error: { message: 'Your card number is incorrect.' } };
      window.setupWith = secret; return { setupIntent: { status: 'succeeded' } };
    },
  };
};
"""


@pytest.fixture(scope="module", autouse=True)
def _mid_month() -> Iterator[None]:
    with mid_month():
        yield


def confirm_payment(stack: StackRunner, purchase: dict[str, Any]) -> None:
    """The payment provider's signed ``payment.succeeded`` (contract: Payment webhook)."""
    body = json.dumps({"id": f"evt-{purchase['purchase_id']}", "type": "payment.succeeded",
                       "purchase_id": purchase["purchase_id"], "amount": purchase["price"],
                       "created_at": iso(datetime.now(UTC))})
    t = str(int(time.time()))
    secret = LOCAL_PARAMETERS["PaymentWebhookSecret"].encode()
    signature = hmac.new(secret, f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    response = stack.api_request("POST", "/v1/webhooks/payments", body=body, headers={
        "Billing-Signature": f"t={t},v1={signature}", "content-type": "application/json"})
    assert response.status == 200, response.body


class TeamPlatform(Platform):
    """The page tests' platform, with the members' events (``platform.accounts``)."""

    def event(self, at: datetime, account: str, detail_type: str, **fields: Any) -> None:
        if detail_type != "Member Added":
            super().event(at, account, detail_type, **fields)
            return
        self.seq += 1
        detail = {"event_id": f"team-{self.seq}", "account_id": account, "occurred_at": iso(at), **fields}
        assert self.stack.put_event("platform.accounts", detail_type, detail, time=at).ok


@pytest.fixture(scope="module")
def team(local_stack: StackRunner) -> dict[str, Any]:
    """A team's account three days old: 1,000 bought credits, two members, two labelled projects;
    bo's api container is running now (so the credits have a run-out date)."""
    ensure_built()
    now = datetime.now(UTC).replace(microsecond=0)
    p, t0 = TeamPlatform(local_stack), now - timedelta(hours=75)
    p.event(t0, TEAM, "Account Created", email="team@example.com", plan="free")
    for user in (ANA, BO):
        p.event(t0, TEAM, "Member Added", user_id=user, role="member", email=f"{user}@example.com")
    for container, project, user in (("team-web", "web", ANA), ("team-api", "api", BO)):
        p.event(t0 + timedelta(minutes=1), TEAM, "Container Created", container_id=container, storage_gb=2,
                labels={"project": project}, user_id=user)
    for day, (container, user, minutes) in enumerate((("team-web", ANA, 60), ("team-api", BO, 90),
                                                      ("team-web", ANA, 120))):
        start = t0 + timedelta(days=day, hours=1)
        run = f"{container}-{day}"
        p.event(start, TEAM, "Container Started", container_id=container, run_id=run, tier="small",
                code_supporter=False, user_id=user)
        p.event(start + timedelta(minutes=minutes), TEAM, "Container Stopped", container_id=container, run_id=run,
                traffic_bytes=2**28, user_id=user)
    local_stack.drain()
    bought = local_stack.api_request("POST", "/v1/purchases", sub=TEAM, body={"credits": 1000})
    assert bought.status == 201, bought.body
    confirm_payment(local_stack, bought.json())
    p.event(now - timedelta(minutes=30), TEAM, "Container Started", container_id="team-api", run_id="team-api-now",
            tier="small", code_supporter=False, user_id=BO)
    local_stack.drain()
    return {"base": local_stack.serve_api(0), "stack": local_stack}


def api(team: dict[str, Any], path: str, **query: Any) -> Any:
    response = team["stack"].api_request("GET", path, sub=TEAM, query=query)
    assert response.status == 200, response.body
    return response.json()


def apportioned(total: str, parts: list[str]) -> list[str]:
    """The parts as shown (billing-rules.md: largest remainder): each rounded down to 0.01, the
    hundredths still missing to the total shown going to the largest remainders, earlier first."""
    hundredth = Decimal("0.01")
    target = Decimal(total).quantize(hundredth, rounding=ROUND_HALF_UP)
    floors = [Decimal(p).quantize(hundredth, rounding=ROUND_FLOOR) for p in parts]
    order = sorted(range(len(parts)), key=lambda i: (-(Decimal(parts[i]) - floors[i]), i))
    for i in order[: int((target - sum(floors)) / hundredth)]:
        floors[i] += hundredth
    return [f"{f:,.2f}" for f in floors]


def visible_text(page: Any) -> list[str]:
    """Every text a person can read on the page: visible text nodes (a select shows its chosen
    option only) and the value of visible inputs."""
    return page.evaluate("""() => {
      const out = [];
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const el = n.parentElement;
        if (!el || el.closest('script, style') || !n.nodeValue.trim()) continue;
        const option = el.closest('option');
        if (option ? !option.selected || !option.parentElement.checkVisibility() : !el.checkVisibility()) continue;
        out.push(n.nodeValue.trim());
      }
      const fields = 'input:not([type=hidden]):not([type=checkbox]):not([type=radio])';
      for (const input of document.querySelectorAll(fields)) {
        if (input.checkVisibility() && input.value) out.push(input.value);
      }
      return out;
    }""")


def expand_everything(page: Any) -> None:
    closed = page.evaluate("""() => [...document.querySelectorAll('button.section-toggle[aria-expanded=false]')]
      .filter((b) => b.checkVisibility()).map((b) => b.getAttribute('aria-controls'))""")
    for body in closed:
        page.locator(f"button.section-toggle[aria-controls={body}]").click()
        expect(page.locator(f"#{body}")).to_be_visible()
    page.evaluate("() => document.querySelectorAll('details').forEach((d) => { d.open = true; })")


def no_raw_code_nor_long_decimal(page: Any, where: str) -> None:
    expand_everything(page)
    texts = visible_text(page)
    codes = [s for s in texts if RAW_CODE.search(s)]
    decimals = [s for s in texts if LONG_DECIMAL.search(s)]
    assert codes == [] and decimals == [], f"{where}: raw codes {codes}, long decimals {decimals}"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, where  # nothing scrolls sideways


@pytest.fixture()
def phone(team: dict[str, Any]) -> Iterator[Any]:
    """A new user's phone: 390×844, Korean, in Seoul; the team's own token (its owner)."""
    with playwright_api.sync_playwright() as pw, tempfile.TemporaryDirectory() as profile:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=[*ARGS, "--lang=ko-KR"],
            viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True, locale="ko-KR",
            timezone_id="Asia/Seoul", accept_downloads=True)
        context.set_default_timeout(10_000)
        context.clock.install(time=datetime.now(UTC))
        yield context
        context.close()


def test_a_new_user_on_a_phone_in_korean_answers_everything_from_the_page(team: dict[str, Any], phone: Any) -> None:
    base, stack = team["base"], team["stack"]
    page = phone.new_page()
    confirmed: list[str] = []

    def provider_confirms(secret: str) -> None:
        purchase = stack.api_request("GET", f"/v1/purchases/{secret.split('_secret_')[0]}", sub=TEAM).json()
        confirm_payment(stack, purchase)
        confirmed.append(purchase["purchase_id"])

    def index(route: Any) -> None:  # the page's configuration names Stripe.js and its key
        response = route.fetch()
        html = response.text().replace('name="billing-stripe-js" content=""',
                                       f'name="billing-stripe-js" content="{base}/test-only/stripe-v3.js"')
        route.fulfill(response=response, body=html.replace('name="billing-stripe-key" content=""',
                                                           'name="billing-stripe-key" content="pk_test_local"'))

    def purchases(route: Any) -> None:  # the API's purchase, with the PaymentIntent Stripe would add
        if route.request.method != "POST":
            route.fallback()
            return
        response = route.fetch()
        body = response.json()
        body["payment"] = {"provider": "stripe", "payment_intent_id": f"pi_{body['purchase_id']}",
                           "client_secret": f"{body['purchase_id']}_secret_local"}
        route.fulfill(response=response, body=json.dumps(body))

    page.expose_function("providerConfirms", provider_confirms)
    page.route(f"{base}/", index)
    page.route("**/test-only/stripe-v3.js", lambda r: r.fulfill(body=STRIPE_STAND_IN, content_type="text/javascript"))
    page.route(lambda url: url.endswith("/v1/purchases"), purchases)
    page.route(lambda url: url.endswith("/v1/payment-methods"), lambda r: r.fulfill(
        status=201, content_type="application/json", body=json.dumps({"client_secret": "seti_local_secret_card"})))
    page.goto(f"{base}/#token={make_jwt({'sub': TEAM, 'exp': int(time.time()) + 3600})}")

    # in Korean without asking: the browser's language
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    expect(page.locator("#balance-title")).to_have_text("잔액과 요금제")
    # a font stack that names Korean fonts the systems have (this machine may have none: boxes here)
    fonts = page.evaluate("getComputedStyle(document.body).fontFamily")
    assert all(f in fonts for f in ('"Apple SD Gothic Neo"', '"Malgun Gothic"', '"Noto Sans KR"')), fonts

    # the help (shipped with the page: page/help.html) explains the page's words, in Korean
    help_link = page.get_by_test_id("help")
    expect(help_link).to_have_attribute("href", "page/help.html#ko")
    help_page = phone.new_page()
    help_page.goto(f"{base}/page/help.html#ko")
    expect(help_page.locator("#ko")).to_be_visible()
    expect(help_page.locator("#en")).to_be_hidden()
    for term in ("남은 크레딧", "미납", "(라벨 없음)", "월 지출 한도", "최근 7일"):
        expect(help_page.locator("#ko")).to_contain_text(term)
    run_axe(help_page, (WEB / "dist" / "vendor" / "axe.min.js").read_text(), base, "help ko")
    help_page.goto(f"{base}/page/help.html")  # without a language: English
    expect(help_page.locator("#en")).to_be_visible()
    expect(help_page.locator("#ko")).to_be_hidden()
    help_page.close()

    # how many credits are left
    balance = api(team, "/v1/balance")
    expect(page.get_by_test_id("available")).to_have_text(shown(balance["available"]))
    expect(page.get_by_test_id("available")).to_have_attribute("title", balance["available"])

    # when they run out: one forecast, the API's (6.8 credits an hour against about 1,000: days)
    assert balance["hours_left"] is not None and balance["hours_left"] > 48, balance
    days = int(balance["hours_left"] // 24)
    expect(page.get_by_test_id("hours-left")).to_have_text(f"약 {days}일")
    run_out = (datetime.now(UTC) + timedelta(hours=balance["hours_left"])).astimezone(SEOUL)
    expect(page.get_by_test_id("run-out-at")).to_contain_text(f"{run_out.year}. {run_out.month}. {run_out.day}.")
    expect(page.get_by_test_id("hourly-burn")).to_have_text(shown(balance["hourly_burn"]))
    no_raw_code_nor_long_decimal(page, "first load")

    # what used them this week: the last 7 days, by usage type
    page.get_by_test_id("period-7d").click()
    today = datetime.now(UTC).date()
    week = {"from": str(today - timedelta(days=6)), "to": str(today)}
    expect(page.get_by_test_id("range-from")).to_have_value(week["from"])
    usage = api(team, "/v1/usage", **week, granularity="day", unit="credits", cumulative="true")
    expect(page.get_by_test_id("total")).to_have_text(shown(usage["total"]))
    resources = ("container", "storage", "traffic", "ai")
    parts = apportioned(usage["total"], [usage["by_resource"][r] for r in resources])
    for resource, part in zip(resources, parts, strict=True):
        expect(page.get_by_test_id(f"by-resource-{resource}")).to_have_text(part)
    assert Decimal(usage["by_resource"]["container"]) > 0

    # by which project: broken down by the label `project`
    page.get_by_test_id("group-by").select_option("label")
    page.get_by_test_id("group-label-key").fill("project")
    page.get_by_test_id("usage-apply").click()
    by_project = api(team, "/v1/usage", **week, granularity="day", unit="credits", cumulative="true",
                     group_by="label:project")["groups"]
    assert {g["key"] for g in by_project} >= {"web", "api"}, by_project
    rows = page.get_by_test_id("usage-group-row")
    expect(rows).to_have_count(len(by_project))
    shown_groups = apportioned(usage["total"], [g["total"] for g in by_project])
    for i, group in enumerate(by_project):
        expect(rows.nth(i)).to_contain_text(group["key"] or "(라벨 없음)")
        expect(rows.nth(i)).to_contain_text(shown_groups[i])

    # and by which member: their addresses, not their ids
    page.get_by_test_id("group-by").select_option("user")
    by_member = api(team, "/v1/usage", **week, granularity="day", unit="credits", cumulative="true",
                    group_by="user")["groups"]
    assert {g["key"] for g in by_member} >= {ANA, BO}, by_member
    expect(rows).to_have_count(len(by_member))
    shown_members = apportioned(usage["total"], [g["total"] for g in by_member])
    for i, group in enumerate(by_member):
        expect(rows.nth(i)).to_contain_text(f"{group['key']}@example.com" if group["key"] else "(멤버 없음)")
        expect(rows.nth(i)).to_contain_text(shown_members[i])
    no_raw_code_nor_long_decimal(page, "usage this week")
    page.screenshot(path=OUT / "page-done-phone-ko-usage.png", full_page=True)

    # buy more and pay with the test card
    before = Decimal(balance["available"])
    page.locator("#controls-title button").scroll_into_view_if_needed()
    page.get_by_test_id("buy-credits-amount").fill("500")
    page.get_by_test_id("buy-credits").click()
    expect(page.get_by_test_id("pay")).to_be_visible()
    [pending] = [p for p in api(team, "/v1/purchases")["purchases"] if p["status"] == "pending"]
    price = Decimal(pending["price"]["cents"]) / 100
    expect(page.get_by_test_id("pay-panel")).to_contain_text(f"US${price:,.2f}")
    page.get_by_test_id("card-number").fill("4000 0000 0000 0002")  # not the test card: refused, nothing paid
    page.get_by_test_id("pay").click()
    expect(page.get_by_test_id("pay-error")).to_be_visible()
    assert confirmed == []
    page.get_by_test_id("card-number").fill("4242 4242 4242 4242")
    page.get_by_test_id("pay").click()
    receipt = page.get_by_test_id("receipt")
    expect(receipt).to_be_visible()
    assert confirmed == [pending["purchase_id"]]
    paid = api(team, f"/v1/purchases/{pending['purchase_id']}")
    assert paid["status"] == "paid", paid
    expect(receipt).to_contain_text(paid["receipt"]["number"])
    expect(receipt).to_contain_text(shown(paid["receipt"]["credits"]))
    expect(receipt).to_contain_text(f"US${Decimal(paid['receipt']['price']['cents']) / 100:,.2f}")
    after = api(team, "/v1/balance")
    assert Decimal(after["available"]) - before == Decimal("500")  # nothing settles while the run runs
    expect(page.get_by_test_id("available")).to_have_text(shown(after["available"]))
    no_raw_code_nor_long_decimal(page, "receipt")
    page.screenshot(path=OUT / "page-done-phone-ko-receipt.png", full_page=True)

    # save a card (the test card)
    page.get_by_test_id("payment-method").click()
    page.locator("#setup-card-element").get_by_test_id("card-number").fill(TEST_CARD)
    page.get_by_test_id("save-card").click()
    expect(page.get_by_test_id("payment-method-status")).to_contain_text("카드")
    assert page.evaluate("window.setupWith") == "seti_local_secret_card"

    # set a limit: the account's monthly spend cap, and a member's monthly limit
    page.get_by_test_id("spend-cap-input").fill("2000")
    page.get_by_test_id("spend-cap-save").click()
    expect(page.get_by_test_id("spend-cap-current")).to_contain_text("2,000.00")
    assert api(team, "/v1/settings")["spend_cap"] == "2000.000000"
    members = page.get_by_test_id("member-row")
    bo_row = members.filter(has_text=f"{BO}@example.com")
    bo_row.locator("input").fill("300")
    bo_row.get_by_test_id("member-limit").click()
    expect(page.get_by_test_id("members-status")).to_contain_text("300.00")
    [bo] = [m for m in api(team, "/v1/members")["members"] if m["user_id"] == BO]
    assert bo["monthly_limit"] == "300.000000", bo
    expect(bo_row).to_contain_text(shown(bo["spent_this_month"]))
    expect(page.get_by_test_id("activity-row").first).to_be_visible()

    page.reload()  # the page as it now stands, everything open: still nothing raw
    expect(page.get_by_test_id("available")).to_have_text(shown(api(team, "/v1/balance")["available"]))
    for rows in ("audit-log-row", "activity-row", "purchase-row", "member-row", "container-log-row"):
        expect(page.get_by_test_id(rows).first).to_be_attached()
    expand_everything(page)  # a phone's sections start collapsed
    for rows in ("audit-log-row", "activity-row", "purchase-row", "member-row"):
        expect(page.get_by_test_id(rows).first).to_be_visible()
    no_raw_code_nor_long_decimal(page, "after the changes")
    page.screenshot(path=OUT / "page-done-phone-ko.png", full_page=True)
    page.close()
