"""What a member's container stop costs against a personal one (issue 20), on DynamoDB Local.

Three accounts settle the same ``Container Stopped`` (small + Code Supporter, 2.5 hours): a personal
account (no members, no ``user_id``); a team whose member ran it (``user_id``, the member's month
figure on the balance, ``member_spent``); the same with a monthly limit on the member (not
reached: the limit is one more comparison, no read). For each: the DynamoDB requests by operation,
the items the transaction writes, and the balance item's size. Prints figures only.

Run: ``python -m bench.member_bench [--endpoint URL]``.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from datetime import datetime
from typing import Any

from bench import local

local.environment()

NOW = datetime.fromisoformat("2026-03-10T14:30:00+00:00")


class Counting:
    """Counts the DynamoDB requests a client makes, and the items each write request writes."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.items = 0

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.dynamodb.*", self._before)

    def _before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.ops[model.name] += 1
        if model.name == "TransactWriteItems":
            self.items += len(params.get("TransactItems", []))
        elif model.name in ("PutItem", "UpdateItem", "DeleteItem"):
            self.items += 1

    def reset(self) -> None:
        self.ops.clear()
        self.items = 0


def event(account: str, detail_type: str, at: str, eid: str, **fields: Any) -> dict[str, Any]:
    source = "platform.accounts" if detail_type in ("Account Created", "Member Added") else "platform.containers"
    detail = {"event_id": eid, "account_id": account, "occurred_at": at, **fields}
    return {"version": "0", "id": eid, "source": source, "detail-type": detail_type, "detail": detail}


def run(table: str) -> None:
    from billing.domain.events import parse_platform_event
    from billing.services.members import set_limit
    from billing.services.settlement import settle_platform_event
    from billing.store.ledger import Ledger

    ledger = Ledger(table_name=table)
    counting = Counting()
    m = ledger.models
    clients = {id(c): c for c in [m.connection.client,
                                   *(model._get_connection().connection.client
                                     for model in (m.Account, m.EventRecord, m.Entry, m.Usage, m.Item))]}
    for client in clients.values():
        counting.attach(client)

    def settle(raw: dict[str, Any]) -> None:
        settle_platform_event(parse_platform_event(raw), ledger, NOW)

    cases = {"personal stop": ("bench-personal", None, None), "member's stop": ("bench-team", "mia", None),
             "member's stop, with a limit": ("bench-limit", "mia", 500_000_000)}
    print(f"{'case':<30} {'requests':<40} {'items written':>13} {'balance bytes':>14}")
    for name, (acct, user, limit) in cases.items():
        settle(event(acct, "Account Created", "2026-03-01T08:00:00Z", f"{acct}-a", email="a@example.com",
                     plan="free"))
        if user:
            settle(event(acct, "Member Added", "2026-03-01T08:00:00Z", f"{acct}-m", user_id=user, role="member",
                         email="m@example.com"))
            for other in ("olivia", "bill", "max"):
                settle(event(acct, "Member Added", "2026-03-01T08:00:00Z", f"{acct}-{other}", user_id=other,
                             role="owner" if other == "olivia" else "member", email=f"{other}@example.com"))
        if limit is not None:
            set_limit(ledger, acct, "mia", limit, "olivia", datetime.fromisoformat("2026-03-01T09:00:00+00:00"))
        who = {"user_id": user} if user else {}
        start_run(settle, acct, who)
        counting.reset()
        settle(event(acct, "Container Stopped", "2026-03-10T14:30:00Z", f"{acct}-x", container_id="c1",
                     run_id="r1", traffic_bytes=2 * 2**30, **who))
        requests = ", ".join(f"{op} {n}" for op, n in sorted(counting.ops.items()))
        state = m.Account.get(f"ACCOUNT#{acct}", "STATE")
        print(f"{name:<30} {requests:<40} {counting.items:>13} {len(state.body):>14}")
    stops(ledger, counting, settle)


def start_run(settle: Any, acct: str, who: dict[str, str]) -> None:
    """Container c1 (10 GB) created on the 1st, and its small + Code Supporter run started on the
    10th at 12:00, by ``who``'s member if any."""
    settle(event(acct, "Container Created", "2026-03-01T09:00:00Z", f"{acct}-c", container_id="c1",
                 storage_gb=10, **who))
    settle(event(acct, "Container Started", "2026-03-10T12:00:00Z", f"{acct}-s", container_id="c1",
                 run_id="r1", tier="small", code_supporter=True, **who))


def stops(ledger: Any, counting: Counting, settle: Any) -> None:
    """The settlement that asks a running container to stop: a member's limit reached against the
    account's spend cap reached (today's stop of a whole account), both found by the forecast check
    with one small + Code Supporter run (8.76 credits an hour) and a 20-credit limit or cap."""
    from billing.services.account_settings import update_settings
    from billing.services.members import set_limit
    from billing.services.settlement import settle_account
    from billing.store import keys

    start = datetime.fromisoformat("2026-03-01T09:00:00+00:00")
    check = datetime.fromisoformat("2026-03-10T15:00:00+00:00")  # 3 h of 8.76 = 26.28 >= 20
    print(f"{'stop':<30} {'requests':<40} {'items written':>13} {'effects':>14}")
    for name, acct, user in (("spend cap reached", "bench-cap", None), ("member limit reached", "bench-mlim", "mia")):
        settle(event(acct, "Account Created", "2026-03-01T08:00:00Z", f"{acct}-a", email="a@example.com",
                     plan="membership"))
        if user:
            settle(event(acct, "Member Added", "2026-03-01T08:00:00Z", f"{acct}-m", user_id=user, role="member",
                         email="m@example.com"))
            set_limit(ledger, acct, user, 20_000_000, acct, start)
        else:
            update_settings(ledger, acct, spend_cap="20", actor=acct, now=start)
        who = {"user_id": user} if user else {}
        start_run(settle, acct, who)
        counting.reset()
        event_id = keys.check_sweep_event_id(check)
        settle_account(acct, check, event_id, ledger)
        requests = ", ".join(f"{op} {n}" for op, n in sorted(counting.ops.items()))
        stored = ledger.stored(acct, event_id)
        effects = len(stored.effects) if stored else 0
        print(f"{name:<30} {requests:<40} {counting.items:>13} {effects:>14}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"),
                        help="an already running DynamoDB Local (default: start one)")
    parser.add_argument("--short", action="store_true", help="CI's smoke run (the bench is short already)")
    args = parser.parse_args()
    with local.bench_table(args.endpoint, "billing-bench") as (_, table):
        run(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
