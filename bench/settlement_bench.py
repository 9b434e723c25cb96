"""Benchmark of the container-stop settlement against DynamoDB Local.

For ``--runs`` accounts (prepared beforehand through SettlementFunction's ``lambda_handler``:
Account Created, Container Created, Container Started), each ``Container Stopped`` is settled and
measured:

(a) DynamoDB requests per settlement, per operation (every client: a wrapper around
    ``BaseClient._make_api_call``);
(b) items written per settlement (TransactItems of TransactWriteItems + any other write request);
(c) the service's time (``settle_queued``) / time of the same DynamoDB requests (the captured reads
    and TransactWriteItems, replayed on a fresh copy of the account with a plain boto3 client),
    interleaved with the service runs; then the same through ``lambda_handler`` (an SQS record);
(d) the import time of each handler module / that of ``import boto3``, in fresh processes, as
    Lambda loads them with tracing on (``bench.import_bench``, which also explains where it goes).

Prints figures only (no assertions on time). Run: ``python -m bench.settlement_bench [--runs N]``;
``--short`` is the smoke run CI makes (tests/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

from bench import local  # noqa: E402

local.environment(log_level="INFO", metrics=True)

import boto3  # noqa: E402
import botocore.client  # noqa: E402

from bench import import_bench  # noqa: E402
from localsam.runtime import function_module  # noqa: E402

WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
GIB = 2**30


class FakeContext:
    """The attributes Powertools' Logger reads from a Lambda context."""

    function_name = "SettlementFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:SettlementFunction"
    log_group_name = "/aws/lambda/SettlementFunction"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class Recorder:
    """Every DynamoDB request of the process (a wrapper around ``BaseClient._make_api_call``, so any
    client counts): its operation, parameters and answer, while recording."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: list[tuple[str, Any]] = []
        self.recording = False
        base: Any = botocore.client.BaseClient
        original = base._make_api_call
        recorder = self

        def counting(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            response = original(client, operation_name, api_params)
            if recorder.recording and client.meta.service_model.service_name == "dynamodb":
                recorder.calls.append((operation_name, api_params))
                recorder.responses.append((operation_name, response))
            return response

        base._make_api_call = counting

    def reset(self) -> None:
        self.calls.clear()
        self.responses.clear()

    def ops(self) -> Counter[str]:
        return Counter(name for name, _ in self.calls)

    def items_written(self) -> int:
        n = 0
        for name, body in self.calls:
            if name == "TransactWriteItems":
                n += len(body.get("TransactItems", []))
            elif name == "BatchWriteItem":
                n += sum(len(v) for v in body.get("RequestItems", {}).values())
            elif name in WRITE_OPS:
                n += 1
        return n

    def items_read(self) -> list[dict[str, Any]]:
        """The items the recorded reads answered (the settlement's state before it wrote)."""
        out: list[dict[str, Any]] = []
        for name, response in self.responses:
            if name == "GetItem" and response.get("Item"):
                out.append(response["Item"])
            elif name == "BatchGetItem":
                out.extend(i for items in response.get("Responses", {}).values() for i in items)
        return out


def pctl(values: list[float], p: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def replace_pk(obj: Any, old: str, new: str) -> Any:
    """``obj`` with every DynamoDB string value equal to (or prefixed by) ``old`` moved to ``new``."""
    if isinstance(obj, dict):
        if set(obj) == {"S"} and isinstance(obj["S"], str) and obj["S"].startswith(old):
            return {"S": new + obj["S"][len(old):]}
        return {k: replace_pk(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [replace_pk(v, old, new) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="container stops measured (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="settlements before measuring (default 20)")
    parser.add_argument("--traffic-gib", type=float, default=2.0, help="traffic reported by each stop")
    parser.add_argument("--lambda-runs", type=int, default=30,
                        help="extra stops timed through lambda_handler (default 30)")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"),
                        help="an already running DynamoDB Local (default: start one)")
    parser.add_argument("--import-repeat", type=int, default=7,
                        help="rounds of fresh processes for (d) (default 7; 0 skips it)")
    parser.add_argument("--import-python", default=sys.executable,
                        help="interpreter for (d), e.g. a venv made from layers/billing/requirements.txt")
    parser.add_argument("--short", action="store_true",
                        help="a smoke run (CI): 4 stops, 1 warm-up, 1 through lambda_handler, no (d)")
    args = parser.parse_args(argv)
    if args.short:
        args.runs, args.warmup, args.lambda_runs, args.import_repeat = 4, 1, 1, 0

    with local.bench_table(args.endpoint, "billing-bench") as (endpoint, table):
        run(args, table, boto3.client("dynamodb", endpoint_url=endpoint))
    if args.import_repeat > 0:
        print("(d) import time of each handler module / import boto3, fresh processes (target <= 1.5)")
        import_bench.PYTHON = args.import_python
        _, _, http = import_bench.template_env()
        import_bench.report(import_bench.measure(["lambda"], args.import_repeat), ["lambda"], http)
    return 0


STOPPED_AT = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def run(args: argparse.Namespace, table: str, plain: Any) -> None:
    from billing import wiring
    from billing.observability import logger
    from billing.services.intake import settle_queued
    from billing.store.ledger import Ledger

    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run
    for h in logger.handlers:  # keep the formatting cost, drop the output
        if hasattr(h, "stream"):
            h.stream = devnull

    app = function_module("settlement")
    ledger = Ledger(table_name=table)
    # The clock is the stop's: the events are dated in March 2026 (the rules refuse events far from now).
    app.deps.dependency_overrides[wiring.clock] = lambda: (lambda: STOPPED_AT)
    app.deps.dependency_overrides[wiring.ledger] = lambda: ledger
    recorder = Recorder()

    def event(account: str, detail_type: str, at: str, eid: str, **fields: Any) -> str:
        source = "platform.accounts" if detail_type == "Account Created" else "platform.containers"
        detail = {"event_id": eid, "account_id": account, "occurred_at": at, **fields}
        return json.dumps({"version": "0", "id": eid, "source": source, "detail-type": detail_type,
                           "detail": detail})

    def sqs_event(body: str) -> dict[str, Any]:
        """The record SettlementFunction gets from its FIFO queue (AcceptedAt set by the intake)."""
        return {"Records": [{
            "messageId": str(uuid.uuid4()), "receiptHandle": "r", "body": body, "md5OfBody": "",
            "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0", "SenderId": "bench",
                           "ApproximateFirstReceiveTimestamp": "0", "MessageGroupId": "g",
                           "SequenceNumber": "1", "MessageDeduplicationId": "d"},
            "messageAttributes": {"AcceptedAt": {"stringValue": "2026-03-10T14:30:00Z", "dataType": "String"}},
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:settlement.fifo",
            "awsRegion": "us-east-1"}]}

    total = args.warmup + args.runs + args.lambda_runs
    accounts = [f"bench-{i:05d}" for i in range(total)]
    t0 = time.perf_counter()
    for acct in accounts:
        for body in (
            event(acct, "Account Created", "2026-03-01T08:00:00Z", f"{acct}-a", email=f"{acct}@example.com",
                  plan="free"),
            event(acct, "Container Created", "2026-03-01T09:00:00Z", f"{acct}-c", container_id="c1", storage_gb=10),
            event(acct, "Container Started", "2026-03-10T12:00:00Z", f"{acct}-s", container_id="c1", run_id="r1",
                  tier="small", code_supporter=True),
        ):
            with contextlib.redirect_stdout(devnull):
                out = app.lambda_handler(sqs_event(body), FakeContext())
            assert out == {"batchItemFailures": []}, out
    print(f"prepared {total} accounts (3 events each via lambda_handler) in {time.perf_counter() - t0:.1f} s")

    def stop_event(acct: str) -> str:
        return event(acct, "Container Stopped", "2026-03-10T14:30:00Z", f"{acct}-x",
                     container_id="c1", run_id="r1", traffic_bytes=int(args.traffic_gib * GIB))

    def settle(acct: str, via_lambda: bool = False) -> tuple[float, list[tuple[str, dict[str, Any]]], Any]:
        recorder.reset()
        body = stop_event(acct)
        with contextlib.redirect_stdout(devnull):
            recorder.recording = True
            start = time.perf_counter()
            if via_lambda:
                out = app.lambda_handler(sqs_event(body), FakeContext())
                assert out == {"batchItemFailures": []}, out
            else:
                applied = settle_queued(body, ledger, STOPPED_AT)
                assert applied.entries, applied
            elapsed = time.perf_counter() - start
            recorder.recording = False
        return elapsed, list(recorder.calls), (recorder.items_read(), recorder.ops(), recorder.items_written())

    replay_ids = iter(range(10**9))

    def direct(calls: list[tuple[str, dict[str, Any]]], items: list[dict[str, Any]], old_pk: str) -> float:
        """The settlement's reads and its TransactWriteItems on a fresh copy of the account (plain client)."""
        new_pk = f"ACCOUNT#replay-{next(replay_ids):06d}"
        for item in items:  # untimed setup: the items the settlement read, under the new account
            plain.put_item(TableName=table, Item=replace_pk(item, old_pk, new_pk))
        # botocore filled in an idempotency token (ClientRequestToken): let it make a new one.
        requests = [(name, replace_pk({k: v for k, v in params.items() if k != "ClientRequestToken"},
                                      old_pk, new_pk)) for name, params in calls]
        start = time.perf_counter()
        for name, params in requests:
            plain._make_api_call(name, params)
        return time.perf_counter() - start

    # --- warm-up (both paths)
    last: tuple[list[tuple[str, dict[str, Any]]], Any, str] | None = None
    for acct in accounts[: args.warmup]:
        _, calls, info = settle(acct)
        last = (calls, info[0], f"ACCOUNT#{acct}")
        direct(calls, info[0], f"ACCOUNT#{acct}")
    assert last is not None

    # --- measured: handle(event, ledger, publisher) interleaved with the direct replay
    handler_t: list[float] = []
    direct_t: list[float] = []
    ratios: list[float] = []
    op_counts: list[Counter[str]] = []
    requests_n: list[int] = []
    items_n: list[int] = []
    for i, acct in enumerate(accounts[args.warmup : args.warmup + args.runs]):
        if i % 2:  # direct first, replaying the latest captured settlement
            d = direct(*last)
            h, calls, info = settle(acct)
        else:
            h, calls, info = settle(acct)
            d = direct(calls, info[0], f"ACCOUNT#{acct}")
        last = (calls, info[0], f"ACCOUNT#{acct}")
        _, ops, items = info
        handler_t.append(h)
        direct_t.append(d)
        ratios.append(h / d)
        op_counts.append(ops)
        requests_n.append(sum(ops.values()))
        items_n.append(items)

    # --- the real lambda_handler (own Ledger and EventPublisher per invocation)
    lambda_t: list[float] = []
    lambda_direct_t: list[float] = []
    lambda_ops: list[Counter[str]] = []
    lambda_items: list[int] = []
    for i, acct in enumerate(accounts[args.warmup + args.runs :]):
        if i % 2:
            d = direct(*last)
            h, calls, info = settle(acct, via_lambda=True)
        else:
            h, calls, info = settle(acct, via_lambda=True)
            d = direct(calls, info[0], f"ACCOUNT#{acct}")
        last = (calls, info[0], f"ACCOUNT#{acct}")
        lambda_t.append(h)
        lambda_direct_t.append(d)
        lambda_ops.append(info[1])
        lambda_items.append(info[2])

    ms = 1000.0
    n = len(handler_t)
    all_ops: Counter[str] = Counter()
    for c in op_counts:
        all_ops.update(c)
    print()
    print(f"Container Stopped settlements measured: {n} (warm-up {args.warmup}), DynamoDB Local, "
          f"traffic {args.traffic_gib} GiB per stop")
    print("(a) DynamoDB requests per settlement (any client: BaseClient._make_api_call)")
    print(f"    median {statistics.median(requests_n):g}  max {max(requests_n)}")
    for name, count in sorted(all_ops.items()):
        print(f"    {name:<20} {count / n:.2f} per settlement")
    print("(b) items written per settlement")
    print(f"    median {statistics.median(items_n):g}  min {min(items_n)}  max {max(items_n)}")
    tx = next((p for name, p in last[0] if name == "TransactWriteItems"), None)
    if tx:
        kinds = []
        for t in tx["TransactItems"]:
            (op, body), = t.items()
            sk = (body.get("Item") or body.get("Key") or {}).get("sk", {}).get("S", "?")
            kinds.append(f"{op} {sk.split('#')[0]}{'#...' if '#' in sk else ''}")
        print(f"    last TransactItems: {', '.join(kinds)}")
    print("(c) settle_queued() time / the same DynamoDB requests sent directly (target <= 1.5)")
    for label, values in (("service", handler_t), ("direct", direct_t)):
        print(f"    {label:<10} median {statistics.median(values) * ms:7.2f} ms   "
              f"p90 {pctl(values, .9) * ms:7.2f} ms")
    print(f"    ratio of medians {statistics.median(handler_t) / statistics.median(direct_t):.2f}   "
          f"per-pair ratio median {statistics.median(ratios):.2f}  p90 {pctl(ratios, .9):.2f}")
    extra = [h - d for h, d in zip(handler_t, direct_t, strict=True)]
    print(f"    handler time - direct time (per pair): median {statistics.median(extra) * ms:.2f} ms"
          f"  p90 {pctl(extra, .9) * ms:.2f} ms")
    if lambda_t:
        lam_ops: Counter[str] = Counter()
        for c in lambda_ops:
            lam_ops.update(c)
        same = all(c == op_counts[0] for c in lambda_ops) and set(lambda_items) == set(items_n)
        print(f"lambda_handler (an SQS record, Logger/Metrics decorators, tracing disabled), "
              f"{len(lambda_t)} stops:")
        print(f"    requests {dict(sorted((k, v / len(lambda_t)) for k, v in lam_ops.items()))}  "
              f"items written {sorted(set(lambda_items))}  -> counts match settle_queued(): {same}")
        print(f"    lambda_handler median {statistics.median(lambda_t) * ms:7.2f} ms   "
              f"p90 {pctl(lambda_t, .9) * ms:7.2f} ms   direct median "
              f"{statistics.median(lambda_direct_t) * ms:.2f} ms   ratio of medians "
              f"{statistics.median(lambda_t) / statistics.median(lambda_direct_t):.2f}")


if __name__ == "__main__":
    sys.exit(main())
