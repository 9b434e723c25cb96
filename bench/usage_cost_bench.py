"""Usage aggregates' cost (issue 19): a stop's write units on a labelled account vs an unlabelled one,
and a 366-day usage read grouped by label. Prints figures only (no timing assertion).

1. An account with ``--containers`` containers, each with its own label (``project=p<i>``, and one of
   seven teams), after ``--stops`` labelled stops in one day (one micro run each, through the
   settlement's code), then one more stop, measured; vs the same stop on an account of one container
   without labels. For each: the TransactWriteItems' items, the usage items among them, and write
   units computed from the items' sizes (2 x ceil(KB) per item, transactional) and as DynamoDB Local
   reports them (table, and table + GSI1).
2. ``GET /v1/usage?from=<366 days>&group_by=label:project`` (and by the hour over those 366 days, and
   grouped by container) on the labelled account through UsageApiFunction's handler: requests,
   items and bytes read, the status, and the answer's size (a 400 says how to narrow it).

    python -m bench.usage_cost_bench [--containers 10000] [--stops 10000] [--short]

``--short`` (CI's smoke run): 60 containers and 60 stops, enough to show the bench still runs; the
figures in bench/README.md are from full runs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import json
import math
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script too
    sys.path.insert(0, str(ROOT))

from bench import local  # noqa: E402

local.environment()

import warnings  # noqa: E402

import boto3  # noqa: E402
import botocore.client  # noqa: E402

warnings.filterwarnings("ignore", message="No application metrics to publish")

KB = 1024
DAY = "2026-03-10"


class Recorder:
    """DynamoDB requests of the process (around ``BaseClient._make_api_call``), with consumed capacity."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.on = False
        original = botocore.client.BaseClient._make_api_call
        recorder = self

        def wrapped(client: Any, op: str, params: dict[str, Any]) -> Any:
            if not recorder.on or client.meta.service_model.service_name != "dynamodb":
                return original(client, op, params)
            if op in ("TransactWriteItems", "Query", "GetItem", "BatchGetItem", "UpdateItem", "PutItem"):
                params = {**params, "ReturnConsumedCapacity": "INDEXES"}
            response = original(client, op, params)
            recorder.calls.append((op, params, response))
            return response

        botocore.client.BaseClient._make_api_call = wrapped  # type: ignore[method-assign]

    @contextmanager
    def record(self) -> Iterator[list[tuple[str, dict[str, Any], dict[str, Any]]]]:
        self.calls, self.on = [], True
        try:
            yield self.calls
        finally:
            self.on = False


def settle(ledger: Any, detail_type: str, account: str, at: str, **fields: Any) -> None:
    from billing.domain.events import parse_platform_event
    from billing.services.intake import SOURCES
    from billing.services.settlement import settle_platform_event

    source = {"Account Created": "platform.accounts", "AI Usage Recorded": "platform.ai"}.get(
        detail_type, "platform.containers")
    raw = {"version": "0", "id": "x", "source": source,
           "detail-type": detail_type, "detail": {"event_id": uuid.uuid4().hex, "account_id": account,
                                                  "occurred_at": at, **fields}}
    event = parse_platform_event(raw, SOURCES)
    settle_platform_event(event, ledger, event.detail.occurred_at)


def fund(ledger: Any, account: str, credits_: int) -> None:
    """A purchased lot of ``credits_``, granted as the purchase does (a real change): the day's stops
    stay paid for. An account in debt writes a second ledger entry a stop (the part not covered), a
    cost of the debt, not of the labels (Membership's 1,000 credits last about 3,000 of these stops)."""
    from billing.domain import credits
    from billing.domain import settle as rules
    from billing.domain.clock import parse_time
    from billing.domain.posting import Book
    from billing.store.ledger import Change

    def action(state: Any) -> Any:
        book = Book(rules.require(state, account), ledger.catalog, f"{account}-fund")
        credits.grant(book, parse_time("2026-03-01T00:00:01Z"), "purchased", credits_ * 1_000_000, None,
                      "credits_purchased", purchase_id=f"{account}-fund")
        return Change(book)

    ledger.apply(account, f"{account}-fund", action)


def build(ledger: Any, account: str, containers: int, stops: int, labelled: bool) -> None:
    settle(ledger, "Account Created", account, "2026-03-01T00:00:00Z", email=f"{account}@example.com",
           plan="membership")
    fund(ledger, account, 1 + stops // 2)  # a 10-minute micro run is 0.326667 credits
    for i in range(containers):
        labels = {"project": f"p{i:05d}", "team": f"t{i % 7}"} if labelled else None
        settle(ledger, "Container Created", account, "2026-03-01T00:00:00Z", container_id=f"c{i}", storage_gb=5,
               **({"labels": labels} if labels else {}))
    for i in range(stops):
        # runs spread over the day's hours, each 10 minutes, each container in turn
        c, hour, minute = f"c{i % containers}", 1 + (i * 22 // max(stops, 1)), 0
        run = f"r{i}"
        settle(ledger, "Container Started", account, f"{DAY}T{hour:02d}:{minute:02d}:00Z", container_id=c,
               run_id=run, tier="micro")
        settle(ledger, "Container Stopped", account, f"{DAY}T{hour:02d}:{minute + 10:02d}:00Z", container_id=c,
               run_id=run, traffic_bytes=0)


def measure_stop(ledger: Any, recorder: Recorder, account: str, container: str) -> dict[str, Any]:
    settle(ledger, "Container Started", account, f"{DAY}T23:00:00Z", container_id=container, run_id="measured",
           tier="micro")
    with recorder.record() as calls:
        settle(ledger, "Container Stopped", account, f"{DAY}T23:30:00Z", container_id=container, run_id="measured",
               traffic_bytes=0)
    [(_, params, response)] = [c for c in calls if c[0] == "TransactWriteItems"]
    client = boto3.client("dynamodb")
    sizes, usage_items, kinds = [], 0, []
    for t in params["TransactItems"]:
        (_, body), = t.items()
        key = body.get("Key") or {k: body["Item"][k] for k in ("pk", "sk")}
        usage_items += key["sk"]["S"].startswith("USAGE#")
        sk = key["sk"]["S"]
        kinds.append("#".join(sk.split("#")[:2]) if sk.startswith("USAGE#") else sk.split("#")[0])
        stored = client.get_item(TableName=body["TableName"], Key=key, ConsistentRead=True).get("Item")
        sizes.append(local.item_size(stored))
    consumed = response.get("ConsumedCapacity") or []
    table = sum((r.get("Table") or {}).get("CapacityUnits", 0) for r in consumed)
    total = sum(r.get("CapacityUnits", 0) for r in consumed)
    return {"items": len(sizes), "usage_items": usage_items, "largest": max(sizes),
            "wcu": sum(max(1, math.ceil(s / KB)) * 2 for s in sizes), "wcu_local": table, "wcu_local_indexes": total,
            "requests": len(calls), "kinds": ", ".join(f"{k} x{n}" if n > 1 else k for k, n in Counter(kinds).items())}


def read(ledger: Any, recorder: Recorder, account: str, query: dict[str, str]) -> dict[str, Any]:
    from billing.store.cursors import CursorCodec
    from billing.store.usage_reads import item_size as stored_size
    from localsam.runtime import function_module

    module = function_module("usage_api")
    from billing import wiring

    module.deps.dependency_overrides[wiring.ledger] = lambda: ledger
    module.deps.dependency_overrides[wiring.cursor_codec] = lambda: CursorCodec("s")
    now = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # the range's last day is today: no day cut off
    module.deps.dependency_overrides[wiring.clock] = lambda: (lambda: now)
    event = {"version": "2.0", "routeKey": "GET /v1/usage", "rawPath": "/v1/usage",
             "rawQueryString": "&".join(f"{k}={v}" for k, v in query.items()), "queryStringParameters": query,
             "headers": {"accept-encoding": "gzip"},  # as a browser or `curl --compressed` asks
             "requestContext": {"http": {"method": "GET", "path": "/v1/usage"}, "stage": "$default",
                                "authorizer": {"jwt": {"claims": {"sub": account}}},
                                "requestId": "r", "routeKey": "GET /v1/usage"}, "isBase64Encoded": False}
    context = type("Context", (), {"function_name": "usage-api", "memory_limit_in_mb": 512,
                                   "invoked_function_arn": "arn:aws:lambda:us-east-1:1:function:usage-api",
                                   "aws_request_id": "r"})()
    start = time.perf_counter()
    with recorder.record() as calls:
        answer = module.lambda_handler(event, context)
    seconds = time.perf_counter() - start
    queries = [c for c in calls if c[0] == "Query"]
    items = [i for _, _, r in queries for i in r.get("Items", [])]
    body = answer.get("body") or ""
    sent = len(body.encode())
    if answer.get("isBase64Encoded"):  # gzipped (the client takes gzip): API Gateway sends the decoded bytes
        zipped = base64.b64decode(body)
        body, sent = gzip.decompress(zipped).decode(), len(zipped)
    message = json.loads(body).get("error", {}).get("message") if answer["statusCode"] != 200 else None
    return {"status": answer["statusCode"], "requests": len(calls), "queries": len(queries), "items": len(items),
            "bytes": sum(stored_size(i) for i in items), "answer_bytes": len(body.encode()), "sent_bytes": sent,
            "seconds": seconds, "message": message}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.usage_cost_bench", description=__doc__)
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--stops", type=int, default=10_000)
    parser.add_argument("--short", action="store_true", help="60 containers and 60 stops (CI's smoke run)")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"), help="a running DynamoDB Local")
    args = parser.parse_args(argv)
    if args.short:
        args.containers, args.stops = 60, 60
    from billing.store.ledger import Ledger

    print(f"usage_cost_bench: python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with local.bench_table(args.endpoint, "bench-usage") as (_, table):
        recorder = Recorder()
        ledger = Ledger(table_name=table, sleep=lambda _: None)
        start = time.perf_counter()
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # the services' EMF lines
            build(ledger, "acct-plain", 1, 0, labelled=False)
            build(ledger, "acct-labelled", args.containers, args.stops, labelled=True)
        print(f"    built: {args.containers:,} labelled containers, {args.stops:,} labelled stops on {DAY} "
              f"in {time.perf_counter() - start:.0f} s")
        plain = measure_stop(ledger, recorder, "acct-plain", "c0")
        big = measure_stop(ledger, recorder, "acct-labelled", f"c{args.containers - 1}")
        print(f"\n(1) one Container Stopped, unlabelled one-container account vs {args.containers:,} labelled "
              f"containers after {args.stops:,} labelled stops that day")
        print(f"    {'':44} {'1 container':>12} {'labelled':>12}")
        for name, key in (("items in its transaction", "items"), ("of them usage items", "usage_items"),
                          ("largest item written (bytes)", "largest"),
                          ("WCU computed (2 x ceil(KB) per item)", "wcu"),
                          ("WCU reported by DynamoDB Local (table)", "wcu_local"),
                          ("WCU reported, table + GSI1", "wcu_local_indexes"), ("DynamoDB requests", "requests")):
            print(f"    {name:44} {plain[key]:>12,} {big[key]:>12,}")
        print(f"    its items, 1 container: {plain['kinds']}\n    its items, labelled:    {big['kinds']}")
        ratio = big["wcu"] / plain["wcu"]
        print(f"    WCU ratio labelled / one container: {ratio:.2f} computed "
              f"({'within' if abs(ratio - 1) <= 0.10 else 'OUTSIDE'} +-10%), "
              f"{big['wcu_local_indexes'] / max(plain['wcu_local_indexes'], 1):.2f} reported with GSI1")
        print("\n(2) GET /v1/usage over 366 days (2025-12-01 .. 2026-11-30), labelled account, Accept-Encoding: gzip")
        base = {"from": "2025-12-01", "to": "2026-11-30"}
        for name, query in (("by day, grouped by label:project", {**base, "group_by": "label:project"}),
                            ("by month, grouped by label:team", {**base, "granularity": "month",
                                                                 "group_by": "label:team"}),
                            ("by hour, grouped by label:project", {**base, "granularity": "hour",
                                                                   "group_by": "label:project"}),
                            ("by day, grouped by container", {**base, "group_by": "container"})):
            r = read(ledger, recorder, "acct-labelled", query)
            verdict = "answers" if r["status"] == 200 else f"400: {r['message']}"
            print(f"    {name:36} status {r['status']}, {r['queries']} queries, {r['items']:,} items, "
                  f"{r['bytes'] / 2**20:.2f} MB read, answer {r['answer_bytes'] / 2**20:.2f} MB "
                  f"({r['sent_bytes'] / 2**20:.2f} MB gzipped), "
                  f"{r['seconds'] * 1000:.0f} ms: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
