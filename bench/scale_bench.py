"""Scale benchmark: what one settlement, a burst, the month job and the check, and the ledger CSV
cost as accounts grow (issue 10, billing-rules.md "Accounts of any size"). Prints figures only.

1. One ``Container Stopped`` settlement (through SettlementFunction's handler) on an account with
   ``--containers`` containers and ``--entries`` ledger entries vs a one-container account:
   DynamoDB requests, items and bytes written, WCU; the balance and usage reads' requests and RCU.
2. ``--burst`` Container Stopped events on one account put on the bus from threads at once (the
   local stack: intake -> FIFO settlement queue -> SettlementFunction), vs the same events one at a
   time: applied once, transactions, cancelled transactions, items written, dead-letter queues.
3. The month boundary and the forecast check for ``--accounts`` accounts: the fan-out's own code
   (``queue_sweeps``, ``handle_work`` -> ``sweep_page``) driving stubs of the index queries and of
   the queue that count calls, each account sweep counted at what ``settle_account`` costs on
   DynamoDB Local; per invocation the calls and an estimated duration from measured times per call.
4. The ledger CSV (``GET /v1/ledger?format=csv``) of the large account: rows, bytes, reads and peak
   memory (tracemalloc) of one response.

``--old`` also measures (1) on the one-item design of commit 8742bdf (exported with ``git archive``
to a temporary directory and run in a subprocess), where it still runs.

    python -m bench.scale_bench [--containers 10000] [--entries 100000] [--burst 100]
                                [--accounts 1000,10000,100000,1000000] [--due 0.01] [--old]
                                [--sections 1,2,3,4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
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

OLD_COMMIT = "8742bdf"  # the one-item design (the account's containers inside its state)
GIB = 2**30
C = 1_000_000
KB = 1024
CAPACITY_OPS = {"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "UpdateItem", "DeleteItem",
                "BatchWriteItem", "TransactWriteItems", "TransactGetItems"}
WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


# ---------------------------------------------------------------------------------------------- sizes


value_size, item_size = local.value_size, local.item_size


def wcu(size: int, transactional: bool) -> int:
    return max(1, math.ceil(size / KB)) * (2 if transactional else 1)


# ---------------------------------------------------------------------------------------------- recorder


@dataclass
class Call:
    service: str
    op: str
    params: dict[str, Any]
    seconds: float
    response: dict[str, Any] | None = None
    error: str | None = None
    before: list[int] = field(default_factory=list)  # TransactWriteItems: size of each item before
    after: list[int] = field(default_factory=list)  # and after

    @property
    def capacity(self) -> tuple[float, float]:
        """(table, table + indexes) capacity units DynamoDB Local reported."""
        consumed = (self.response or {}).get("ConsumedCapacity")
        rows = consumed if isinstance(consumed, list) else [consumed] if consumed else []
        table = sum((r.get("Table") or {}).get("CapacityUnits", r.get("CapacityUnits", 0)) for r in rows)
        return table, sum(r.get("CapacityUnits", 0) for r in rows)

    @property
    def items_written(self) -> int:
        if self.op == "TransactWriteItems":
            return len(self.params.get("TransactItems", []))
        if self.op == "BatchWriteItem":
            return sum(len(v) for v in self.params.get("RequestItems", {}).values())
        return 1 if self.op in WRITE_OPS else 0


class Recorder:
    """Every AWS request of the process (a wrapper around ``BaseClient._make_api_call``): operation,
    parameters, time, response or error code. DynamoDB requests ask for ``ReturnConsumedCapacity``
    (DynamoDB Local reports it); with ``images`` on, the items a TransactWriteItems writes are read
    before and after it (not recorded) for their sizes."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.recording = False
        self.images = False
        self._lock = threading.Lock()
        self._local = threading.local()
        self._plain: Any = None
        base: Any = botocore.client.BaseClient
        original = base._make_api_call
        recorder = self

        def wrapped(client: Any, op: str, params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            if not recorder.recording or getattr(recorder._local, "paused", False):
                return original(client, op, params)
            if service == "dynamodb" and op in CAPACITY_OPS and "ReturnConsumedCapacity" not in params:
                params = {**params, "ReturnConsumedCapacity": "INDEXES"}
            call = Call(service, op, params, 0.0)
            if recorder.images and op == "TransactWriteItems":
                call.before = recorder._sizes(client, params)
            start = time.perf_counter()
            try:
                call.response = original(client, op, params)
                return call.response
            except Exception as exc:
                call.error = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
                raise
            finally:
                call.seconds = time.perf_counter() - start
                if recorder.images and op == "TransactWriteItems" and call.error is None:
                    call.after = recorder._sizes(client, params)
                with recorder._lock:
                    recorder.calls.append(call)

        base._make_api_call = wrapped

    def _sizes(self, client: Any, params: dict[str, Any]) -> list[int]:
        self._local.paused = True
        try:
            sizes = []
            for t in params["TransactItems"]:
                (_, body), = t.items()
                key = body.get("Key") or {k: body["Item"][k] for k in ("pk", "sk")}
                got = client.get_item(TableName=body["TableName"], Key=key, ConsistentRead=True)
                sizes.append(item_size(got.get("Item")))
            return sizes
        finally:
            self._local.paused = False

    @contextlib.contextmanager
    def record(self, images: bool = False) -> Iterator[list[Call]]:
        calls: list[Call] = []
        self.calls, self.recording, self.images = calls, True, images
        try:
            yield calls
        finally:
            self.recording, self.images = False, False


RECORDER: Recorder | None = None


def dynamo(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.service == "dynamodb"]


def ops(calls: list[Call]) -> str:
    counts = Counter(c.op for c in dynamo(calls))
    return ", ".join(f"{op} {n}" for op, n in sorted(counts.items())) or "none"


# ---------------------------------------------------------------------------------------------- events


def ev(account: str, detail_type: str, at: str, event_id: str, **fields: Any) -> dict[str, Any]:
    source = {"Account Created": "platform.accounts", "Plan Changed": "platform.accounts",
              "AI Usage Recorded": "platform.ai"}.get(detail_type, "platform.containers")
    detail = {"event_id": event_id, "account_id": account, "occurred_at": at, **fields}
    return {"version": "0", "id": event_id, "source": source, "detail-type": detail_type, "detail": detail,
            "account": "123456789012", "region": "us-east-1", "time": at, "resources": []}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Context = local.LambdaContext


def sqs_event(bodies: list[str], arn: str = "arn:aws:sqs:us-east-1:123456789012:q") -> dict[str, Any]:
    records = []
    for i, body in enumerate(bodies):
        records.append({
            "messageId": f"m-{i}-{uuid.uuid4().hex[:8]}", "receiptHandle": f"r-{i}", "body": body,
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0", "SenderId": "bench",
                           "ApproximateFirstReceiveTimestamp": "0", "MessageGroupId": "g",
                           "SequenceNumber": str(i + 1), "MessageDeduplicationId": str(i)},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": arn,
            "awsRegion": "us-east-1",
        })
    return {"Records": records}


def api_event(path: str, sub: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    import urllib.parse

    query = query or {}
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": f"GET {path}", "rawPath": path, "rawQueryString": urllib.parse.urlencode(query),
        "headers": {"accept": "*/*", "host": "bench"},
        "requestContext": {"accountId": "123456789012", "apiId": "bench", "domainName": "bench", "domainPrefix": "b",
                           "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                                    "userAgent": "bench"},
                           "requestId": "bench", "routeKey": f"GET {path}", "stage": "$default",
                           "time": "10/Mar/2026:10:30:00 +0000", "timeEpoch": 0,
                           "authorizer": {"jwt": {"claims": {"sub": sub}, "scopes": []}}},
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    return event


def handler(function: str, **collaborators: Any) -> Any:
    """A function's app.py loaded as Lambda would, with collaborators in place of its wiring's."""
    from billing import wiring
    from localsam.runtime import function_module

    module = function_module(function)
    for name, value in collaborators.items():
        module.deps.dependency_overrides[getattr(wiring, name)] = lambda value=value: value
    return module


# ---------------------------------------------------------------------------------------------- 1. one settlement

OPEN = "2026-02-01T00:00:00Z"
T_START = "2026-03-10T08:00:00Z"  # the containers are created and started
T_STOP = "2026-03-10T10:30:00Z"  # the measured stop


def settle(ledger: Any, raw: dict[str, Any]) -> Any:
    from billing.domain.events import parse_platform_event
    from billing.services.intake import SOURCES
    from billing.services.settlement import settle_platform_event

    event = parse_platform_event(raw, SOURCES)
    return settle_platform_event(event, ledger, event.detail.occurred_at)


def history(account: str, containers: list[str], entries: int, lot_id: str) -> list[Any]:
    """``entries`` past stops (1 h of ``small`` with Code Supporter and 5 GB of billable storage), spread
    evenly from February 1st to March 10th 08:00, round-robin over ``containers``."""
    from billing.domain.model import ChargeLine, LedgerEntry, LotAmount

    first, last = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 10, 8, tzinfo=UTC)
    step = (last - first) / entries
    out = []
    for k in range(entries):
        at = (first + step * k).replace(microsecond=0)
        start, cid = at - timedelta(hours=1), containers[k % len(containers)]
        common = {"month": at.strftime("%Y-%m"), "container_id": cid, "start": start, "end": at}
        lines = [
            ChargeLine(resource="container", item="small", amount=6_800_000, run_id=f"h{k}", tier="small",
                       seconds=3600, code_supporter=True, **common),
            ChargeLine(resource="container", item="code_supporter", amount=1_960_000, run_id=f"h{k}", tier="small",
                       seconds=3600, code_supporter=True, **common),
            ChargeLine(resource="storage", item="storage", amount=90_000, seconds=3600, storage_gb=20, billable_gb=5,
                       **common),
        ]
        amount = sum(line.amount for line in lines)
        out.append(LedgerEntry(entry_id=f"hist-{k:06d}:001", type="deduction", amount=amount, at=at,
                               reason="container_stopped", event_id=f"hist-{k:06d}", lines=lines,
                               paid_by=[LotAmount(lot_id=lot_id, amount=amount)]))
    return out


def bulk_write(client: Any, table: str, items: list[dict[str, Any]], threads: int = 3) -> None:
    """BatchWriteItem, 25 items a request, a few requests at a time (unprocessed items retried)."""
    def write(chunk: list[dict[str, Any]]) -> None:
        pending = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    chunks = [items[i:i + 25] for i in range(0, len(items), 25)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, chunks))


def build_account(ledger: Any, account: str, n_containers: int, n_entries: int) -> str:
    """A valid account built fast: its first events settled for real (Account Created, a running and an
    idle container), ``n_entries`` past deductions paid by a purchased lot (the lot and the totals
    through a real change, the entries and their usage day items written directly), and, past one
    container, clones of the two containers with ids of their own, written with BatchWriteItem, the
    balance's aggregates brought in step by the domain's own ``Containers.sync``. Returns the id of a
    running container."""
    from billing.domain import credits
    from billing.domain.account import Account
    from billing.domain.clock import parse_time
    from billing.domain.model import Accrual, clone
    from billing.domain.posting import Book
    from billing.domain.usage import days_of
    from billing.store import keys
    from billing.store.ledger import Change
    from billing.store.usage import attribute

    m, client = ledger.models, ledger.models.connection.client
    ids = [f"c{k:05d}" for k in range(n_containers)]
    settle(ledger, ev(account, "Account Created", OPEN, f"{account}-open", email=f"{account}@example.com",
                      plan="membership"))
    past = history(account, ids, n_entries, f"purchased-{account}-hist")
    spent = sum(e.amount for e in past)
    by_month = Counter()
    for e in past:
        by_month[e.at.strftime("%Y-%m")] += e.amount

    def buy_and_spend(acc: Account | None) -> Change:
        assert acc is not None
        book = Book(acc, ledger.catalog, f"{account}-hist")
        lot = credits.grant(book, parse_time(OPEN) + timedelta(seconds=1), "purchased", spent, None,
                            "credits_purchased", purchase_id=f"{account}-hist")
        lot.remaining -= spent  # what the past deductions took from it
        book.state.totals.spent += spent
        book.state.totals.charged += spent
        book.state.month_charged.update(by_month)
        return Change(book)

    ledger.apply(account, f"{account}-hist", buy_and_spend)
    bulk_write(client, m.table_name, [ledger._entry_item(account, e).serialize() | {
        "pk": {"S": keys.account_pk(account)}, "sk": {"S": keys.ledger_sk(e.at, e.entry_id)}} for e in past])
    running = ids[n_containers // 2 - n_containers // 2 % 2]  # an even one: running
    pk = keys.account_pk(account)
    day_items = []
    for (day, cid), usage_day in days_of(past).items():
        if cid not in (None, running):
            continue  # the other containers' day items play no part in what is measured
        sk = keys.container_usage_day_sk(cid, day) if cid else keys.usage_day_sk(day)
        cells = {attribute(h, cell): {"N": str(v)} for h, cs in usage_day.hours.items() for cell, v in cs.items()}
        day_items.append({"pk": {"S": pk}, "sk": {"S": sk}, **cells})
    bulk_write(client, m.table_name, day_items)

    first = ids[:1] if n_containers == 1 else ["tmpl-run", "tmpl-idle"]
    for cid in first:
        settle(ledger, ev(account, "Container Created", T_START, f"{account}-{cid}-c", container_id=cid, storage_gb=20))
    settle(ledger, ev(account, "Container Started", T_START, f"{account}-{first[0]}-s", container_id=first[0],
                      run_id=f"r-{first[0]}", tier="small", code_supporter=True))
    if n_containers == 1:
        return running
    run, idle = ledger.container(account, "tmpl-run"), ledger.container(account, "tmpl-idle")
    clones = {}
    for k, cid in enumerate(ids):
        c = clone(run if k % 2 == 0 else idle)
        c.container_id, c.accrual, c.counted = cid, Accrual(), False  # new: not in the aggregates yet
        if c.runs:
            r = c.runs.pop("r-tmpl-run")
            r.run_id = f"r-{cid}"
            c.runs[r.run_id] = r
        clones[cid] = c
    save_clones(ledger, account, clones)
    return running


def save_clones(ledger: Any, account: str, clones: dict[str, Any]) -> None:
    """New containers (not counted yet) written with BatchWriteItem, the balance's aggregates brought
    in step by the domain's own ``Containers.sync``, the balance put on its version."""
    from billing.domain import forecast
    from billing.domain.account import Containers
    from billing.domain.clock import format_time
    from billing.domain.model import to_json
    from billing.store import keys

    m, pk = ledger.models, keys.account_pk(account)
    state = ledger.load(account)
    version = state.version
    containers = Containers(loaded=clones)
    containers.mark_unsaved()
    written = containers.sync(state, ledger.catalog, state.as_of)
    bulk_write(m.connection.client, m.table_name, [ledger._container_item(pk, c).serialize() | {
        "pk": {"S": pk}, "sk": {"S": keys.container_sk(c.container_id)}} for c in written])
    state.next_check_at = forecast.next_check(state, ledger.catalog)
    state.version = version + 1
    due = format_time(state.next_check_at) if state.next_check_at else None
    m.Account(pk, keys.STATE, body=to_json(state), version=state.version, as_of=format_time(state.as_of),
              active_shard=keys.active_shard(account), due_shard=keys.due_shard(account) if due else None,
              due_at=due).save(condition=m.Account.version == version)


def measure_settlement(ledger: Any, account: str, container: str) -> dict[str, Any]:
    from billing.store.cursors import CursorCodec

    assert RECORDER is not None
    app = handler("settlement", ledger=ledger, clock=lambda: datetime(2026, 3, 10, 10, 30, tzinfo=UTC))
    raw = ev(account, "Container Stopped", T_STOP, f"{account}-stop", container_id=container, run_id=f"r-{container}",
             traffic_bytes=2 * GIB)
    body = json.dumps(raw)
    with RECORDER.record(images=True) as calls:
        start = time.perf_counter()
        result = app.lambda_handler(sqs_event([body]), Context())
        seconds = time.perf_counter() - start
    assert result == {"batchItemFailures": []}, result
    tx = next(c for c in calls if c.op == "TransactWriteItems")
    sizes = [max(b, a) for b, a in zip(tx.before, tx.after, strict=True)]
    kinds = []
    for t in tx.params["TransactItems"]:
        (_, b), = t.items()
        sk = (b.get("Item") or b.get("Key"))["sk"]["S"]
        kinds.append(sk.split("#")[0] + {"USAGE#D": "#D", "USAGE#C": "#C"}.get(sk[:7], ""))
    reads = [c for c in dynamo(calls) if c.op not in WRITE_OPS]
    out = {
        "seconds": seconds, "requests": len(dynamo(calls)), "ops": ops(calls),
        "items": sum(c.items_written for c in dynamo(calls)), "kinds": kinds, "after": tx.after, "max_size": sizes,
        "wcu_computed": sum(wcu(s, True) for s in sizes), "wcu_local": sum(c.capacity[0] for c in dynamo(calls)
                                                                           if c.op in WRITE_OPS),
        "wcu_local_indexes": sum(c.capacity[1] for c in dynamo(calls) if c.op in WRITE_OPS),
        "read_rcu": sum(c.capacity[0] for c in reads),
    }
    codec = CursorCodec("bench-cursor-secret-0123456789")
    at = datetime(2026, 3, 10, 10, 30, tzinfo=UTC)
    api = handler("usage_api", ledger=ledger, cursor_codec=codec, clock=lambda: at)
    for name, path in (("balance", "/v1/balance"), ("usage", "/v1/usage")):
        with RECORDER.record() as calls:
            response = api.lambda_handler(api_event(path, account), Context())
        assert response["statusCode"] == 200, response
        out[name] = {"requests": len(dynamo(calls)), "ops": ops(calls),
                     "rcu": sum(c.capacity[0] for c in dynamo(calls)),
                     "bytes": sum(item_size(i) for c in dynamo(calls) for i in _items_read(c))}
    state = ledger.load(account)
    out["state_bytes"] = len(ledger.models.Account.get(f"ACCOUNT#{account}", "STATE").body.encode())
    out["containers"] = state.containers_count
    totals = state.totals
    available = sum(lot.remaining for lot in state.lots if not lot.closed)
    assert totals.granted == totals.spent + totals.expired + totals.refunded + available
    assert totals.charged == totals.spent + state.debt
    return out


def _items_read(call: Call) -> list[dict[str, Any]]:
    r = call.response or {}
    if call.op == "BatchGetItem":
        return [i for items in (r.get("Responses") or {}).values() for i in items]
    if call.op == "GetItem":
        return [r["Item"]] if r.get("Item") else []
    return list(r.get("Items") or [])


def section_one(endpoint: str, args: argparse.Namespace) -> dict[str, Any]:
    from billing.store.ledger import Ledger

    ledger = Ledger(table_name=local.new_table(endpoint, "bench-scale"), sleep=lambda _: None)
    print(f"\n(1) one Container Stopped settlement: {args.containers:,} containers and {args.entries:,} ledger "
          "entries vs one container")
    results = {}
    hours = int((datetime(2026, 3, 10, 8, tzinfo=UTC) - datetime(2026, 2, 1, tzinfo=UTC)).total_seconds() // 3600)
    for label, n, entries in (("one container", 1, hours), ("large", args.containers, args.entries)):
        start = time.perf_counter()
        container = build_account(ledger, f"acct-{n}", n, entries)
        built = time.perf_counter() - start
        results[label] = measure_settlement(ledger, f"acct-{n}", container)
        results[label]["entries"] = entries + 1  # and the purchase's grant
        print(f"    built '{label}' ({n:,} containers, {entries:,} past entries) in {built:.0f} s")
    report_one(results)
    results["ledger"] = ledger
    return results


def report_one(results: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    small, big = results["one container"], results["large"]
    print(f"    {'':<44}{'1 container':>14}{'large':>14}   target")
    rows = [
        ("DynamoDB requests / settlement", small["requests"], big["requests"], "<= 3"),
        ("items written / settlement", small["items"], big["items"], "<= 8"),
        ("largest item written (bytes, max before/after)", max(small["max_size"]), max(big["max_size"]),
         "<= 4096"),
        ("WCU computed (ceil(KB) x 2, transactional)", small["wcu_computed"], big["wcu_computed"],
         f"<= {1.5 * small['wcu_computed']:g} (1.5x)"),
        ("WCU reported by DynamoDB Local (table)", small["wcu_local"], big["wcu_local"], ""),
        ("  ... with the sparse indexes' writes", small["wcu_local_indexes"], big["wcu_local_indexes"], ""),
        ("RCU of the settlement's read (consistent)", small["read_rcu"], big["read_rcu"], ""),
        ("balance item (STATE body bytes)", small["state_bytes"], big["state_bytes"], ""),
        ("GET /v1/balance: requests", small["balance"]["requests"], big["balance"]["requests"], "<= 2"),
        ("GET /v1/balance: RCU", small["balance"]["rcu"], big["balance"]["rcu"],
         f"<= {2 * small['balance']['rcu']:g} (2x)"),
        ("GET /v1/usage: requests", small["usage"]["requests"], big["usage"]["requests"], "<= 2"),
        ("GET /v1/usage: RCU", small["usage"]["rcu"], big["usage"]["rcu"], f"<= {2 * small['usage']['rcu']:g} (2x)"),
    ]
    for name, a, b, target in rows:
        print(f"    {name:<44}{a!s:>14}{b!s:>14}   {target}")
    print(f"    ops: {big['ops']}; items: {', '.join(big['kinds'])}")
    print(f"    bytes of each item after (large): {big['after']}")
    print(f"    WCU ratio large / one container: {big['wcu_computed'] / small['wcu_computed']:.2f} computed, "
          f"{big['wcu_local'] / small['wcu_local']:.2f} as reported")


# ---------------------------------------------------------------------------------------------- 2. a burst


def section_two(stack: Any, args: argparse.Namespace) -> dict[str, Any]:
    from billing.store.ledger import Ledger

    assert RECORDER is not None
    n = args.burst
    ledger = Ledger(table_name=stack.table_name, sleep=lambda _: None)
    now = datetime.now(UTC).replace(microsecond=0)
    opened, started = now - timedelta(minutes=40), now - timedelta(minutes=30)
    print(f"\n(2) {n} Container Stopped on one account ({n} running containers) through the FIFO path "
          "(bus -> intake -> settlement queue -> SettlementFunction), at once vs one at a time")

    def put(raw: dict[str, Any]) -> None:
        result = stack.put_event(raw["source"], raw["detail-type"], raw["detail"])
        assert result.ok, result.failures

    def prepare(account: str) -> None:
        put(ev(account, "Account Created", iso(opened), f"{account}-open", email="b@example.com", plan="membership"))
        for i in range(n):
            cid = f"c{i:03d}"
            put(ev(account, "Container Created", iso(started), f"{account}-{cid}-c", container_id=cid, storage_gb=10))
            put(ev(account, "Container Started", iso(started), f"{account}-{cid}-s", container_id=cid,
                   run_id=f"r{i}", tier="small", code_supporter=False))
        stack.drain()

    def stop(account: str, i: int) -> dict[str, Any]:
        # run i: 600 + i seconds of small (6.80 cr/h), storage within Membership's 15 GB
        return ev(account, "Container Stopped", iso(started + timedelta(seconds=600 + i)), f"{account}-stop-{i}",
                  container_id=f"c{i:03d}", run_id=f"r{i}", traffic_bytes=0)

    expected = sum(int((Decimal(6_800_000) * (600 + i) / 3600).quantize(Decimal(1), rounding=ROUND_HALF_UP))
                   for i in range(n))
    out = {}
    quiet = contextlib.redirect_stdout(open(os.devnull, "w"))  # noqa: SIM115 - the functions' EMF metrics
    quiet.__enter__()
    for mode in ("at once", "one at a time"):
        account = f"burst-{'par' if mode == 'at once' else 'seq'}-{uuid.uuid4().hex[:6]}"
        prepare(account)
        charged_before = ledger.load(account).totals.charged
        with RECORDER.record() as calls:
            start = time.perf_counter()
            if mode == "at once":
                with ThreadPoolExecutor(16) as pool:
                    list(pool.map(lambda i, a=account: put(stop(a, i)), range(n)))
                queues, _ = stack.drain()
            else:
                queues = None
                for i in range(n):
                    put(stop(account, i))
                    stack.drain()
            seconds = time.perf_counter() - start
        tx = [c for c in calls if c.op == "TransactWriteItems"]
        state = ledger.load(account)
        entries = [e for e in _entries(ledger, account) if e.reason == "container_stopped"]
        out[mode] = {
            "seconds": seconds, "tx": len(tx), "cancelled": sum(1 for c in tx if c.error),
            "items": sum(c.items_written for c in dynamo(calls)),
            "requests": len(dynamo(calls)), "ops": ops(calls),
            "applied": len({e.event_id for e in entries}), "entries": len(entries),
            "exact": sum(e.amount for e in entries) == expected == state.totals.charged - charged_before,
            "settlement_invocations": queues.invocations if queues else None,
        }
    quiet.__exit__(None, None, None)
    dlq = {q: len(stack.queue_messages(q)) for q in ("PlatformEventsDLQ", "SettlementDLQ", "WorkDLQ", "OutboxDLQ")}
    a, b = out["at once"], out["one at a time"]
    print(f"    {'':<44}{'at once':>14}{'one at a time':>16}   target")
    for name, key in (("events applied (distinct, ledger)", "applied"), ("stop deductions in the ledger", "entries"),
                      ("amounts exact to the µcr", "exact"), ("DynamoDB requests", "requests"),
                      ("TransactWriteItems", "tx"), ("  of which cancelled", "cancelled"), ("items written", "items")):
        print(f"    {name:<44}{a[key]!s:>14}{b[key]!s:>16}")
    print(f"    {'items written, ratio':<44}{a['items'] / b['items']:>14.2f}{1:>16.2f}   <= 1.3")
    print(f"    {'wall time (s, in-process stack)':<44}{a['seconds']:>14.1f}{b['seconds']:>16.1f}")
    print(f"    dead-letter queues: {dlq}")
    print(f"    requests at once: {a['ops']}")
    out["dlq"] = dlq
    return out


def _entries(ledger: Any, account: str) -> list[Any]:
    from billing.store import keys
    from billing.store.ledger import entries_from_items

    entry = ledger.models.Entry
    return entries_from_items(entry.query(keys.account_pk(account), entry.sk.startswith(keys.LEDGER)))


# ---------------------------------------------------------------------------------------------- 3. the fan-out


def measure_call_times(endpoint: str, stack: Any, samples: int) -> dict[str, Any]:
    """Times per call kind: an account sweep (``settle_account``) of the month boundary and of the check
    on real accounts on DynamoDB Local, a page of the ``active`` index (KEYS_ONLY, 500 keys), and a
    SendMessageBatch of 10 sweep messages to the local SQS stand-in (moto)."""
    from billing.domain.clock import parse_time
    from billing.services.settlement import settle_account
    from billing.services.sweeps import PAGE, AccountSweep, body
    from billing.store import keys, queries
    from billing.store.ledger import Ledger
    from billing.store.tables import table_models

    assert RECORDER is not None
    client = boto3.client("dynamodb", endpoint_url=endpoint)
    ledger = Ledger(table_name=local.new_table(endpoint, "bench-sweeps"), sleep=lambda _: None)
    for i in range(samples):
        a, b = f"month-{i:03d}", f"check-{i:03d}"
        settle(ledger, ev(a, "Account Created", "2026-03-01T00:00:00Z", f"{a}-o", email="m@example.com", plan="free"))
        settle(ledger, ev(a, "Container Created", "2026-03-31T20:00:00Z", f"{a}-c", container_id="c1", storage_gb=8))
        settle(ledger, ev(a, "Container Started", "2026-03-31T20:00:00Z", f"{a}-s", container_id="c1", run_id="r1",
                          tier="small", code_supporter=True))
        settle(ledger, ev(b, "Account Created", "2026-03-01T00:00:00Z", f"{b}-o", email="c@example.com", plan="free"))
        settle(ledger, ev(b, "Container Created", "2026-03-02T00:00:00Z", f"{b}-c", container_id="c1", storage_gb=5))
        settle(ledger, ev(b, "Container Started", "2026-03-02T00:00:00Z", f"{b}-s", container_id="c1", run_id="r1",
                          tier="large", code_supporter=False))
    boundary, due_at = parse_time("2026-04-01T00:00:00Z"), parse_time("2026-03-02T02:00:00Z")
    sweeps: dict[str, list[tuple[float, Counter[str]]]] = {"month_boundary": [], "periodic_check": []}
    due_found, _ = queries.due_accounts(ledger.models, keys.due_shard("check-000"), due_at, PAGE, None)
    for i in range(samples):
        for sweep, account, at in (("month_boundary", f"month-{i:03d}", boundary),
                                   ("periodic_check", f"check-{i:03d}", due_at)):
            message = AccountSweep(account_id=account, at=at, sweep=sweep)
            with RECORDER.record() as calls:
                start = time.perf_counter()
                settle_account(account, at, message.event_id, ledger)
                seconds = time.perf_counter() - start
            sweeps[sweep].append((seconds, Counter(c.op for c in dynamo(calls))))
    # the active index: one shard with PAGE + 1 accounts (keys only, as the sparse index projects them)
    scratch = local.new_table(endpoint, "bench-index")
    bulk_write(client, scratch, [{"pk": {"S": f"ACCOUNT#x{k:04d}"}, "sk": {"S": "STATE"}, "body": {"S": "{}"},
                                  "active_shard": {"S": "ACTIVE#0"}} for k in range(PAGE + 1)])
    models = table_models(scratch)
    query_times = []
    for _ in range(max(5, samples)):
        with RECORDER.record() as calls:
            found, after = queries.active_accounts(models, "ACTIVE#0", PAGE, None)
        assert len(found) == PAGE and after
        query_times.append(sum(c.seconds for c in dynamo(calls)))
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=f"bench-timing-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    bodies = [body(AccountSweep(account_id=f"acct-{k:07d}", at=boundary, sweep="month_boundary")) for k in range(10)]
    sqs_times = []
    for _ in range(50):
        start = time.perf_counter()
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)])
        sqs_times.append(time.perf_counter() - start)
    return {
        "sweep": {k: statistics.median(s for s, _ in v) for k, v in sweeps.items()},
        "sweep_ops": {k: _mean_ops([c for _, c in v]) for k, v in sweeps.items()},
        "Query": statistics.median(query_times), "SendMessageBatch": statistics.median(sqs_times),
        "due_found": len(due_found),
    }


def _mean_ops(counters: list[Counter[str]]) -> dict[str, float]:
    total: Counter[str] = Counter()
    for c in counters:
        total.update(c)
    return {op: n / len(counters) for op, n in sorted(total.items())}


class CountingSqs:
    """Stands in for the SQS client under the real :class:`billing.adapters.MessageQueue`."""

    def __init__(self, sink: deque[str]) -> None:
        self.sink = sink
        self.calls = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        assert len(Entries) <= 10
        self.calls += 1
        self.sink.extend(e["MessageBody"] for e in Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


@dataclass
class Invocation:
    kind: str
    calls: Counter[str]
    cpu: float
    estimate: float


def simulate(sweep: str, accounts: int, due: float, times: dict[str, Any]) -> dict[str, Any]:
    """The job for ``accounts`` accounts (``due`` of them due for a check) through the fan-out's own code:
    MonthlyBillingFunction's ``queue_sweeps``, then WorkFunction's ``handle_work`` on batches of 10 messages
    until the queue is empty. The index queries and the queue are stubs that count calls; an account
    sweep is counted at what ``settle_account`` costs on DynamoDB Local (its calls and time)."""
    import billing.services.sweeps as sweeps
    from billing.adapters import MessageQueue
    from billing.store import keys, queries

    shards = keys.shards("active" if sweep == "month_boundary" else "due")
    listed = accounts if sweep == "month_boundary" else round(accounts * due)
    per_shard = {s: listed // len(shards) + (1 if i < listed % len(shards) else 0) for i, s in enumerate(shards)}
    counts: Counter[str] = Counter()
    sweep_ops = times["sweep_ops"][sweep]

    def page(shard: str, limit: int, after: dict[str, str] | None) -> tuple[list[str], dict[str, str] | None]:
        counts["Query"] += 1
        start = int(after["n"]) if after else 0
        end = min(per_shard[shard], start + limit)
        # DynamoDB returns a LastEvaluatedKey whenever the page is full, even if nothing follows
        return [f"{shard}-{k}" for k in range(start, end)], ({"n": str(end)} if end - start == limit else None)

    def settle_stub(account_id: str, at: Any, event_id: str, ledger: Any) -> Any:
        counts["AccountSweep"] += 1
        for op, n in sweep_ops.items():
            counts[op] += n
        return type("Applied", (), {"entries": []})()

    saved = (queries.active_accounts, queries.due_accounts, sweeps.settle_account)
    queries.active_accounts = lambda models, shard, limit, after: page(shard, limit, after)
    queries.due_accounts = lambda models, shard, at, limit, after: page(shard, limit, after)
    sweeps.settle_account = settle_stub
    bodies: deque[str] = deque()
    sqs = CountingSqs(bodies)
    queue = MessageQueue("sim", client=sqs)
    ledger = type("LedgerStub", (), {"models": None, "catalog": None})()
    invocations: list[Invocation] = []
    try:
        def invoke(kind: str, run: Any) -> None:
            before, sqs_before = Counter(counts), sqs.calls
            start = time.process_time()
            run()
            cpu = time.process_time() - start
            calls = counts - before
            calls["SendMessageBatch"] = sqs.calls - sqs_before
            calls = +calls
            estimate = (cpu + calls["Query"] * times["Query"] + calls["SendMessageBatch"] * times["SendMessageBatch"]
                        + calls["AccountSweep"] * times["sweep"][sweep])
            invocations.append(Invocation(kind, calls, cpu, estimate))

        scheduled = {"sweep": sweep, "scheduled_time": "2026-04-01T00:00:00Z"}
        invoke("MonthlyBillingFunction", lambda: sweeps.queue_sweeps(scheduled, queue))
        while bodies:
            batch = [bodies.popleft() for _ in range(min(10, len(bodies)))]
            kind = "WorkFunction " + "+".join(sorted({json.loads(b)["work"] for b in batch}))
            invoke(kind, lambda batch=batch: [sweeps.handle_work(b, ledger, queue) for b in batch])
    finally:
        queries.active_accounts, queries.due_accounts, sweeps.settle_account = saved
    total: Counter[str] = Counter()
    for inv in invocations:
        total.update(inv.calls)
    requests = total["Query"] + total["SendMessageBatch"] + sum(v for k, v in total.items() if k in CAPACITY_OPS)
    worst = max(invocations, key=lambda i: i.estimate)
    most = max(invocations, key=lambda i: sum(v for k, v in i.calls.items() if k != "AccountSweep"))
    reads = total["Query"] + total.get("BatchGetItem", 0) + total.get("GetItem", 0)
    return {"accounts": accounts, "listed": listed, "invocations": len(invocations), "total": total,
            "requests": requests, "per_account": requests / accounts, "reads": reads,
            "worst": worst, "most": most, "sweeps": total["AccountSweep"]}


def assumed_times(spec: str) -> dict[str, Any]:
    """Per-call times given instead of measured (``--assume query=19,sqs=40,sweep=24``, in ms), with the
    account sweep's requests as measured here (2 BatchGetItem, 1 TransactWriteItems)."""
    ms = {k: float(v) / 1e3 for k, v in (kv.split("=") for kv in spec.split(","))}
    ops = {"BatchGetItem": 2.0, "TransactWriteItems": 1.0}
    return {"sweep": {"month_boundary": ms["sweep"], "periodic_check": ms["sweep"]},
            "sweep_ops": {"month_boundary": ops, "periodic_check": ops},
            "Query": ms["query"], "SendMessageBatch": ms["sqs"], "due_found": 0}


def work_timeout() -> int:
    """WorkFunction's Timeout in template.yaml (s)."""
    from localsam.template import load_template

    return int(load_template()["Resources"]["WorkFunction"]["Properties"]["Timeout"])


def section_three(endpoint: str, stack: Any, args: argparse.Namespace) -> dict[str, Any]:
    times = assumed_times(args.assume) if args.assume else measure_call_times(endpoint, stack, args.samples)
    from billing.services.sweeps import PAGE

    source = "assumed (--assume)" if args.assume else "measured locally"
    print(f"\n(3) the month job and the forecast check through the work queue (fan-out simulated, per-call "
          f"times {source}; shard pages of {PAGE} accounts)")
    sweep_ms = {k: f"{v * 1e3:.1f} ms" for k, v in times["sweep"].items()}
    print(f"    {source}: an account sweep (settle_account) at the month boundary {sweep_ms['month_boundary']} "
          f"{times['sweep_ops']['month_boundary']}, at a check {sweep_ms['periodic_check']} "
          f"{times['sweep_ops']['periodic_check']} (DynamoDB Local); an index page "
          f"{times['Query'] * 1e3:.1f} ms (DynamoDB Local); a SendMessageBatch of 10 "
          f"{times['SendMessageBatch'] * 1e3:.1f} ms (moto)")
    out: dict[str, Any] = {"times": times, "month_boundary": [], "periodic_check": []}
    for sweep in ("month_boundary", "periodic_check"):
        label = "month boundary (every account with containers)" if sweep == "month_boundary" else \
            f"forecast check ({args.due:.0%} of the accounts due)"
        print(f"    {label}")
        print(f"      {'accounts':>10} {'swept':>9} {'invocations':>12} {'max calls/inv':>14} {'max est. s/inv':>15} "
              f"{'requests/account':>17} {'reads':>10} {'reads/account':>14}")
        for n in args.accounts:
            start = time.perf_counter()
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # sweep_page's EMF metrics
                r = simulate(sweep, n, args.due, times)
            most_calls = sum(v for k, v in r["most"].calls.items() if k != "AccountSweep")
            print(f"      {n:>10,} {r['sweeps']:>9,} {r['invocations']:>12,} {most_calls:>14.0f} "
                  f"{r['worst'].estimate:>15.2f} {r['per_account']:>17.3f} {r['reads']:>10,.0f} "
                  f"{r['reads'] / n:>14.4f}   (simulated in {time.perf_counter() - start:.0f} s)")
            out[sweep].append(r)
        worst = out[sweep][-1]["worst"]
        print(f"      slowest invocation at {args.accounts[-1]:,}: {worst.kind}, calls {dict(worst.calls)}, "
              f"CPU {worst.cpu * 1e3:.0f} ms")
        timeout = work_timeout()
        print(f"      its estimate {worst.estimate:.2f} s = {worst.estimate / timeout:.1%} of WorkFunction's "
              f"{timeout} s timeout ({'under' if worst.estimate < timeout / 2 else 'NOT under'} half); assumed: "
              "its calls one after another at the per-call times above, plus its CPU time here")
    n = args.accounts[-1]
    print(f"    previous design (issue 10): the month job queued every account from one invocation: {n // 10:,} "
          f"SendMessageBatch calls, about {n // 10 * times['SendMessageBatch']:.0f} s at the time measured here "
          f"(timeout 300 s, no checkpoint); the 5-minute check swept every active account ({n:,} account sweeps "
          "each time).")
    return out


# ---------------------------------------------------------------------------------------------- 4. the ledger CSV


def section_four(ledger: Any, accounts: dict[str, int]) -> dict[str, Any]:
    from billing.store.cursors import CursorCodec

    assert RECORDER is not None
    codec = CursorCodec("bench-cursor-secret-0123456789")
    at = datetime(2026, 3, 10, 10, 30, tzinfo=UTC)
    api = handler("usage_api", ledger=ledger, cursor_codec=codec, clock=lambda: at)
    print("\n(4) GET /v1/ledger?format=csv: one response (first page)")
    print(f"    {'account (entries)':<30}{'query':<22}{'rows':>8}{'body KB':>10}{'peak MB':>9}{'requests':>9}"
          f"{'RCU':>8}  next cursor")
    out = {}
    for account, entries in accounts.items():
        for query in ({"format": "csv"}, {"format": "csv", "limit": "100"}):
            event = api_event("/v1/ledger", account, query)
            api.lambda_handler(event, Context())  # warm
            tracemalloc.start()
            response = api.lambda_handler(event, Context())
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            with RECORDER.record() as calls:
                api.lambda_handler(event, Context())
            body = response["body"]
            rows = body.count("\r\n") - 1
            headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
            shown = "&".join(f"{k}={v}" for k, v in query.items())
            rcu = sum(c.capacity[0] for c in dynamo(calls))
            print(f"    {account + f' ({entries:,})':<30}{shown:<22}{rows:>8,}{len(body.encode()) / KB:>10.0f}"
                  f"{peak / 2**20:>9.1f}{len(dynamo(calls)):>9}{rcu:>8.1f}  {'x-next-cursor' in headers}")
            out[f"{account} {shown}"] = {"rows": rows, "bytes": len(body.encode()), "peak": peak,
                                         "requests": len(dynamo(calls)), "rcu": rcu}
    from billing.api.reports import CSV_MAX_ROWS

    print(f"    rows per response without ?limit: billing.api.reports.CSV_MAX_ROWS = {CSV_MAX_ROWS:,} (the API's "
          "limit parameter accepts 1-100)")
    return out


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    global RECORDER
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--accounts", default="1000,10000,100000,1000000")
    parser.add_argument("--due", type=float, default=0.01, help="share of the accounts due for a check")
    parser.add_argument("--samples", type=int, default=20, help="real account sweeps timed per kind")
    parser.add_argument("--sections", default="1,2,3,4")
    parser.add_argument("--assume", metavar="query=MS,sqs=MS,sweep=MS",
                        help="(3): these per-call times instead of measuring them (e.g. on a busy machine)")
    parser.add_argument("--old", action="store_true", help=f"also measure (1) on the design of {OLD_COMMIT}")
    parser.add_argument("--old-containers", default="1,159,1000,10000")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"), help="a running DynamoDB Local")
    parser.add_argument("--short", action="store_true",
                        help="a smoke run (CI): 20 containers, 200 entries, a burst of 4, 1,000 accounts, 1 sample")
    args = parser.parse_args(argv)
    if args.short:
        args.containers, args.entries, args.burst, args.accounts, args.samples = 20, 200, 4, "1000", 1
    args.accounts = [int(x) for x in args.accounts.split(",")]
    sections = {int(x) for x in args.sections.split(",")}

    from localsam.runner import StackRunner

    started = time.perf_counter()
    print(f"scale_bench: python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with local.dynamodb_local(args.endpoint) as endpoint:
        RECORDER = Recorder()
        # The local stack's sections first: DynamoDB Local keeps every table's stream records in one
        # store, and after (1) has written its 110,000 items, reading the stack's stream slows down.
        if 2 in sections or 3 in sections:
            with StackRunner(dynamodb_endpoint=endpoint) as stack:
                if 2 in sections:
                    section_two(stack, args)
                if 3 in sections:
                    section_three(endpoint, stack, args)
        one: dict[str, Any] | None = None
        if 1 in sections or 4 in sections:
            one = section_one(endpoint, args)
        if args.old:
            section_old(endpoint, args, one)
        if 4 in sections and one is not None:
            section_four(one["ledger"], {"acct-1": one["one container"]["entries"],
                                         f"acct-{args.containers}": args.entries})
    print(f"\nscale_bench done in {time.perf_counter() - started:.0f} s")
    return 0


def section_old(endpoint: str, args: argparse.Namespace, new: dict[str, Any] | None) -> None:
    """(1) on the one-item design: its layer and tools exported from git to a temporary directory and
    run in a subprocess, on the same DynamoDB Local (a table made from its own template)."""
    print(f"\n(1, previous design) one Container Stopped settlement on the one-item design of {OLD_COMMIT} "
          "(its code, run from a git archive)")
    with tempfile.TemporaryDirectory(prefix="billing-old-") as old:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT, "layers", "tools", "template.yaml",
                                  "functions"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([f"{old}/layers/billing", f"{old}/tools", str(ROOT)])}
        done = subprocess.run([sys.executable, "-c", "import bench.scale_bench as b, sys; b.old_worker(*sys.argv[1:])",
                               endpoint, args.old_containers, old], env=env, capture_output=True, text=True,
                              cwd=tempfile.gettempdir())
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        print("    " + done.stderr.strip().splitlines()[-1])
    print(f"    {'containers':>10} {'requests':>9} {'items':>6} {'STATE bytes':>12} {'largest item':>13} "
          f"{'WCU (computed)':>15} {'WCU (Local)':>12} {'balance read RCU':>17}")
    for r in rows:
        if os.environ.get("BENCH_DEBUG"):
            print("   ", r)
        if "error" in r:
            print(f"    {r['containers']:>10,} fails: {r['error']}")
            continue
        print(f"    {r['containers']:>10,} {r['requests']:>9} {r['items']:>6} {r['state_bytes']:>12,} "
              f"{r['largest']:>13,} {r['wcu_computed']:>15} {r['wcu_local']:>12.0f} {r['balance_rcu']:>17.0f}")
    if new:
        small, big = new["one container"], new["large"]
        print(f"    this design, for comparison: 1 container {small['wcu_computed']} WCU, {big['containers']:,} "
              f"containers {big['wcu_computed']} WCU; balance read {small['balance']['rcu']:g} / "
              f"{big['balance']['rcu']:g} RCU")


def old_worker(endpoint: str, containers: str, old_root: str) -> None:
    """Runs in a subprocess with the one-item design's layer first on the path (see section_old)."""
    import billing

    assert billing.__file__.startswith(old_root), billing.__file__
    from billing.domain.events import parse_platform_event
    from billing.domain.model import clone, to_json
    from billing.services.settlement import settle_platform_event
    from billing.store import keys
    from billing.store.ledger import Ledger
    from localsam.template import create_table, load_template

    global RECORDER
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    RECORDER = Recorder()
    table = f"bench-old-{uuid.uuid4().hex[:8]}"
    create_table(boto3.client("dynamodb", endpoint_url=endpoint), table, load_template(), stream=False)
    ledger = Ledger(table_name=table, sleep=lambda _: None)

    def send(raw: dict[str, Any]) -> None:
        event = parse_platform_event(raw)
        settle_platform_event(event, ledger, event.detail.occurred_at)

    for n in (int(x) for x in containers.split(",")):
        account = f"old-{n}"
        try:
            send(ev(account, "Account Created", OPEN, f"{account}-open", email="o@example.com", plan="membership"))
            first = ["c00000"] if n == 1 else ["tmpl-run", "tmpl-idle"]
            for cid in first:
                send(ev(account, "Container Created", T_START, f"{account}-{cid}-c", container_id=cid, storage_gb=20))
            send(ev(account, "Container Started", T_START, f"{account}-{first[0]}-s", container_id=first[0],
                    run_id=f"r-{first[0]}", tier="small", code_supporter=True))
            measured = "c00000"
            if n > 1:
                state = ledger.load(account)
                run, idle = state.containers.pop("tmpl-run"), state.containers.pop("tmpl-idle")
                for k in range(n):
                    cid = f"c{k:05d}"
                    c = clone(run if k % 2 == 0 else idle)
                    c.container_id = cid
                    if c.runs:
                        r = c.runs.pop("r-tmpl-run")
                        r.run_id = f"r-{cid}"
                        c.runs[r.run_id] = r
                    state.containers[cid] = c
                version = state.version
                state.version += 1
                m = ledger.models
                m.State(keys.account_pk(account), keys.STATE, body=to_json(state), version=state.version,
                        as_of=state.as_of.strftime("%Y-%m-%dT%H:%M:%SZ"), active_shard=keys.active_shard(account),
                        ).save(condition=m.State.version == version)
            raw = ev(account, "Container Stopped", T_STOP, f"{account}-stop", container_id=measured,
                     run_id=f"r-{measured}", traffic_bytes=2 * GIB)
            with RECORDER.record(images=True) as calls:
                send(raw)
            tx = next(c for c in calls if c.op == "TransactWriteItems")
            sizes = [max(b, a) for b, a in zip(tx.before, tx.after, strict=True)]
            with RECORDER.record() as reads:
                ledger.load(account)
            body = ledger.models.State.get(keys.account_pk(account), keys.STATE).body
            print(json.dumps({
                "containers": n, "requests": len(dynamo(calls)), "items": sum(c.items_written for c in dynamo(calls)),
                "state_bytes": len(body.encode()), "largest": max(sizes),
                "wcu_computed": sum(wcu(s, True) for s in sizes),
                "wcu_local": sum(c.capacity[0] for c in dynamo(calls) if c.op in WRITE_OPS),
                "balance_rcu": sum(c.capacity[0] for c in dynamo(reads)),
                "sizes": sizes, "consumed": [c.response.get("ConsumedCapacity") for c in dynamo(calls)
                                             if c.response],
            }), flush=True)
        except Exception as exc:  # the one-item design fails past DynamoDB's 400 KB item limit
            reason = getattr(exc, "cause_response_message", None) or str(exc)
            print(json.dumps({"containers": n, "error": f"{type(exc).__name__}: {reason[:160]}"}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
