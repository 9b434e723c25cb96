"""Benchmark: GET /v1/usage costs the same whatever the size of an account's history.

Starts DynamoDB Local, creates the table from template.yaml, writes one account with 10 ledger entries
and one with 10,000 (directly through the ledger's models, with the month aggregate item the
settlements would have left), then calls the usage handler for each and prints the number of
DynamoDB requests per call (botocore ``before-call.dynamodb.*`` hooks on the models' clients) and
the median time, and the ratio of the medians (target: same request count, ratio <= 1.3).

    /tmp/venv/bin/python bench/report_bench.py [--calls 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "CreditBillingBench")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

import boto3  # noqa: E402

warnings.filterwarnings("ignore", message="No application metrics to publish")
from billing import engine  # noqa: E402
from billing.api.reports import UsageReports  # noqa: E402
from billing.domain.catalog import load_catalog  # noqa: E402
from billing.domain.model import ChargeLine, LedgerEntry, LotAmount, to_json  # noqa: E402
from billing.store.cursors import CursorCodec  # noqa: E402
from billing.store.ledger import Ledger, account_pk, day_attr, ledger_sk  # noqa: E402
from localsam.dynamodb_local import DynamoDBLocal  # noqa: E402
from localsam.runtime import function_module  # noqa: E402
from localsam.template import create_table, load_template  # noqa: E402

MONTH_START = datetime(2026, 3, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 28, 12, tzinfo=UTC)


def load_usage_handler() -> ModuleType:
    return function_module("usage_api")


def http_event(sub: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "GET /v1/usage",
        "rawPath": "/v1/usage",
        "rawQueryString": "month=2026-03",
        "queryStringParameters": {"month": "2026-03"},
        "headers": {"host": "bench"},
        "requestContext": {
            "http": {"method": "GET", "path": "/v1/usage", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "bench"},
            "authorizer": {"jwt": {"claims": {"sub": sub}, "scopes": []}},
            "requestId": "bench", "routeKey": "GET /v1/usage", "stage": "$default",
        },
        "isBase64Encoded": False,
    }


class Context:
    function_name = "usage-api"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:usage-api"
    aws_request_id = "bench"


def seed(ledger: Ledger, account_id: str, entries: int) -> None:
    """An account (through the engine) and ``entries`` deductions written directly, with their aggregate."""
    book = engine.open_account(account_id, f"{account_id}@example.com", "membership", MONTH_START,
                               ledger.catalog, f"{account_id}-open")
    ledger.apply(account_id, f"{account_id}-open", lambda _state: book)
    m = ledger.models
    pk = account_pk(account_id)
    totals: dict[str, int] = {}
    step = (NOW - MONTH_START) / max(entries, 1)
    with m.Entry.batch_write() as batch:
        for i in range(entries):
            at = (MONTH_START + step * i).replace(microsecond=0)
            amount = 1_000 + i % 997
            entry = LedgerEntry(
                entry_id=f"bench-{i:06d}:001", type="deduction", amount=amount, at=at, reason="container_stopped",
                event_id=f"bench-{i:06d}",
                lines=[ChargeLine(resource="container", item="small", amount=amount, month="2026-03",
                                  container_id="c1", run_id=f"r{i}", tier="small", seconds=1,
                                  code_supporter=False, start=at - timedelta(seconds=1), end=at)],
                paid_by=[LotAmount(lot_id="monthly-2026-03", amount=amount)],
            )
            batch.save(m.Entry(pk, ledger_sk(entry), body=to_json(entry),
                               entry_type="deduction"))
            for name in ("total", "r_container", day_attr(at.day, "container")):
                totals[name] = totals.get(name, 0) + amount
    m.Usage(pk, "USAGE#2026-03", **totals).save()


def measure(
    handler: ModuleType, subs: tuple[str, ...], calls: int, counted: list[str]
) -> dict[str, tuple[int, float]]:
    """Interleaved calls (so JVM warm-up and machine noise hit every account alike): request count and
    median seconds per account."""
    for sub in subs:
        for _ in range(5):  # warm both accounts and DynamoDB Local's JIT
            handler.lambda_handler(http_event(sub), Context())
    counts: dict[str, list[int]] = {sub: [] for sub in subs}
    times: dict[str, list[float]] = {sub: [] for sub in subs}
    for _ in range(calls):
        for sub in subs:
            counted.clear()
            start = time.perf_counter()
            response = handler.lambda_handler(http_event(sub), Context())
            times[sub].append(time.perf_counter() - start)
            assert response["statusCode"] == 200, response
            counts[sub].append(len(counted))
    for sub in subs:
        assert len(set(counts[sub])) == 1, counts[sub]
    return {sub: (counts[sub][0], statistics.median(times[sub])) for sub in subs}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--large", type=int, default=10_000)
    args = parser.parse_args()
    with DynamoDBLocal() as ddb:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = ddb.endpoint_url
        table = "billing-bench"
        create_table(boto3.client("dynamodb", endpoint_url=ddb.endpoint_url), table, load_template())
        os.environ["TABLE_NAME"] = table
        ledger = Ledger(table_name=table, catalog=load_catalog())
        t0 = time.perf_counter()
        seed(ledger, "acct-small", 10)
        seed(ledger, "acct-large", args.large)
        print(f"seeded 10 and {args.large} ledger entries in {time.perf_counter() - t0:.1f} s")

        counted: list[str] = []
        seen: set[int] = set()
        for model in (ledger.models.State, ledger.models.Entry, ledger.models.Usage, ledger.models.EventRecord):
            client = model._get_connection().connection.client
            if id(client) not in seen:
                seen.add(id(client))
                client.meta.events.register(
                    "before-call.dynamodb.*", lambda model=None, **_: counted.append(model.name)
                )

        handler = load_usage_handler()
        handler.configure(UsageReports(ledger, CursorCodec("bench"), clock=lambda: NOW))
        results = measure(handler, ("acct-small", "acct-large"), args.calls, counted)
        (small_n, small_t), (large_n, large_t) = results["acct-small"], results["acct-large"]
        ratio = large_t / small_t
        print(f"GET /v1/usage, account with 10 entries: {small_n} DynamoDB requests, "
              f"median {small_t * 1000:.2f} ms")
        print(f"GET /v1/usage, account with {args.large} entries: {large_n} DynamoDB requests, "
              f"median {large_t * 1000:.2f} ms")
        print(f"time ratio large/small: {ratio:.2f} (target <= 1.3); same request count: {small_n == large_n}")
        return 0 if small_n == large_n and ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
