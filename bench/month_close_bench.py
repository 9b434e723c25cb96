"""The month close for real through the local runner: every WorkFunction invocation timed (issue 19).

For each ``--accounts`` N, a fresh table of the local stack (``localsam.runner.StackRunner``:
DynamoDB Local, moto's SQS) holds N accounts with a running container: one made through the bus
(Account Created, Container Created, Container Started on March 31st), the others its clones (its
balance and container items, the account id replaced, the index shards recomputed), written with
BatchWriteItem. Then MonthlyBillingFunction's ``MonthBoundary`` schedule fires for April 1st 00:00 UTC
and the queues are drained: WorkFunction's shard pages and account sweeps, as the event source
mapping hands them over (batches of 10). Every invocation is timed and its AWS requests counted;
printed per kind (a batch of pages, of account sweeps, or both): invocations, slowest, p99, most
requests. Then it checks that every account was rolled into April (``queries.accounts_behind``) and
the dead-letter queues are empty.

The local runner invokes one function at a time, in this process: times are those of moto and
DynamoDB Local on this machine, upper bounds for AWS (see bench/README.md).

    python -m bench.month_close_bench [--accounts 1000,10000] [--endpoint URL] [--short]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from bench import local

local.environment()

import warnings  # noqa: E402

import botocore.client  # noqa: E402

warnings.filterwarnings("ignore", message="No application metrics to publish")

SETUP_AT = datetime(2026, 3, 31, 20, tzinfo=UTC)
BOUNDARY = datetime(2026, 4, 1, tzinfo=UTC)
TIMEOUT_S = 60  # WorkFunction's Timeout in template.yaml
TEMPLATE_ACCOUNT = "mc-template"


class Requests:
    """AWS requests of the process (every client): how many and their time, per service."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self._lock = threading.Lock()
        base: Any = botocore.client.BaseClient
        original = base._make_api_call
        requests = self

        def wrapped(client: Any, op: str, params: dict[str, Any]) -> Any:
            start = time.perf_counter()
            try:
                return original(client, op, params)
            finally:
                service = client.meta.service_model.service_name
                with requests._lock:
                    requests.counts[service] += 1
                    requests.seconds[service] += time.perf_counter() - start

        base._make_api_call = wrapped


def ev(account: str, detail_type: str, event_id: str, **fields: Any) -> tuple[str, str, dict[str, Any]]:
    source = "platform.accounts" if detail_type == "Account Created" else "platform.containers"
    return source, detail_type, {"event_id": event_id, "account_id": account,
                                 "occurred_at": SETUP_AT.strftime("%Y-%m-%dT%H:%M:%SZ"), **fields}


def renamed(value: Any, old: str, new: str) -> Any:
    """A DynamoDB item (or value) with the account id ``old`` replaced by ``new`` in every string."""
    if isinstance(value, dict):
        if set(value) == {"S"}:
            return {"S": value["S"].replace(old, new)}
        return {k: renamed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v, old, new) for v in value]
    return value


def build_accounts(stack: Any, n: int) -> list[str]:
    """One account through the bus, ``n - 1`` clones of its balance and container items."""
    from billing.store import keys

    for source, detail_type, detail in (
        ev(TEMPLATE_ACCOUNT, "Account Created", "t-open", email="m@example.com", plan="free"),
        ev(TEMPLATE_ACCOUNT, "Container Created", "t-c", container_id="c1", storage_gb=8),
        ev(TEMPLATE_ACCOUNT, "Container Started", "t-s", container_id="c1", run_id="r1", tier="small",
           code_supporter=True),
    ):
        assert stack.put_event(source, detail_type, detail).ok
    stack.drain()
    client = stack.client("dynamodb")
    pk = keys.account_pk(TEMPLATE_ACCOUNT)
    items = client.query(TableName=stack.table_name, KeyConditionExpression="pk = :pk",
                         ExpressionAttributeValues={":pk": {"S": pk}})["Items"]
    template = [i for i in items if i["sk"]["S"] in (keys.STATE, keys.container_sk("c1"))]
    assert len(template) == 2, [i["sk"] for i in items]
    accounts = [f"mc-{k:07d}" for k in range(n - 1)]
    clones = []
    for account in accounts:
        for item in template:
            clone = renamed(item, TEMPLATE_ACCOUNT, account)
            if "active_shard" in clone:
                clone["active_shard"] = {"S": keys.active_shard(account)}
            if "due_shard" in clone:
                clone["due_shard"] = {"S": keys.due_shard(account)}
            clones.append(clone)

    def write(chunk: list[dict[str, Any]]) -> None:
        pending = {stack.table_name: [{"PutRequest": {"Item": item}} for item in chunk]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(write, [clones[i:i + 25] for i in range(0, len(clones), 25)]))
    return [TEMPLATE_ACCOUNT, *accounts]


def month_close(stack: Any, n: int, requests: Requests) -> dict[str, Any]:
    from billing.store import queries
    from billing.store.tables import table_models

    started = time.perf_counter()
    accounts = build_accounts(stack, n)
    built = time.perf_counter() - started
    runtime = stack.runtime
    original = runtime.invoke
    timings: list[tuple[str, float, Counter[str], Counter[str]]] = []  # kind, seconds, requests, their seconds

    def timed(logical_id: str, event: Any, env: Any = None) -> Any:
        if logical_id != "WorkFunction":
            return original(logical_id, event, env)
        works = sorted({json.loads(r["body"])["work"] for r in event["Records"]})
        counts, spent = Counter(requests.counts), Counter(requests.seconds)
        start = time.perf_counter()
        try:
            return original(logical_id, event, env)
        finally:
            seconds = time.perf_counter() - start
            timings.append(("+".join(works), seconds, requests.counts - counts, requests.seconds - spent))

    runtime.invoke = timed
    started = time.perf_counter()
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            stack.fire_schedule("MonthlyBillingFunction", "MonthBoundary", at=BOUNDARY)
            while stack.drain_queues(max_rounds=1_000).invocations:
                pass
    finally:
        runtime.invoke = original
    took = time.perf_counter() - started
    models = table_models(stack.table_name)
    behind = [a for k in range(0, len(accounts), 1_000)
              for a in queries.accounts_behind(models, accounts[k:k + 1_000], BOUNDARY)]
    dlq = {q: len(stack.queue_messages(q)) for q in ("WorkDLQ", "AsyncFailuresDLQ")}
    totals = (sum((t[2] for t in timings), Counter()), sum((t[3] for t in timings), Counter()))
    return {"accounts": n, "built": built, "took": took, "timings": timings, "behind": len(behind), "dlq": dlq,
            "totals": totals}


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def report(result: dict[str, Any]) -> None:
    by_kind: dict[str, list[tuple[float, Counter[str], Counter[str]]]] = defaultdict(list)
    for kind, seconds, counts, spent in result["timings"]:
        by_kind[kind].append((seconds, counts, spent))
    n = result["accounts"]
    print(f"\n  {n:,} accounts (built in {result['built']:.0f} s): month close in {result['took']:.0f} s, "
          f"{len(result['timings']):,} WorkFunction invocations; accounts not rolled into April: "
          f"{result['behind']}; dead-letter queues {result['dlq']}")
    print(f"    {'batch of':<22}{'invocations':>12}{'median s':>10}{'p99 s':>8}{'slowest s':>11}{'/ timeout':>10}"
          f"   slowest's requests (their time)")
    for kind, rows in sorted(by_kind.items()):
        seconds = [s for s, _, _ in rows]
        slowest = max(rows, key=lambda r: r[0])
        detail = ", ".join(f"{service} {slowest[1][service]} ({slowest[2][service]:.2f} s)"
                           for service in sorted(slowest[1]))
        print(f"    {kind:<22}{len(rows):>12,}{statistics.median(seconds):>10.3f}{p99(seconds):>8.3f}"
              f"{max(seconds):>11.3f}{max(seconds) / TIMEOUT_S:>10.1%}   {detail}")
    per_call = {service: spent / n for service, n in result["totals"][0].items()
                for spent in [result["totals"][1][service]] if n}
    print("    mean time of a request during the run: " + ", ".join(
        f"{service} {ms * 1e3:.1f} ms" for service, ms in sorted(per_call.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", default="1000,10000")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"), help="a running DynamoDB Local")
    parser.add_argument("--short", action="store_true", help="a smoke run (CI): 30 accounts")
    args = parser.parse_args(argv)
    counts = [30] if args.short else [int(x) for x in args.accounts.split(",")]

    from billing.services.sweeps import PAGE
    from localsam.runner import StackRunner

    print(f"month_close_bench: python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; shard page {PAGE} accounts, WorkFunction batch 10, "
          f"timeout {TIMEOUT_S} s")
    requests = Requests()
    clock = [SETUP_AT]
    with local.dynamodb_local(args.endpoint) as endpoint:
        for n in counts:
            clock[0] = SETUP_AT
            with StackRunner(dynamodb_endpoint=endpoint, clock=lambda: clock[0]) as stack:
                result = month_close(stack, n, requests)
            report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
