"""Organizations (billing-rules.md, "Organizations"; interfaces.md, "Additions, turn 3"), through the
handlers against DynamoDB Local: membership events, the account a request acts on
(``Billing-Account``) and the role each route needs, the member list, member limits, ``user_id`` on
charge lines, and the activity log. Every figure by hand from the rules' prices:

- Free plan: 50 monthly credits (granted 2026-01-01). Containers of 5 GB: storage within the free
  allowance costs nothing, so only tier time is charged.
- ``large`` 27.20 credits an hour, ``medium`` 13.60; a purchase of N credits costs N x 2 cents.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from billing.api.routes import ROUTES, Route
from billing.domain.errors import BillingError
from billing.domain.model import AccountState, from_json, to_json
from billing.services.reconcile import reconcile
from billing.services.settlement import settle_account
from billing.store import keys
from billing.store.cursors import CursorCodec
from billing.store.ledger import Ledger
from tests.api_helpers import FakeContext
from tests.helpers import Platform, assert_conserved, load_handler
from tests.test_account_api import Api, FixedClock, http_event, snapshot

TEAM = "team-1"
USAGE_FUNCTION = "UsageApiFunction"


def request(method: str, path: str, body: Any = None, *, sub: str, account: str | None = TEAM,
            query: dict[str, str] | None = None) -> dict[str, Any]:
    """An API Gateway event of ``sub``'s token acting on ``account`` (the Billing-Account header)."""
    event = http_event(method, path, body, sub=sub, headers={"Billing-Account": account} if account else None)
    if query:
        event["queryStringParameters"] = dict(query)
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return event


class Team:
    """An organisation's account: the platform's events, both API functions, one outbound view."""

    def __init__(self, ledger: Ledger, clock: FixedClock, account_id: str = TEAM) -> None:
        self.ledger, self.clock, self.account_id = ledger, clock, account_id
        self.api = Api(ledger, clock)
        self.usage = load_handler("usage_api", ledger=ledger, clock=clock, cursor_codec=CursorCodec("test-secret"))
        self.platform = Platform(ledger, account_id)
        self.platform.publisher = self.api.publisher
        self.platform.mailer = self.api.outbox.mailer

    def at(self, when: str) -> None:
        self.clock.now = self.platform.now = FixedClock(when).now

    def send(self, detail_type: str, when: str, **fields: Any) -> None:
        self.at(when)
        self.platform.send(detail_type, when, **fields)
        self.api.outbox.drain()

    def call(self, method: str, path: str, body: Any = None, *, sub: str, account: str | None = TEAM,
             query: dict[str, str] | None = None, usage: bool = False) -> tuple[int, Any]:
        event = request(method, path, body, sub=sub, account=account, query=query)
        module = self.usage if usage else self.api.accounts
        response = module.lambda_handler(event, FakeContext())
        self.api.outbox.drain()
        text = response.get("body")
        return response["statusCode"], (json.loads(text) if text and text.startswith(("{", "[")) else text)

    def route(self, route: Route, sub: str, account: str | None = TEAM) -> tuple[int, Any]:
        """A route called with placeholders (``x`` for its path parameters, no body): enough to see
        whether the caller gets past the account and role check, which comes before anything else."""
        path = route.path
        for name in route.path_parameters:
            path = path.replace("{" + name + "}", "x")
        return self.call(route.method, path, sub=sub, account=account, usage=route.function == USAGE_FUNCTION)

    def published(self, detail_type: str) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for event in self.api.publisher.sent:
            if event.detail_type == detail_type:
                detail = dict(event.detail)
                seen.setdefault(str(detail.pop("effect_id")), detail)
        return list(seen.values())

    def mails(self) -> list[tuple[str, str]]:
        return [(to, subject) for to, subject, _ in self.api.outbox.mailer.sent]

    def members(self, sub: str = "olivia") -> dict[str, dict[str, Any]]:
        status, body = self.call("GET", "/v1/members", sub=sub)
        assert status == 200, body
        return {m["user_id"]: m for m in body["members"]}


def open_team(ledger: Ledger, clock: FixedClock, roles: dict[str, str]) -> Team:
    team = Team(ledger, clock)
    team.send("Account Created", "2026-01-01T00:00:00Z", email="team@example.com", plan="free")
    for user, role in roles.items():
        team.send("Member Added", "2026-01-01T00:00:00Z", user_id=user, role=role, email=f"{user}@example.com")
    team.at("2026-01-10T08:00:00Z")  # the requests that follow are made then
    return team


@pytest.fixture()
def clock() -> FixedClock:
    return FixedClock("2026-01-10T08:00:00Z")


# ---------------------------------------------------------------------------- membership events


def test_membership_events_keep_the_roster_and_refuse_bad_input_writing_nothing(ledger: Ledger,
                                                                               clock: FixedClock) -> None:
    team = open_team(ledger, clock, {"olivia": "owner", "bill": "billing"})
    team.send("Member Role Changed", "2026-01-02T00:00:00Z", user_id="bill", role="admin")
    team.send("Member Added", "2026-01-02T00:00:00Z", user_id="mia", role="member", email="mia@example.com")
    team.send("Member Removed", "2026-01-03T00:00:00Z", user_id="mia")
    roster = {uid: m.role for uid, m in ledger.load(TEAM).members.items()}
    assert roster == {"olivia": "owner", "bill": "admin"}

    refusals = [
        ("Member Added", {"user_id": "eve", "role": "superuser", "email": "eve@example.com"}, "role"),
        ("Member Role Changed", {"user_id": "bill", "role": "root"}, "role"),
        ("Member Removed", {"user_id": "olivia"}, "last owner"),
        ("Member Role Changed", {"user_id": "olivia", "role": "admin"}, "last owner"),
        ("Member Removed", {"user_id": "nobody"}, "not a member"),
        ("Member Role Changed", {"user_id": "nobody", "role": "admin"}, "not a member"),
        ("Member Added", {"user_id": "bill", "role": "member", "email": "b@example.com"}, "a member already"),
        ("Member Added", {"user_id": TEAM, "role": "member", "email": "t@example.com"}, "own user"),
        ("Member Added", {"user_id": "e\u00e9", "role": "member", "email": "e@example.com"}, "user_id"),
        ("Member Added", {"user_id": "x" * 129, "role": "member", "email": "e@example.com"}, "user_id"),
        ("Member Added", {"user_id": "tab\there", "role": "member", "email": "e@example.com"}, "user_id"),
        ("Member Removed", {"user_id": ""}, "user_id"),
    ]
    for detail_type, fields, reason in refusals:
        before = snapshot(ledger)
        with pytest.raises(BillingError, match=reason):
            team.send(detail_type, "2026-01-04T00:00:00Z", **fields)
        assert snapshot(ledger) == before, (detail_type, fields)
    # An account that does not exist: refused at settlement (dead-lettered), nothing written.
    ghost = Platform(ledger, "ghost")
    before = snapshot(ledger)
    with pytest.raises(BillingError, match="no account ghost"):
        ghost.send("Member Added", "2026-01-04T00:00:00Z", user_id="a", role="owner", email="a@example.com")
    assert snapshot(ledger) == before
    for detail_type, fields in (("Member Removed", {"user_id": "a"}), ("Member Role Changed",
                                                                       {"user_id": "a", "role": "admin"})):
        with pytest.raises(BillingError, match="no account ghost"):
            ghost.send(detail_type, "2026-01-04T00:00:00Z", **fields)
        assert snapshot(ledger) == before
    # With a second owner, the first may go; the account's own id stays its owner for its own token.
    team.send("Member Role Changed", "2026-01-05T00:00:00Z", user_id="bill", role="owner")
    team.send("Member Removed", "2026-01-05T00:00:00Z", user_id="olivia")
    assert {uid: m.role for uid, m in ledger.load(TEAM).members.items()} == {"bill": "owner"}
    assert team.call("GET", "/v1/members", sub=TEAM, account=None)[0] == 200
    # The same event twice is applied once (its record), and its activity is written once.
    event = team.platform.event("Member Added", "2026-01-06T00:00:00Z", event_id="add-zoe", user_id="zoe",
                                role="member", email="zoe@example.com")
    team.platform.deliver(event)
    assert team.platform.deliver(event)["duplicate"] is True
    actions = [e["action"] for e in team.call("GET", "/v1/activity", sub="bill", usage=True)[1]["entries"]]
    assert actions.count("member_added") == 4  # olivia and bill (the setup), mia, and zoe once


def test_user_id_on_usage_events_is_validated_and_carried_onto_every_charge_line(ledger: Ledger,
                                                                                clock: FixedClock) -> None:
    team = open_team(ledger, clock, {"olivia": "owner", "mia": "member"})
    team.send("Container Created", "2026-01-10T08:00:00Z", container_id="c1", storage_gb=8, user_id="mia")
    team.send("Container Started", "2026-01-10T08:00:00Z", container_id="c1", run_id="r1", tier="small",
              code_supporter=True, user_id="mia")
    team.send("Container Stopped", "2026-01-10T09:00:00Z", container_id="c1", run_id="r1",
              traffic_bytes=11 * 2**30, user_id="mia")
    team.send("AI Usage Recorded", "2026-01-10T09:00:00Z", feature="chat", model="gpt-5-nano", input_tokens=1000,
              output_tokens=0, user_id="max")
    lines = [line for entry in team.platform.entries() if entry.type == "deduction" for line in entry.lines]
    # small 6.80 + Code Supporter 1.96 for the hour, 3 GB of storage above the free 5 for the hour
    # (3 x 0.018 = 0.054), 1 GB of traffic beyond the 10 free (8): mia's; 1000 x 0.000004 = 0.004: max's.
    assert sorted((line.item, line.amount, line.user_id) for line in lines) == [
        ("chat", 4_000, "max"), ("code_supporter", 1_960_000, "mia"), ("small", 6_800_000, "mia"),
        ("storage", 54_000, "mia"), ("traffic", 8_000_000, "mia")]
    # What each user deducted this month (on the balance): mia 6.80 + 1.96 + 0.054 + 8 = 16.814;
    # max (not a member) 0.004.
    members = team.members()
    assert members["mia"]["spent_this_month"] == "16.814000"
    assert ledger.load(TEAM).member_spent == {"2026-01": {"mia": 16_814_000, "max": 4_000}}
    for bad in ("", "x" * 129, "caf\u00e9", "new\nline", 5):
        before = snapshot(ledger)
        with pytest.raises(BillingError, match="user_id"):
            team.send("AI Usage Recorded", "2026-01-10T09:30:00Z", feature="chat", model="gpt-5-nano",
                      input_tokens=1, output_tokens=0, user_id=bad)
        assert snapshot(ledger) == before
    report = reconcile(ledger.models, ledger.catalog, accounts=[TEAM], sleep=lambda _: None)
    assert report.differences == 0, report.details


def test_reconciliation_counts_member_aggregates_and_finds_a_tampered_one(ledger: Ledger, clock: FixedClock) -> None:
    import boto3

    from billing.domain.usage import Cell
    from billing.store.usage import attribute

    team = open_team(ledger, clock, {"olivia": "owner", "mia": "member", "max": "member"})
    team.send("Container Created", "2026-01-10T08:00:00Z", container_id="c1", storage_gb=5, user_id="mia")
    team.send("Container Started", "2026-01-10T08:00:00Z", container_id="c1", run_id="r1", tier="small",
              user_id="mia")
    team.send("Container Stopped", "2026-01-10T09:00:00Z", container_id="c1", run_id="r1", user_id="mia")
    team.send("AI Usage Recorded", "2026-01-10T09:00:00Z", feature="chat", model="gpt-5-nano", input_tokens=1000,
              output_tokens=0, user_id="max")
    # mia: one hour of small = 6.80 (5 GB is within the free allowance); max: 1000 x 0.000004 = 0.004.
    report = reconcile(ledger.models, ledger.catalog, accounts=[TEAM], sleep=lambda _: None)
    assert (report.accounts_checked, report.differences) == (1, 0), report.details
    client = boto3.client("dynamodb")

    def add_spent(amount: int) -> None:
        item = ledger.models.Account.get(keys.account_pk(TEAM), keys.STATE, consistent_read=True)
        state = from_json(item.body, AccountState)
        state.member_spent["2026-01"]["mia"] += amount
        item.body = to_json(state)
        item.save()

    def add(sk: str, name: str, amount: int) -> None:
        key = {"pk": {"S": keys.account_pk(TEAM)}, "sk": {"S": sk}}
        client.update_item(TableName=ledger.models.table_name, Key=key, UpdateExpression="ADD #n :v",
                           ExpressionAttributeNames={"#n": name}, ExpressionAttributeValues={":v": {"N": str(amount)}})

    # One µcr more on mia's month figure on the balance (what GET /v1/members shows and her limit
    # reads): found, against her lines.
    add_spent(1)
    report = reconcile(ledger.models, ledger.catalog, accounts=[TEAM], sleep=lambda _: None)
    assert report.details == {TEAM: ["member spending 2026-01 of mia: stored 6800001 != ledger 6800000"]}
    add_spent(-1)
    assert reconcile(ledger.models, ledger.catalog, accounts=[TEAM], sleep=lambda _: None).differences == 0
    # One µcr more in a cell attributed to mia (group_by=user reads it): found, against the day's lines
    # (6.80 + 0.004 = 6.804 charged on 2026-01-10).
    add("USAGE#D#2026-01-10", attribute(8, Cell("container", "small", user="mia")), 1)
    report = reconcile(ledger.models, ledger.catalog, accounts=[TEAM], sleep=lambda _: None)
    assert report.details == {TEAM: ["usage 2026-01-10 (account): 1 cells differ, stored 6804001 != ledger 6804000"]}


# ---------------------------------------------------------------------------- the role matrix

ROLES = {"olivia": "owner", "adam": "admin", "bill": "billing", "mia": "member"}
ORDER = ["member", "billing", "admin", "owner"]


# The role each user route needs, written from billing-rules.md ("Organizations"), not read from the
# route table: a member reads the balance and their own usage; billing people buy, refund, set and
# read everything of the account (the ledger names every member's usage); owners and admins set
# members' limits. Every route of the route table is named here or in NOT_USER_ROUTES, so a route
# added to the table without a row here fails the matrix test.
MATRIX = {
    "GET /v1/balance": "member", "GET /v1/usage": "member", "GET /v1/usage.csv": "member",
    "GET /v1/usage/containers": "member", "GET /v1/usage/ai": "member",
    "GET /v1/ledger": "billing", "POST /v1/purchases": "billing", "GET /v1/purchases": "billing",
    "GET /v1/purchases/{purchase_id}": "billing", "POST /v1/purchases/{purchase_id}/refund": "billing",
    "POST /v1/check-in": "billing", "POST /v1/coupons/redeem": "billing", "POST /v1/payment-methods": "billing",
    "GET /v1/settings": "billing", "PUT /v1/settings": "billing", "GET /v1/alerts": "billing",
    "POST /v1/alerts": "billing", "DELETE /v1/alerts/{alert_id}": "billing", "GET /v1/members": "billing",
    "GET /v1/activity": "billing", "PUT /v1/members/{user_id}/limit": "admin",
}
NOT_USER_ROUTES = {  # operator (IAM), signed webhooks, the public OpenAPI document: no account header
    "GET /v1/openapi.json", "POST /v1/admin/grants", "POST /v1/admin/coupons", "POST /v1/webhooks/payments",
    "POST /v1/webhooks/stripe",
}


def test_the_role_matrix_names_every_route_of_the_route_table() -> None:
    table = {route.key: route.role for route in ROUTES if route.auth == "jwt"}
    assert {route.key for route in ROUTES if route.auth != "jwt"} == NOT_USER_ROUTES
    missing, extra = set(table) - set(MATRIX), set(MATRIX) - set(table)
    assert not missing, f"user routes without a row in the role matrix: {sorted(missing)}"
    assert not extra, f"rows of the role matrix for routes the table does not have: {sorted(extra)}"
    assert table == MATRIX  # each route needs the role the rules give it


def test_every_user_route_by_every_role_member_or_not(ledger: Ledger, clock: FixedClock) -> None:
    team = open_team(ledger, clock, ROLES)
    Platform(ledger, "stranger").send("Account Created", "2026-01-01T00:00:00Z", email="s@example.com", plan="free")
    jwt_routes = [route for route in ROUTES if route.auth == "jwt"]
    assert {route.key for route in jwt_routes} == set(MATRIX)  # the matrix below covers every user route
    for route in jwt_routes:
        assert route.role == MATRIX[route.key], route.key
        for user, role in ROLES.items():
            status, body = team.route(route, user)
            if ORDER.index(role) < ORDER.index(route.role or "member"):
                assert status == 403, (route.key, user, body)
                assert body["error"]["message"].startswith(f"this needs the role {route.role}"), body
            else:
                assert status != 403 and "that you are a member of" not in json.dumps(body), (route.key, user, body)
        # Not a member (a person with an account of their own): the very answer of an account that
        # does not exist, with the id they sent.
        status, body = team.route(route, "stranger")
        missing_status, missing = team.route(route, "stranger", account="no-such-account")
        assert (status, missing_status) == (404, 404), (route.key, body)
        assert body == json.loads(json.dumps(missing).replace("no-such-account", TEAM))
        # A malformed header is a 400, never another account.
        assert team.route(route, "olivia", account="bad\u00e9")[0] == 400


def test_nothing_in_a_path_or_a_body_reaches_another_account(ledger: Ledger, clock: FixedClock) -> None:
    team = open_team(ledger, clock, ROLES)
    other = Team(ledger, clock, "other-1")
    other.send("Account Created", "2026-01-01T00:00:00Z", email="o@example.com", plan="free")
    other.send("Member Added", "2026-01-01T00:00:00Z", user_id="zed", role="member", email="z@example.com")
    status, purchase = other.call("POST", "/v1/purchases", {"credits": 50}, sub="other-1", account=None)
    assert status == 201
    status, alert = other.call("POST", "/v1/alerts", {"kind": "remaining_below", "threshold": "5"}, sub="other-1",
                               account=None)
    assert status == 201
    before = snapshot(ledger)
    pid, aid = purchase["purchase_id"], alert["alert_id"]
    assert team.call("GET", f"/v1/purchases/{pid}", sub="olivia")[0] == 404
    assert team.call("POST", f"/v1/purchases/{pid}/refund", sub="olivia")[0] == 404
    assert team.call("DELETE", f"/v1/alerts/{aid}", sub="olivia")[0] == 404
    # Another account's member is not this account's: their limit is a 404 here.
    assert team.call("PUT", "/v1/members/zed/limit", {"monthly_limit": "5"}, sub="olivia")[0] == 404
    # A body naming an account is not read as one (the purchase is the team's, not other-1's).
    assert snapshot(ledger) == before
    status, mine = team.call("POST", "/v1/purchases", {"credits": 50, "account_id": "other-1"}, sub="bill")
    assert status == 201
    assert team.call("GET", f"/v1/purchases/{mine['purchase_id']}", sub="olivia")[0] == 200
    assert other.call("GET", f"/v1/purchases/{mine['purchase_id']}", sub="other-1", account=None)[0] == 404


def test_member_limit_requests_refuse_bad_amounts_and_record_who_changed_what(ledger: Ledger,
                                                                             clock: FixedClock) -> None:
    team = open_team(ledger, clock, ROLES)
    for bad in ("-1", "abc", "1.0000001", 2.5, True, {"a": 1}, "NaN", "Infinity", "-0.000001", "", " 5", "1e3",
                -5, [], "5 credits"):
        before = snapshot(ledger)
        status, body = team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": bad}, sub="adam")
        assert status == 400, (bad, body)
        assert snapshot(ledger) == before
    assert team.call("PUT", "/v1/members/mia/limit", {}, sub="adam")[0] == 400
    # A limit of 0 is reached at once (0 deducted >= 0): nothing of hers may run this month.
    status, body = team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": "0"}, sub="adam")
    assert (status, body["monthly_limit"], body["limit_reached"]) == (200, "0.000000", True)
    assert team.published("Member Limit Reached") == [
        {"account_id": TEAM, "user_id": "mia", "limit": "0.000000", "spent": "0.000000"}]
    status, body = team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": 200}, sub="olivia")
    assert (status, body["monthly_limit"]) == (200, "200.000000")
    assert team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": None}, sub="adam")[1]["monthly_limit"] is None
    status, page = team.call("GET", "/v1/activity", sub="bill", usage=True, query={"from": "2026-01-10"})
    assert status == 200
    assert [(e["actor"], e["action"], e["details"]["monthly_limit"]) for e in page["entries"]] == [
        ("adam", "member_limit_changed", None), ("olivia", "member_limit_changed", "200.000000"),
        ("adam", "member_limit_changed", "0.000000")]
    assert team.call("GET", "/v1/activity", sub="mia", usage=True)[0] == 403


# ---------------------------------------------------------------------------- the team, by hand


def test_a_team_shares_one_pool_and_a_member_limit_stops_only_that_member(ledger: Ledger,
                                                                         clock: FixedClock) -> None:
    team = open_team(ledger, clock, {"olivia": "owner", "bill": "billing", "mia": "member", "max": "member"})
    # 08:00 bill (billing) buys 500 credits for the pool: 500 x 2 = 1000 cents. Pool: 50 + 500 = 550.
    status, purchase = team.call("POST", "/v1/purchases", {"credits": 500}, sub="bill")
    assert status == 201 and purchase["price"]["cents"] == 1000
    assert team.api.pay(purchase["purchase_id"], 1000)[0] == 200
    assert team.call("POST", "/v1/purchases", {"credits": 500}, sub="mia")[0] == 403  # a member buys nothing
    assert team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": "20"}, sub="bill")[0] == 403  # admin
    status, limit = team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": "20"}, sub="olivia")
    assert (status, limit["monthly_limit"], limit["spent_this_month"]) == (200, "20.000000", "0.000000")

    team.send("Container Created", "2026-01-10T08:00:00Z", container_id="c-mia", storage_gb=5, user_id="mia")
    team.send("Container Created", "2026-01-10T08:00:00Z", container_id="c-max", storage_gb=5, user_id="max")
    team.send("Container Started", "2026-01-10T09:00:00Z", container_id="c-mia", run_id="r-mia", tier="large",
              user_id="mia")
    team.send("Container Started", "2026-01-10T09:00:00Z", container_id="c-max", run_id="r-max", tier="medium",
              user_id="max")
    # The forecast: mia's 20 credits at 27.20 an hour last 20 x 3600 / 27.2 = 2647.06 s, so her check is
    # due at 09:00 + 2648 s = 09:44:08 (the pool's 550 at 40.80 an hour would last 13.5 hours).
    due = ledger.load(TEAM).next_check_at
    assert due == datetime.fromisoformat("2026-01-10T09:44:08+00:00")
    team.at("2026-01-10T09:44:08Z")
    settle_account(TEAM, due, keys.check_sweep_event_id(due), ledger)
    team.api.outbox.drain()
    # Her run is settled to then: 2648 s of large = 2648 x 27.2 / 3600 = 20.007111 >= 20.
    assert team.published("Member Limit Reached") == [
        {"account_id": TEAM, "user_id": "mia", "limit": "20.000000", "spent": "20.007111"}]
    assert team.published("Stop Containers Requested") == [
        {"account_id": TEAM, "container_ids": ["c-mia"], "reason": "member_limit", "user_id": "mia"}]
    limit_mails = sorted(to for to, subject in team.mails() if subject == "A member's monthly limit is reached")
    assert limit_mails == ["bill@example.com", "mia@example.com", "olivia@example.com", "team@example.com"]
    listed = team.members(sub="bill")
    assert (listed["mia"]["spent_this_month"], listed["mia"]["limit_reached"]) == ("20.007111", True)
    assert (listed["max"]["spent_this_month"], listed["max"]["limit_reached"]) == ("0.000000", False)
    assert TEAM not in listed  # olivia is the owner the platform named

    # 10:00 the platform stops mia's run: the hour of large is 27.200000 in all, 7.192889 more, still
    # charged (it happened); the limit is reached once. max runs on.
    team.send("Container Stopped", "2026-01-10T10:00:00Z", container_id="c-mia", run_id="r-mia", user_id="mia")
    assert team.members()["mia"]["spent_this_month"] == "27.200000"
    assert len(team.published("Member Limit Reached")) == 1
    assert [s["container_ids"] for s in team.published("Stop Containers Requested")] == [["c-mia"]]
    # 10:05 mia starts again while her limit is reached: asked to stop at once, for member_limit.
    team.send("Container Started", "2026-01-10T10:05:00Z", container_id="c-mia", run_id="r-mia-2", tier="large",
              user_id="mia")
    assert team.published("Stop Containers Requested")[-1] == {
        "account_id": TEAM, "container_ids": ["c-mia"], "reason": "member_limit", "user_id": "mia"}
    team.send("Container Stopped", "2026-01-10T10:05:00Z", container_id="c-mia", run_id="r-mia-2", user_id="mia")

    # 10:15 bill becomes an admin and raises mia's limit to 40 (> 27.20 spent): the limit ends.
    team.send("Member Role Changed", "2026-01-10T10:15:00Z", user_id="bill", role="admin")
    status, raised = team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": "40"}, sub="bill")
    assert (status, raised["limit_reached"], raised["spent_this_month"]) == (200, False, "27.200000")
    # 10:20 olivia, the only owner, cannot be demoted: refused, nothing written.
    before = snapshot(ledger)
    with pytest.raises(BillingError, match="last owner"):
        team.send("Member Role Changed", "2026-01-10T10:20:00Z", user_id="olivia", role="member")
    assert snapshot(ledger) == before
    # 10:30 max leaves mid-run; 11:00 his run stops: 2 hours of medium = 27.200000, charged to the pool.
    team.send("Member Removed", "2026-01-10T10:30:00Z", user_id="max")
    team.send("Container Stopped", "2026-01-10T11:00:00Z", container_id="c-max", run_id="r-max", user_id="max")

    # The pool: 27.20 (mia) + 27.20 (max) = 54.40 charged; the 50 free credits first, then 4.40 of the
    # 500 purchased: 495.600000 left, no debt. A member reads the balance.
    status, balance = team.call("GET", "/v1/balance", sub="mia", usage=True)
    assert (status, balance["available"], balance["free"], balance["purchased"], balance["debt"]) == (
        200, "495.600000", "0.000000", "495.600000", "0.000000")
    assert_conserved(ledger.load(TEAM))
    listed = team.members()
    assert set(listed) == {"olivia", "bill", "mia"} and listed["bill"]["role"] == "admin"
    assert (listed["mia"]["monthly_limit"], listed["mia"]["spent_this_month"]) == ("40.000000", "27.200000")
    # max is gone: his token reaches the team's account no more; what he ran still counts in his month.
    assert team.call("GET", "/v1/balance", sub="max", usage=True)[0] == 404
    assert ledger.load(TEAM).member_spent == {"2026-01": {"mia": 27_200_000, "max": 27_200_000}}
    # mia's container log holds her runs only; bill's (admin) holds everyone's.
    mine = team.call("GET", "/v1/usage/containers", sub="mia", usage=True, query={"date": "2026-01-10"})[1]
    assert {e["container_id"] for e in mine["entries"]} == {"c-mia"}
    everyone = team.call("GET", "/v1/usage/containers", sub="bill", usage=True, query={"date": "2026-01-10"})[1]
    assert {e["container_id"] for e in everyone["entries"]} == {"c-mia", "c-max"}
    # Who did what: bill's purchase, olivia's and bill's limits, the platform's membership changes.
    entries = team.call("GET", "/v1/activity", sub="olivia", usage=True, query={"from": "2026-01-10"})[1]["entries"]
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("platform", "member_removed"), ("bill", "member_limit_changed"), ("platform", "member_role_changed"),
        ("olivia", "member_limit_changed"), ("bill", "purchase_created")]
    report = reconcile(ledger.models, ledger.catalog, accounts=[TEAM], sleep=lambda _: None)
    assert (report.accounts_checked, report.differences) == (1, 0), report.details
    assert ledger.load(TEAM).totals.charged == 54_400_000


def test_a_member_limit_is_judged_on_the_aggregates_of_this_change(ledger: Ledger, clock: FixedClock) -> None:
    """Found by the model-based test: the limit read the member's running time from aggregates not
    yet brought in step with the change (nothing else had asked for them: no spend cap, no credit
    mail), so a run the change had just settled counted twice and the member's other run was settled
    early. mia (limit 40) runs c-a (small, 6.80/h) from 09:00 and c-b (medium, 13.60/h) from 11:00; at
    12:06 c-a is relabelled and settled: 3.1 h x 6.80 = 21.08; c-b has accrued 1.1 h x 13.60 = 14.96;
    21.08 + 14.96 = 36.04 < 40: nothing else is deducted (c-b stays accruing)."""
    team = open_team(ledger, clock, {"olivia": "owner", "mia": "member"})
    assert team.call("PUT", "/v1/settings", {"credit_mail": False}, sub="olivia")[0] == 200
    assert team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": "40"}, sub="olivia")[0] == 200
    for cid in ("c-a", "c-b"):
        team.send("Container Created", "2026-01-10T08:00:00Z", container_id=cid, storage_gb=5, user_id="mia")
    team.send("Container Started", "2026-01-10T09:00:00Z", container_id="c-a", run_id="r-a", tier="small",
              user_id="mia")
    team.send("Container Started", "2026-01-10T11:00:00Z", container_id="c-b", run_id="r-b", tier="medium",
              user_id="mia")
    team.send("Container Labeled", "2026-01-10T12:06:00Z", container_id="c-a", labels={"team": "ml"})
    state = ledger.load(TEAM)
    assert state.month_charged == {"2026-01": 21_080_000}
    assert state.member_spent["2026-01"]["mia"] == 21_080_000 and state.members["mia"].limit_reached is None
    assert team.published("Member Limit Reached") == []
    assert_conserved(state)


def test_a_member_who_leaves_and_comes_back_in_the_month_keeps_the_months_figure(ledger: Ledger,
                                                                                  clock: FixedClock) -> None:
    """What a user's usage deducted counts for the whole month: the member list shows it and the
    limit compares it, a leave and a return in between (one figure, on the balance)."""
    team = open_team(ledger, clock, {"olivia": "owner", "mia": "member"})
    team.send("Container Created", "2026-01-10T08:00:00Z", container_id="c1", storage_gb=5, user_id="mia")
    team.send("Container Started", "2026-01-10T08:00:00Z", container_id="c1", run_id="r1", tier="small",
              user_id="mia")
    team.send("Container Stopped", "2026-01-10T09:00:00Z", container_id="c1", run_id="r1", user_id="mia")
    # One hour of small: 6.80 (5 GB is within the free allowance).
    team.send("Member Removed", "2026-01-10T09:30:00Z", user_id="mia")
    team.send("Member Added", "2026-01-10T09:40:00Z", user_id="mia", role="member", email="mia@example.com")
    team.at("2026-01-10T10:00:00Z")
    assert team.members()["mia"]["spent_this_month"] == "6.800000"
    # A limit of 6.80 is reached at once (6.80 deducted >= 6.80); 6.81 is not.
    status, body = team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": "6.81"}, sub="olivia")
    assert (status, body["spent_this_month"], body["limit_reached"]) == (200, "6.800000", False)
    status, body = team.call("PUT", "/v1/members/mia/limit", {"monthly_limit": "6.8"}, sub="olivia")
    assert (status, body["spent_this_month"], body["limit_reached"]) == (200, "6.800000", True)
    assert team.published("Member Limit Reached") == [
        {"account_id": TEAM, "user_id": "mia", "limit": "6.800000", "spent": "6.800000"}]
    report = reconcile(ledger.models, ledger.catalog, accounts=[TEAM], sleep=lambda _: None)
    assert (report.accounts_checked, report.differences) == (1, 0), report.details
