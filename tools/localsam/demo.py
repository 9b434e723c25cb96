"""``make run``: the billing stack locally on its embedded defaults, and a simulated month.

Three sample accounts live through the last 29 days (so a month boundary is crossed, unless today is
the 30th or 31st; events older than 30 days are refused), driven by the platform's events routed
the way AWS routes them (EventBridge rules, the schedules, the SQS queues, the table's stream to the
outbox dispatcher, the HTTP API of ``template.yaml``):

* ``alice`` (Free plan): a small container most days, 8 GB of storage, AI Side Chat, a coupon, a
  check-in today, and credit mail switched off.
* ``bob`` (Membership): a medium container with Code Supporter, 40 GB, heavy traffic, Snap and AI
  Supporter; buys 500 credits (signed payment webhook) and refunds a second purchase.
* ``carol`` (Free plan): large runs that drain her credits: the low-credit mail goes out, the
  periodic check ends her credits (debt, stop and inactivation requests, to which the simulated
  platform responds), and a purchase today clears the debt.

Usage happens in the past (event times), what users do through the API happens now (wall clock).
Each account's statement is read through the HTTP API and printed; ``out/`` gets the usage chart
(PNG, daily and cumulative), and each account's audit log as CSV.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from localsam.aws import LOCAL_PARAMETERS
from localsam.runner import StackRunner

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out"
GIB = 2**30
WEBHOOK_SECRET = LOCAL_PARAMETERS["PaymentWebhookSecret"]  # the local runner's value for the template's
OPERATOR = "arn:aws:iam::123456789012:role/billing-operator"


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class Demo:
    def __init__(self, stack: StackRunner, now: datetime) -> None:
        self.stack = stack
        self.now = now
        self.start = (now - timedelta(days=29)).replace(hour=8, minute=0, second=0)
        self.rng = random.Random(7)
        self.seq = 0
        self.timeline: list[tuple[datetime, str, str, dict[str, Any]]] = []

    # ------------------------------------------------------------------ the platform's events
    def event(self, at: datetime, account: str, detail_type: str, **fields: Any) -> None:
        self.seq += 1
        source = {"Account Created": "platform.accounts", "Plan Changed": "platform.accounts",
                  "AI Usage Recorded": "platform.ai"}.get(detail_type, "platform.containers")
        detail = {"event_id": f"demo-{self.seq:05d}", "account_id": account, "occurred_at": iso(at), **fields}
        self.timeline.append((at, source, detail_type, detail))

    def run(self, account: str, container: str, start: datetime, minutes: int, tier: str,
            code_supporter: bool = False, traffic_gib: float = 0.0) -> None:
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
        self.event(t0 + timedelta(days=20), "carol", "Account Created", email="carol@example.com", plan="free")
        self.event(t0 + timedelta(minutes=5), "alice", "Container Created", container_id="alice-web", storage_gb=6)
        self.event(t0 + timedelta(minutes=5), "bob", "Container Created", container_id="bob-api", storage_gb=25)
        self.event(t0 + timedelta(days=6), "bob", "Container Created", container_id="bob-ml", storage_gb=12)
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
                           output_tokens=rng.randrange(500, 2000), container_id="bob-api")
            if day == 6:
                self.event(morning, "bob", "AI Usage Recorded", feature="snap", model="gpt-5-mini",
                           input_tokens=12000, output_tokens=30000, container_id="bob-ml")
            if day == 16:
                self.run("bob", "bob-ml", morning + timedelta(hours=5), 120, "gpu-t4", code_supporter=True)
        self.event(t0 + timedelta(days=18), "bob", "Container Resized", container_id="bob-api", storage_gb=50)
        self.event(t0 + timedelta(days=25), "bob", "Container Inactivated", container_id="bob-ml")
        # carol: two large runs; the second drains her credits and the periodic check ends them.
        c0 = self.now - timedelta(days=2)
        c0 = c0.replace(hour=9, minute=0, second=0)
        self.event(c0 - timedelta(hours=1), "carol", "Container Created", container_id="carol-train", storage_gb=9)
        self.run("carol", "carol-train", c0, 60, "large")
        self.event(c0 + timedelta(hours=2), "carol", "Container Started", container_id="carol-train",
                   run_id="carol-long", tier="large", code_supporter=False)
        self.carol_check = c0 + timedelta(hours=2, minutes=55)
        self.open_runs = {"carol-train": "carol-long"}  # runs whose stop only the platform decides
        self.timeline.sort(key=lambda item: item[0])

    # ------------------------------------------------------------------ driving the stack
    def deliver_until(self, until: datetime) -> None:
        while self.timeline and self.timeline[0][0] <= until:
            at, source, detail_type, detail = self.timeline.pop(0)
            result = self.stack.put_event(source, detail_type, detail, time=at)
            if not result.ok:
                raise RuntimeError(f"{detail_type} failed: {[d.error for d in result.failures]}")
            self.stack.drain()  # on AWS the queues' consumers run within seconds

    def boundary_and_checks(self) -> None:
        """Deliver the timeline, firing the monthly job at the boundary and the periodic check daily."""
        first = datetime(self.now.year, self.now.month, 1, tzinfo=UTC)
        moments = sorted({first, self.carol_check} | {
            (self.start + timedelta(days=d)).replace(hour=23, minute=55) for d in range(34)
        })
        for moment in moments:
            if moment >= self.now:
                break
            self.deliver_until(moment)
            name = "MonthBoundary" if moment == first else "PeriodicCheck"
            self.stack.fire_schedule("MonthlyBillingFunction", name, at=moment)
            self.stack.drain()
            self.platform_reacts(moment)
        self.deliver_until(self.now - timedelta(minutes=5))
        self.stack.drain()

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

    # ------------------------------------------------------------------ what users do today
    def api(self, method: str, path: str, sub: str | None = None, iam: str | None = None,
            body: Any = None, query: dict[str, Any] | None = None) -> Any:
        response = self.stack.api_request(method, path, sub=sub, iam=iam, body=body, query=query)
        if response.status >= 400:
            raise RuntimeError(f"{method} {path}: {response.status} {response.body}")
        return response.json() if response.headers.get("content-type", "").startswith("application/json") \
            else response.body

    def pay(self, purchase: dict[str, Any]) -> None:
        body = json.dumps({"id": f"evt-{purchase['purchase_id']}", "type": "payment.succeeded",
                           "purchase_id": purchase["purchase_id"], "amount": purchase["price"],
                           "created_at": iso(datetime.now(UTC))})
        t = str(int(time.time()))
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
        month = self.now.strftime("%Y-%m")
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
        return {"balance": balance, "usage": usage, "usd": usd, "series": per_resource, "ledger": entries,
                "purchases": purchases, "ai": ai_log}

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
            print(f"  purchase {p['purchase_id']}: {p['credits']} credits, {p['price']['cents']} cents, "
                  f"{p['status']}{refund}")
        kinds: dict[str, int] = {}
        for e in s["ledger"]:
            kinds[e["type"]] = kinds.get(e["type"], 0) + 1
        print(f"  audit log: {len(s['ledger'])} entries {kinds}; last five:")
        for e in s["ledger"][-5:]:
            paid = ", ".join(f"{p['lot_id']} {p['amount']}" for p in e["paid_by"])
            print(f"    {e['at']} {e['type']:<10} {e['amount']:>12} {e['reason']:<24} {paid}")

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
                values = [float(p["amount"]) for p in series]  # display only
                ax.bar(days, values, bottom=bottom, color=colors[resource], label=resource)
                bottom = [a + b for a, b in zip(bottom, values, strict=True)]
            ax.set_title(f"{account}: credits per day, {s['usage']['month']}")
            ax.tick_params(axis="x", labelsize=7)
            ax.legend(fontsize=7)
            ax = axes[row][1]
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
    OUT = parser.parse_args(argv).out.resolve()
    began = time.monotonic()
    OUT.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(microsecond=0)
    print("starting the local stack (DynamoDB Local, moto for SES/EventBridge/SQS) from template.yaml ...")
    logs = OUT / "function-logs.jsonl"
    with StackRunner() as stack, logs.open("w") as log:
        demo = Demo(stack, now)
        demo.script()
        print(f"simulating {demo.start:%Y-%m-%d} .. {now:%Y-%m-%d %H:%M} UTC: "
              f"{len(demo.timeline)} platform events, the monthly job and the periodic checks ...")
        # The functions' structured logs and metrics go where CloudWatch would have them.
        with contextlib.redirect_stdout(log):
            demo.boundary_and_checks()
            demo.today()
            statements = {a: demo.statement(a) for a in ("alice", "bob", "carol")}
        for account, s in statements.items():
            demo.print_statement(account, s)
        print("\nevents billing published:")
        for e in stack.published_events():
            print(f"  {e['detail-type']:<34} {json.dumps(e['detail'])[:110]}")
        print("\nmail sent through SES:")
        for mail in stack.sent_emails():
            print(f"  to {mail['destinations']}: {mail['subject']}")
        chart = demo.chart(statements)
    print(f"\nusage chart: {chart}\naudit logs: {OUT}/ledger-*.csv\nfunction logs: {logs}")
    print(f"done in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
