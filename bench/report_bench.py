"""Benchmark: GET /v1/usage costs the same whatever the size of an account's history.

Starts DynamoDB Local (or uses ``--endpoint``), creates the table from template.yaml, and builds two
accounts through the settlement service itself (so the bench stays true when the stored design
changes): one with 10 AI uses in the month and one with ``--large``, spread over the month's days
and hours. Then calls UsageApiFunction's handler (``GET /v1/usage?month=2026-03``) for each,
interleaved, and prints the DynamoDB requests and read units per call (every client: a wrapper
around ``BaseClient._make_api_call`` that asks for ``ReturnConsumedCapacity``) and the median time,
and the ratio of the medians (target: same requests, ratio <= 1.3).

    python -m bench.report_bench [--calls 50] [--large 2000] [--short]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import local

local.environment()

import botocore.client  # noqa: E402

warnings.filterwarnings("ignore", message="No application metrics to publish")

MONTH_START = datetime(2026, 3, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 28, 12, tzinfo=UTC)


class Reads:
    """DynamoDB requests of the process while counting, with the read units DynamoDB reported."""

    def __init__(self) -> None:
        self.counting = False
        self.requests = 0
        self.units = 0.0
        base: Any = botocore.client.BaseClient
        original = base._make_api_call
        reads = self

        def wrapped(client: Any, op: str, params: dict[str, Any]) -> Any:
            if not reads.counting or client.meta.service_model.service_name != "dynamodb":
                return original(client, op, params)
            response = original(client, op, {**params, "ReturnConsumedCapacity": "TOTAL"})
            consumed = response.get("ConsumedCapacity")
            rows = consumed if isinstance(consumed, list) else [consumed] if consumed else []
            reads.requests += 1
            reads.units += sum(r.get("CapacityUnits", 0) for r in rows)
            return response

        base._make_api_call = wrapped


Context = local.LambdaContext


def http_event(sub: str) -> dict[str, Any]:
    return {
        "version": "2.0", "routeKey": "GET /v1/usage", "rawPath": "/v1/usage", "rawQueryString": "month=2026-03",
        "queryStringParameters": {"month": "2026-03"}, "headers": {"host": "bench"},
        "requestContext": {
            "http": {"method": "GET", "path": "/v1/usage", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "bench"},
            "authorizer": {"jwt": {"claims": {"sub": sub}, "scopes": []}},
            "requestId": "bench", "routeKey": "GET /v1/usage", "stage": "$default",
        },
        "isBase64Encoded": False,
    }


def platform_event(account: str, detail_type: str, at: datetime, event_id: str, **fields: Any) -> Any:
    from billing.domain.events import parse_platform_event
    from billing.services.intake import SOURCES

    source = "platform.accounts" if detail_type == "Account Created" else "platform.ai"
    detail = {"event_id": event_id, "account_id": account, "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
              **fields}
    return parse_platform_event({"version": "0", "id": event_id, "source": source, "detail-type": detail_type,
                                 "detail": detail}, SOURCES)


def seed(ledger: Any, account: str, uses: int) -> None:
    """An account opened on March 1st and ``uses`` AI uses spread evenly until NOW, each settled by the
    settlement service (its ledger entry and its usage aggregates, as in production)."""
    from billing.services.settlement import settle_platform_event

    def settle(event: Any) -> None:
        settle_platform_event(event, ledger, event.detail.occurred_at)

    settle(platform_event(account, "Account Created", MONTH_START, f"{account}-open", email="r@example.com",
                          plan="membership"))
    step = (NOW - MONTH_START - timedelta(hours=1)) / max(uses, 1)
    for i in range(uses):
        at = (MONTH_START + timedelta(minutes=30) + step * i).replace(microsecond=0)
        settle(platform_event(account, "AI Usage Recorded", at, f"{account}-ai-{i:06d}", feature="chat",
                              model="claude-haiku-4.5", input_tokens=1_000 + i % 997, output_tokens=300))


def measure(handler: Any, subs: tuple[str, ...], calls: int, reads: Reads) -> dict[str, tuple[int, float, float]]:
    """Interleaved calls (so JVM warm-up and machine noise hit every account alike): requests, read
    units and median seconds per account."""
    devnull = open(os.devnull, "w")  # noqa: SIM115 - the run's EMF output
    with contextlib.redirect_stdout(devnull):
        for sub in subs:
            for _ in range(3):  # warm both accounts and DynamoDB Local's JIT
                handler.lambda_handler(http_event(sub), Context())
    requests: dict[str, set[int]] = {sub: set() for sub in subs}
    units: dict[str, float] = {}
    times: dict[str, list[float]] = {sub: [] for sub in subs}
    for _ in range(calls):
        for sub in subs:
            reads.requests, reads.units, reads.counting = 0, 0.0, True
            with contextlib.redirect_stdout(devnull):
                start = time.perf_counter()
                response = handler.lambda_handler(http_event(sub), Context())
                times[sub].append(time.perf_counter() - start)
            reads.counting = False
            assert response["statusCode"] == 200, response
            assert json.loads(response["body"]), response
            requests[sub].add(reads.requests)
            units[sub] = reads.units
    return {sub: (max(requests[sub]), units[sub], statistics.median(times[sub])) for sub in subs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--large", type=int, default=2_000, help="AI uses of the large account (default 2,000)")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"), help="a running DynamoDB Local")
    parser.add_argument("--short", action="store_true", help="a smoke run (CI): 40 uses, 3 calls")
    args = parser.parse_args(argv)
    if args.short:
        args.calls, args.large = 3, 40

    from billing import wiring
    from billing.store.cursors import CursorCodec
    from billing.store.ledger import Ledger
    from localsam.runtime import function_module

    with local.bench_table(args.endpoint, "billing-report") as (_, table):
        ledger = Ledger(table_name=table, sleep=lambda _: None)
        t0 = time.perf_counter()
        seed(ledger, "acct-small", 10)
        seed(ledger, "acct-large", args.large)
        print(f"seeded 10 and {args.large:,} AI uses (through the settlement service) in "
              f"{time.perf_counter() - t0:.1f} s")
        reads = Reads()
        handler = function_module("usage_api")
        overrides = {wiring.ledger: ledger, wiring.clock: lambda: NOW,
                     wiring.cursor_codec: CursorCodec("bench-cursor-secret-0123456789")}
        for provider, value in overrides.items():
            handler.deps.dependency_overrides[provider] = lambda value=value: value
        results = measure(handler, ("acct-small", "acct-large"), args.calls, reads)
    (small_n, small_u, small_t), (large_n, large_u, large_t) = results["acct-small"], results["acct-large"]
    ratio = large_t / small_t
    print(f"GET /v1/usage, account with 10 uses: {small_n} DynamoDB requests, {small_u:g} read units, "
          f"median {small_t * 1000:.2f} ms")
    print(f"GET /v1/usage, account with {args.large:,} uses: {large_n} DynamoDB requests, {large_u:g} read units, "
          f"median {large_t * 1000:.2f} ms")
    print(f"time ratio large/small: {ratio:.2f} (target <= 1.3); same request count: {small_n == large_n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
