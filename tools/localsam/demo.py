"""``make run``: the billing stack locally on its embedded defaults, and a simulated month.

Five sample accounts live through the last 29 days (so a month boundary is crossed, unless today is
the 30th or 31st; events older than 30 days are refused), driven by the platform's events routed
the way AWS routes them (EventBridge rules, the schedules, the SQS queues, the table's stream to the
outbox dispatcher, the HTTP API of ``template.yaml``). What ``carol``, ``dave`` and ``erin`` do takes
their last 9 days and never crosses a month boundary, whatever the day the demo runs: it ends now,
or, in the first 10 days of a month, an hour before the month began (the statements then show that
month's usage, and the new month's credits pay what was still owed):

* ``alice`` (Free plan): a small container most days, 8 GB of storage, AI Side Chat, a coupon, a
  check-in today, and credit mail switched off.
* ``bob`` (Membership): a medium container with Code Supporter, 40 GB, heavy traffic, Snap and AI
  Supporter; buys 500 credits (signed payment webhook) and refunds a second purchase.
* ``carol`` (Free plan): large runs that drain her credits: the low-credit mail goes out, the
  periodic check ends her credits (debt, stop and inactivation requests, to which the simulated
  platform responds), and a purchase today pays her back (and clears the debt if it is still owed).
* ``dave`` (Free plan): turns auto top-up on (below 50 credits, 100 credits, at most 2 a month); his
  large runs would drain him, but each time his credits fall below 50 a purchase is created, the
  simulated payment integration pays it through the signed webhook, and he never runs out.
* ``erin`` (Free plan): a monthly spend cap of 40 credits; her long large run is stopped when the
  month's charges reach it, and she keeps the rest of her credits.

``studio`` is a team's account (one credit pool, the Free plan's 50 credits and 100 that ``ben``,
its billing person, buys): ``olga`` owns it, ``ben`` does its billing, ``mia`` and ``max`` are members.
``olga`` gives ``mia`` a monthly limit of 20 credits; mia's large run reaches it after 44 minutes (20
/ 27.20 hours), the periodic check the forecast scheduled stops her run alone (``member_limit``),
``Member Limit Reached`` is published and mia, the account and its billing people get a mail, while
max's run goes on; the members list and who-did-what (``/v1/members``, ``/v1/activity``) are printed.

``bob`` labels his containers (``project``, ``team``) and his AI calls (``api_key``), relabels one
mid-month, and keeps an alert rule (more than 300 credits spent this month).

The stack's functions live the story: while it is replayed their clock reads the simulated moment
(what the platform reports, the controls users set in the middle of it, the auto top-ups paid as
they are asked), then the real one: what users do today through the API happens now.
Each account's statement is read through the HTTP API and printed; ``out/`` gets the usage chart
(PNG, daily and cumulative), each account's audit log and usage by label as CSV, and every mail the
stack sent (``out/mails/``: the HTML and the plain-text part). Run from a terminal, the demo then keeps
serving the API and the credit-usage page and prints the page's address with an account's token.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import random
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from billing.domain.clock import month_key, month_start
from localsam import demo_stripe
from localsam.aws import LOCAL_PARAMETERS
from localsam.http_api import make_jwt
from localsam.runner import StackRunner

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out"
GIB = 2**30
WEBHOOK_SECRET = LOCAL_PARAMETERS["PaymentWebhookSecret"]  # the local runner's value for the template's
OPERATOR = "arn:aws:iam::123456789012:role/billing-operator"
ACCOUNTS = ("alice", "bob", "carol", "dave", "erin", "studio")
TEAM = {"olga": "owner", "ben": "billing", "mia": "member", "max": "member"}


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class SimulatedClock:
    """The stack's clock: the latest simulated moment while the story is replayed, else the real one."""

    def __init__(self) -> None:
        self.moment: datetime | None = None

    def __call__(self) -> datetime:
        return self.moment or datetime.now(UTC).replace(microsecond=0)

    def advance(self, moment: datetime) -> None:
        self.moment = max(self.moment or moment, moment)

    def real(self) -> None:
        self.moment = None


class Demo:
    def __init__(self, stack: StackRunner, now: datetime, clock: SimulatedClock | None = None) -> None:
        self.stack = stack
        self.now = now
        self.clock = clock or SimulatedClock()
        self.start = (now - timedelta(days=29)).replace(hour=8, minute=0, second=0)
        # The month boundary the story crosses, if any, and the end of the accounts' 9 days.
        boundary = month_start(now)
        self.boundary = boundary if boundary > self.start else None
        recent = self.boundary is not None and now - self.boundary < timedelta(days=10)
        self.end = self.boundary - timedelta(hours=1) if recent and self.boundary else now
        self.month = month_key(self.end)  # the month the statements report
        self.rng = random.Random(7)
        self.seq = 0
        self.timeline: list[tuple[datetime, str, str, dict[str, Any]]] = []
        # What users do in the middle of the story (set controls), at the moment they do it.
        self.actions: list[tuple[datetime, Callable[[], None]]] = []
        self.paid_auto: set[str] = set()

    # ------------------------------------------------------------------ the platform's events
    def event(self, at: datetime, account: str, detail_type: str, **fields: Any) -> None:
        self.seq += 1
        source = {"Account Created": "platform.accounts", "Plan Changed": "platform.accounts",
                  "Member Added": "platform.accounts", "AI Usage Recorded": "platform.ai"}.get(
            detail_type, "platform.containers")
        detail = {"event_id": f"demo-{self.seq:05d}", "account_id": account, "occurred_at": iso(at), **fields}
        self.timeline.append((at, source, detail_type, detail))

    def run(self, account: str, container: str, start: datetime, minutes: int, tier: str,
            code_supporter: bool = False, traffic_gib: float = 0.0) -> None:
        """A run from start to stop (traffic reported halfway and at the stop)."""
        run_id = f"{container}-{start:%m%d%H%M}"
        self.event(start, account, "Container Started", container_id=container, run_id=run_id, tier=tier,
                   code_supporter=code_supporter)
        if traffic_gib:
            half = int(traffic_gib * GIB / 2)
            self.event(start + timedelta(minutes=minutes // 2), account, "Container Traffic Reported",
                       container_id=container, run_id=run_id, traffic_bytes=half)
            rest = int(traffic_gib * GIB) - half
        else:
            rest = 0
        self.event(start + timedelta(minutes=minutes), account, "Container Stopped", container_id=container,
                   run_id=run_id, traffic_bytes=rest)

    def script(self) -> None:
        t0, rng = self.start, self.rng
        self.event(t0, "alice", "Account Created", email="alice@example.com", plan="free")
        self.event(t0, "bob", "Account Created", email="bob@example.com", plan="membership")
        self.event((self.end - timedelta(days=9)).replace(hour=8, minute=0, second=0), "carol", "Account Created",
                   email="carol@example.com", plan="free")
        self.event(t0 + timedelta(minutes=5), "alice", "Container Created", container_id="alice-web", storage_gb=6)
        self.event(t0 + timedelta(minutes=5), "bob", "Container Created", container_id="bob-api", storage_gb=25,
                   labels={"project": "api", "team": "backend"})
        self.event(t0 + timedelta(days=6), "bob", "Container Created", container_id="bob-ml", storage_gb=12,
                   labels={"project": "ml", "team": "research"})
        self.event(t0 + timedelta(days=12, hours=12), "bob", "Container Labeled", container_id="bob-api",
                   labels={"project": "api", "team": "platform"})
        self.actions.append((t0 + timedelta(minutes=10), lambda: self.api(
            "POST", "/v1/alerts", sub="bob", body={"kind": "spent_this_month_above", "threshold": "300"})))
        days = (self.now - t0).days
        for day in range(days):
            morning = t0 + timedelta(days=day, hours=1 + rng.randrange(3))
            if rng.random() < 0.6:
                self.run("alice", "alice-web", morning, 30 + 15 * rng.randrange(2), "micro")
                self.event(morning + timedelta(minutes=10), "alice", "AI Usage Recorded", feature="chat",
                           model="claude-haiku-4.5", input_tokens=rng.randrange(500, 2000),
                           output_tokens=rng.randrange(100, 800), container_id="alice-web")
            if day % 7 not in (5, 6):
                self.run("bob", "bob-api", morning + timedelta(minutes=30), 90 + 30 * rng.randrange(4), "medium",
                         code_supporter=True, traffic_gib=rng.choice([0.5, 1.0, 2.0]))
                self.event(morning + timedelta(hours=2), "bob", "AI Usage Recorded", feature="ai_supporter",
                           model="claude-sonnet-4.5", input_tokens=rng.randrange(2000, 8000),
                           output_tokens=rng.randrange(500, 2000), container_id="bob-api",
                           labels={"api_key": rng.choice(["key-ci", "key-laptop"])})
            if day == 6:
                self.event(morning, "bob", "AI Usage Recorded", feature="snap", model="gpt-5-mini",
                           input_tokens=12000, output_tokens=30000, container_id="bob-ml")
            if day == 16:
                self.run("bob", "bob-ml", morning + timedelta(hours=5), 120, "gpu-t4", code_supporter=True)
        self.event(t0 + timedelta(days=18), "bob", "Container Resized", container_id="bob-api", storage_gb=50)
        self.event(t0 + timedelta(days=25), "bob", "Container Inactivated", container_id="bob-ml")
        # carol: two large runs; the second drains her credits and the periodic check ends them.
        c0 = self.end - timedelta(days=2)
        c0 = c0.replace(hour=9, minute=0, second=0)
        self.event(c0 - timedelta(hours=1), "carol", "Container Created", container_id="carol-train", storage_gb=9)
        self.run("carol", "carol-train", c0, 60, "large")
        self.event(c0 + timedelta(hours=2), "carol", "Container Started", container_id="carol-train",
                   run_id="carol-long", tier="large", code_supporter=False)
        self.carol_check = c0 + timedelta(hours=2, minutes=55)
        self.open_runs = {"carol-train": "carol-long"}  # runs whose stop only the platform decides
        self.dave_and_erin()
        self.studio()
        self.timeline.sort(key=lambda item: item[0])
        self.actions.sort(key=lambda item: item[0])

    def dave_and_erin(self) -> None:
        """Two accounts saved from running dry by their controls: auto top-up and a spend cap."""
        d0 = (self.end - timedelta(days=4)).replace(hour=7, minute=0, second=0)
        self.event(d0, "dave", "Account Created", email="dave@example.com", plan="free")
        self.event(d0 + timedelta(minutes=5), "dave", "Container Created", container_id="dave-render", storage_gb=4)
        self.actions.append((d0 + timedelta(minutes=10), lambda: self.api("PUT", "/v1/settings", sub="dave", body={
            "auto_top_up": {"enabled": True, "below": "50", "credits": "100", "max_per_month": 2}})))
        # Four 90-minute large runs, 40.8 credits each, 163.2 in all against his 50 free credits.
        for day in range(4):
            self.run("dave", "dave-render", d0 + timedelta(days=day, hours=2), 90, "large")
        e0 = (self.end - timedelta(days=3)).replace(hour=10, minute=0, second=0)
        self.event(e0, "erin", "Account Created", email="erin@example.com", plan="free")
        self.event(e0 + timedelta(minutes=5), "erin", "Container Created", container_id="erin-batch", storage_gb=3)
        self.actions.append((e0 + timedelta(minutes=10), lambda: self.api(
            "PUT", "/v1/settings", sub="erin", body={"spend_cap": "40"})))
        # A run nobody stops: at 27.2 credits an hour the month's charges reach 40 after 1 h 28 min.
        self.event(e0 + timedelta(hours=1), "erin", "Container Started", container_id="erin-batch",
                   run_id="erin-long", tier="large", code_supporter=False)
        self.open_runs["erin-batch"] = "erin-long"
        self.erin_check = e0 + timedelta(hours=2, minutes=30)

    def studio(self) -> None:
        """A team's account: one pool, four members, a member limit that stops one member's run."""
        f0 = (self.end - timedelta(days=3)).replace(hour=9, minute=0, second=0)
        self.event(f0, "studio", "Account Created", email="studio@example.com", plan="free")
        for user, role in TEAM.items():
            self.event(f0, "studio", "Member Added", user_id=user, role=role, email=f"{user}@example.com")
        team = {"Billing-Account": "studio"}

        def buy() -> None:
            self.pay(self.api("POST", "/v1/purchases", sub="ben", headers=team, body={"credits": 100}))

        self.actions.append((f0 + timedelta(minutes=10), buy))
        self.actions.append((f0 + timedelta(minutes=15), lambda: self.api(
            "PUT", "/v1/members/mia/limit", sub="olga", headers=team, body={"monthly_limit": "20"})))
        for user in ("mia", "max"):
            self.event(f0 + timedelta(minutes=20), "studio", "Container Created", container_id=f"studio-{user}",
                       storage_gb=4, user_id=user)
        # max: two hours of medium (27.20 credits); mia: a large run nobody stops but her limit.
        self.event(f0 + timedelta(hours=1), "studio", "Container Started", container_id="studio-max",
                   run_id="max-1", tier="medium", code_supporter=False, user_id="max")
        self.event(f0 + timedelta(hours=3), "studio", "Container Stopped", container_id="studio-max",
                   run_id="max-1", traffic_bytes=0, user_id="max")
        self.event(f0 + timedelta(hours=1), "studio", "Container Started", container_id="studio-mia",
                   run_id="mia-1", tier="large", code_supporter=False, user_id="mia")
        self.open_runs["studio-mia"] = "mia-1"
        self.studio_check = f0 + timedelta(hours=1, minutes=50)  # her limit is due at 1 h 44 min 08 s

    # ------------------------------------------------------------------ driving the stack
    def deliver_until(self, until: datetime) -> None:
        while self.timeline and self.timeline[0][0] <= until:
            at, source, detail_type, detail = self.timeline.pop(0)
            self.clock.advance(at)
            result = self.stack.put_event(source, detail_type, detail, time=at)
            if not result.ok:
                raise RuntimeError(f"{detail_type} failed: {[d.error for d in result.failures]}")
            self.stack.drain()  # on AWS the queues' consumers run within seconds
            self.pay_auto_top_ups(at)

    def boundary_and_checks(self) -> None:
        """Deliver the timeline, firing the monthly job at the boundary and the periodic check daily."""
        first = self.boundary
        checks = {self.carol_check, self.erin_check, self.studio_check} | ({first} if first else set()) | {
            (self.start + timedelta(days=d)).replace(hour=23, minute=55) for d in range(34)
        }
        actions = dict(self.actions)
        for moment in sorted(checks | set(actions)):
            if moment >= self.now:
                break
            self.deliver_until(moment)
            self.clock.advance(moment)
            if moment in actions:
                actions[moment]()
                self.stack.drain()
            if moment in checks:
                name = "MonthBoundary" if moment == first else "PeriodicCheck"
                self.stack.fire_schedule("MonthlyBillingFunction", name, at=moment)
                self.stack.drain()
            self.platform_reacts(moment)
        self.deliver_until(self.now - timedelta(minutes=5))
        self.stack.drain()
        self.clock.real()

    def platform_reacts(self, moment: datetime) -> None:
        """The container platform stops what billing asked it to stop, a few minutes later."""
        for event in self.stack.published_events("Stop Containers Requested"):
            detail = event["detail"]
            for container in detail["container_ids"]:
                run_id = self.open_runs.pop(container, None)
                if run_id:
                    self.event(moment + timedelta(minutes=3), detail["account_id"], "Container Stopped",
                               container_id=container, run_id=run_id, traffic_bytes=0)
        self.timeline.sort(key=lambda item: item[0])

    def pay_auto_top_ups(self, moment: datetime) -> None:
        """The platform's payment integration charges the saved card for each auto top-up at once."""
        for event in self.stack.published_events("Auto Top-up Requested"):
            detail = event["detail"]
            if detail["purchase_id"] not in self.paid_auto:
                self.paid_auto.add(detail["purchase_id"])
                self.pay(detail)
                self.stack.drain()

    # ------------------------------------------------------------------ what users do today
    def api(self, method: str, path: str, sub: str | None = None, iam: str | None = None,
            body: Any = None, query: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        response = self.stack.api_request(method, path, sub=sub, iam=iam, body=body, query=query, headers=headers)
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {response.body}")
        return response.json() if response.headers.get("content-type", "").startswith("application/json") \
            else response.body

    def pay(self, purchase: dict[str, Any]) -> None:
        body = json.dumps({"id": f"evt-{purchase['purchase_id']}", "type": "payment.succeeded",
                           "purchase_id": purchase["purchase_id"], "amount": purchase["price"],
                           "created_at": iso(self.clock())})
        t = str(int(self.clock().timestamp()))
        signature = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
        response = self.stack.api_request("POST", "/v1/webhooks/payments", body=body,
                                          headers={"Billing-Signature": f"t={t},v1={signature}",
                                                   "content-type": "application/json"})
        if response.status != 200:
            raise RuntimeError(f"webhook refused: {response.status} {response.body}")

    def today(self) -> None:
        self.api("POST", "/v1/admin/coupons", iam=OPERATOR, body={
            "code": "WELCOME20", "credits": 20, "valid_days": 30,
            "expires_at": iso(self.now + timedelta(days=60)), "max_redemptions": 100})
        self.api("POST", "/v1/coupons/redeem", sub="alice", body={"code": "WELCOME20"})
        self.api("POST", "/v1/check-in", sub="alice")
        self.api("PUT", "/v1/settings", sub="alice", body={"credit_mail": False})
        bob_buy = self.api("POST", "/v1/purchases", sub="bob", body={"credits": 500})
        self.pay(bob_buy)
        second = self.api("POST", "/v1/purchases", sub="bob", body={"credits": 100})
        self.pay(second)
        self.api("POST", f"/v1/purchases/{second['purchase_id']}/refund", sub="bob")
        carol_buy = self.api("POST", "/v1/purchases", sub="carol", body={"credits": 50})
        self.pay(carol_buy)
        self.api("POST", "/v1/admin/grants", iam=OPERATOR, body={
            "account_id": "carol", "credits": 10, "kind": "event",
            "expires_at": iso(self.now + timedelta(days=30)), "reason": "feedback reward"})
        self.stack.drain()

    # ------------------------------------------------------------------ the statements
    def statement(self, account: str) -> dict[str, Any]:
        month = self.month
        balance = self.api("GET", "/v1/balance", sub=account)
        usage = self.api("GET", "/v1/usage", sub=account, query={"month": month})
        usd = self.api("GET", "/v1/usage", sub=account, query={"month": month, "unit": "usd"})
        per_resource = {
            r: self.api("GET", "/v1/usage", sub=account, query={"month": month, "resource": r})["series"]
            for r in ("container", "storage", "traffic", "ai")
        }
        entries, cursor = [], None
        while True:
            page = self.api("GET", "/v1/ledger", sub=account,
                            query={"from": iso(self.start), "limit": 100, "cursor": cursor})
            entries += page["entries"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        csv = self.api("GET", "/v1/ledger", sub=account, query={"from": iso(self.start), "format": "csv"})
        (OUT / f"ledger-{account}.csv").write_text(csv)
        purchases = self.api("GET", "/v1/purchases", sub=account)["purchases"]
        ai_log = self.api("GET", "/v1/usage/ai", sub=account, query={"limit": 3})["entries"]
        settings = self.api("GET", "/v1/settings", sub=account)
        alerts = self.api("GET", "/v1/alerts", sub=account)["alerts"]
        by_project = self.api("GET", "/v1/usage", sub=account, query={
            "from": self.start.strftime("%Y-%m-%d"), "to": self.now.strftime("%Y-%m-%d"), "granularity": "month",
            "group_by": "label:project"})
        label_csv = self.api("GET", "/v1/usage.csv", sub=account, query={
            "from": self.start.strftime("%Y-%m-%d"), "to": self.now.strftime("%Y-%m-%d"), "granularity": "day",
            "group_by": "label:team"})
        (OUT / f"usage-by-team-{account}.csv").write_text(label_csv)
        return {"balance": balance, "usage": usage, "usd": usd, "series": per_resource, "ledger": entries,
                "purchases": purchases, "ai": ai_log, "settings": settings, "alerts": alerts,
                "by_project": by_project}

    def team_view(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The team's members (read by ben, its billing person) and who did what (olga, its owner)."""
        team = {"Billing-Account": "studio"}
        return (self.api("GET", "/v1/members", sub="ben", headers=team)["members"],
                self.api("GET", "/v1/activity", sub="olga", headers=team)["entries"])

    @staticmethod
    def print_team(members: list[dict[str, Any]], activity: list[dict[str, Any]]) -> None:
        print("\nstudio's members (GET /v1/members as ben, billing):")
        for m in members:
            print(f"  {m['user_id']:<6} {m['role']:<8} limit {m['monthly_limit'] or '-':>11}   "
                  f"spent this month {m['spent_this_month']:>11}   limit reached: {m['limit_reached']}")
        print("studio's activity (GET /v1/activity as olga, owner):")
        for e in activity:
            print(f"  {e['at']} {e['actor']:<9} {e['action']:<22} {json.dumps(e['details'])[:80]}")

    def print_statement(self, account: str, s: dict[str, Any]) -> None:
        b, u, d = s["balance"], s["usage"], s["usd"]
        line = "-" * 78
        print(f"\n{line}\n{account}  ({b['plan']} plan)   statement of {self.now:%Y-%m-%d %H:%M} UTC\n{line}")
        print(f"  available {b['available']:>14} credits  (free {b['free']}, purchased {b['purchased']})")
        print(f"  debt      {b['debt']:>14}   exhausted: {b['exhausted']}   credit mail: {b['credit_mail']}")
        print(f"  accrued   {b['accrued']:>14}   remaining {b['remaining']}   burn {b['hourly_burn']}/h"
              f"   hours left: {b['hours_left']}")
        print(f"  next monthly grant {b['next_monthly_grant_at']}")
        for lot in b["lots"]:
            print(f"    lot {lot['lot_id']:<44} {lot['kind']:<11} {lot['remaining']:>12} / {lot['granted']:>12}"
                  f"  expires {lot['expires_at'] or 'never'}")
        print(f"  {u['month']} usage: {u['total']} credits (${d['total']['cents'] / 100:.2f})   "
              f"average/day {u['average_daily']}   runs out {u['projected_run_out']}")
        for resource, amount in u["by_resource"].items():
            print(f"    {resource:<10} {amount:>14}  (${d['by_resource'][resource]['cents'] / 100:.2f})")
        for p in s["purchases"]:
            refund = f"  refunded {p['refund']['cents']} cents" if p.get("refund") else ""
            auto = " (auto top-up)" if p.get("auto") else ""
            print(f"  purchase {p['purchase_id']}: {p['credits']} credits, {p['price']['cents']} cents, "
                  f"{p['status']}{auto}{refund}")
        settings = s["settings"]
        print(f"  settings: credit mail {settings['credit_mail']}, auto top-up {settings['auto_top_up']}, "
              f"spend cap {settings['spend_cap']}")
        for alert in s["alerts"]:
            print(f"  alert {alert['alert_id']}: {alert['kind']} {alert['threshold']}")
        for group in s["by_project"].get("groups", []):
            print(f"  label project={group['key']}: {group['total']} credits since {self.start:%Y-%m-%d}")
        kinds: dict[str, int] = {}
        for e in s["ledger"]:
            kinds[e["type"]] = kinds.get(e["type"], 0) + 1
        print(f"  audit log: {len(s['ledger'])} entries {kinds}; last five:")
        for e in s["ledger"][-5:]:
            paid = ", ".join(f"{p['lot_id']} {p['amount']}" for p in e["paid_by"])
            print(f"    {e['at']} {e['type']:<10} {e['amount']:>12} {e['reason']:<24} {paid}")

    def save_mails(self) -> list[Path]:
        """Every mail the outbox sent, rendered as SES got it (HTML and text), to ``out/mails``."""
        from billing.domain.model import Effect, Mail, from_json
        from billing.services.mails import render

        folder = OUT / "mails"
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        table = self.stack.client("dynamodb")
        link = self.stack.function_environment("OutboxDispatcherFunction")["BUY_CREDITS_URL"]
        saved: list[Path] = []
        for page in table.get_paginator("scan").paginate(TableName=self.stack.table_name):
            for item in page["Items"]:
                if not item["sk"]["S"].startswith("EVENT#") or "effects" not in item:
                    continue
                for effect in from_json(item["effects"]["S"], list[Effect]):
                    if isinstance(effect, Mail):
                        mail = render(effect, link)
                        account = item["pk"]["S"].removeprefix("ACCOUNT#")
                        stem = folder / f"{account}-{effect.template}-{effect.effect_id[:8]}"
                        stem.with_suffix(".html").write_text(mail.html)
                        headers = f"Subject: {mail.subject}\nTo: {effect.to}\n\n"
                        stem.with_suffix(".txt").write_text(headers + mail.text)
                        saved.append(stem.with_suffix(".html"))
        return sorted(saved)

    def chart(self, statements: dict[str, dict[str, Any]]) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        colors = {"container": "#4C72B0", "storage": "#55A868", "traffic": "#C44E52", "ai": "#8172B2"}
        fig, axes = plt.subplots(len(statements), 2, figsize=(13, 3.4 * len(statements)), squeeze=False)
        for row, (account, s) in enumerate(statements.items()):
            days = [p["date"][-2:] for p in s["usage"]["series"]]
            bottom = [0.0] * len(days)
            ax = axes[row][0]
            for resource, series in s["series"].items():
                values = [float(p["amount"]) for p in series]  # each day's own amount (display only)
                ax.bar(days, values, bottom=bottom, color=colors[resource], label=resource)
                bottom = [a + b for a, b in zip(bottom, values, strict=True)]
            ax.set_title(f"{account}: credits per day, {s['usage']['month']}")
            ax.tick_params(axis="x", labelsize=7)
            ax.legend(fontsize=7)
            ax = axes[row][1]
            # The running sum is the API's `cumulative`, never a sum of the bars' rounded floats.
            ax.plot(days, [float(p["cumulative"]) for p in s["usage"]["series"]], marker="o", color="#333333")
            ax.fill_between(days, [float(p["cumulative"]) for p in s["usage"]["series"]], alpha=0.15)
            ax.set_title(f"{account}: cumulative credits, total {s['usage']['total']}")
            ax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        path = OUT / "usage-chart.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    global OUT
    parser = argparse.ArgumentParser(prog="python -m localsam.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the chart, CSVs and logs (./out)")
    parser.add_argument("--serve", action=argparse.BooleanOptionalAction, default=None,
                        help="keep serving the API and the page afterwards (default: when run from a terminal)")
    parser.add_argument("--port", type=int, default=3000, help="the port to serve on (3000)")
    args = parser.parse_args(argv)
    OUT = args.out.resolve()
    began = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0)
    print("starting the local stack (DynamoDB Local, moto for SES/EventBridge/SQS) from template.yaml ...")
    logs = OUT / "function-logs.jsonl"
    clock = SimulatedClock()
    with StackRunner(clock=clock) as stack, logs.open("w") as log:
        demo = Demo(stack, now, clock)
        demo.script()
        print(f"simulating {demo.start:%Y-%m-%d} .. {now:%Y-%m-%d %H:%M} UTC: "
              f"{len(demo.timeline)} platform events, the monthly job and the periodic checks ...")
        # The functions' structured logs and metrics go where CloudWatch would have them.
        with contextlib.redirect_stdout(log):
            demo.boundary_and_checks()
            demo.today()
            statements = {a: demo.statement(a) for a in ACCOUNTS}
            team = demo.team_view()
            # The daily reconciliation, through its schedule: every stored balance against its ledger.
            stack.fire_schedule("ReconciliationFunction", "Daily")
        for account, s in statements.items():
            demo.print_statement(account, s)
        demo.print_team(*team)
        [reconciled] = [e["detail"] for e in stack.published_events("Reconciliation Finished")]
        print(f"\nreconciliation (the daily schedule): {reconciled['accounts_checked']} accounts checked, "
              f"{reconciled['differences']} differences {reconciled['first_differences']}")
        print("\nevents billing published:")
        for e in stack.published_events():
            print(f"  {e['detail-type']:<34} {json.dumps(e['detail'])[:110]}")
        print("\nmail sent through SES:")
        for mail in stack.sent_emails():
            print(f"  to {mail['destinations']}: {mail['subject']}")
        print("\npayments through Stripe (the local stand-in, localstripe; never the real Stripe):")
        with contextlib.redirect_stdout(log):
            paid = demo_stripe.run(stack.dynamodb_endpoint)
        print("\n".join(paid))
        mails = demo.save_mails()
        chart = demo.chart(statements)
        print(f"\nusage chart: {chart}\naudit logs: {OUT}/ledger-*.csv\nusage by label: {OUT}/usage-by-team-*.csv"
              f"\nmails ({len(mails)}, HTML and text): {OUT / 'mails'}\nfunction logs: {logs}")
        print(f"done in {time.monotonic() - began:.0f} s")
        if args.serve or (args.serve is None and sys.stdin.isatty()):
            serve(stack, args.port)
    return 0


def serve(stack: StackRunner, port: int) -> None:
    """Keep the stack up: the API and the credit-usage page, until Ctrl-C."""
    base = stack.serve_api(port=port)
    token = make_jwt({"sub": "bob", "exp": int(time.time()) + 7 * 86400})
    ben = make_jwt({"sub": "ben", "exp": int(time.time()) + 7 * 86400})
    print(f"\nthe credit-usage page: {base}/  (sign in as one of {', '.join(ACCOUNTS)})"
          f"\n  or straight in as bob: {base}/#token={token}"
          f"\n  or as ben into studio's billing (the platform's link names the team): "
          f"{base}/#token={ben}&account=studio"
          f"\nthe API's document: {base}/v1/openapi.json   Swagger UI: {base}/docs"
          "\nCtrl-C stops the stack.")
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
