"""Benchmark of the container-stop settlement against DynamoDB Local.

For ``--runs`` accounts (prepared beforehand through the real ``lambda_handler``: Account Created,
Container Created, Container Started), each ``Container Stopped`` is settled and measured:

(a) DynamoDB requests per settlement, per operation (botocore ``before-call.dynamodb.*`` handlers on
    every client PynamoDB uses, cross-checked by a counter on ``BaseClient._make_api_call``);
(b) items written per settlement (TransactItems of TransactWriteItems + any other write request);
(c) handler time / time of the same DynamoDB requests (the captured GetItem + TransactWriteItems,
    replayed on a fresh copy of the account with a plain boto3 client), interleaved with the
    handler runs;
(d) the import time of each handler module / that of ``import boto3``, in fresh processes, as
    Lambda loads them with tracing on (``bench.import_bench``, which also explains where it goes).

Prints figures only (no assertions on time). Run: ``python -m bench.settlement_bench [--runs N]``.
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
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
os.environ["AWS_ACCESS_KEY_ID"] = "local"
os.environ["AWS_SECRET_ACCESS_KEY"] = "local"
os.environ.pop("AWS_SESSION_TOKEN", None)
os.environ.pop("AWS_PROFILE", None)
os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "credit-billing")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "CreditBilling")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "INFO")

import boto3  # noqa: E402
import botocore.client  # noqa: E402

from bench import import_bench  # noqa: E402
from localsam.runtime import function_module  # noqa: E402

WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
GIB = 2**30


class FakeContext:
    """The attributes Powertools' Logger reads from a Lambda context."""

    function_name = "ContainerSettlementFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ContainerSettlementFunction"
    log_group_name = "/aws/lambda/ContainerSettlementFunction"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def load_handler(function: str) -> ModuleType:
    return function_module(function)


class Recorder:
    """Counts DynamoDB requests (per operation) and keeps their params while recording."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: list[tuple[str, Any]] = []
        self.raw_calls = 0  # BaseClient._make_api_call cross-check (every client, every service)
        self._clients: set[int] = set()

    def attach(self, client: Any) -> None:
        if id(client) in self._clients:
            return
        self._clients.add(id(client))
        client.meta.events.register("before-call.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def _before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        body = params.get("body", b"{}")  # the serialized request (JSON protocol)
        self.calls.append((model.name, json.loads(body or b"{}")))

    def _after(self, model: Any, parsed: Any, **_: Any) -> None:
        self.responses.append((model.name, parsed))

    def reset(self) -> None:
        self.calls.clear()
        self.responses.clear()
        self.raw_calls = 0

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


def install_raw_counter(recorder: Recorder) -> None:
    base: Any = botocore.client.BaseClient
    original = base._make_api_call

    def counting(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        if self.meta.service_model.service_name == "dynamodb":
            recorder.raw_calls += 1
        return original(self, operation_name, api_params)

    base._make_api_call = counting


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    args = parser.parse_args()

    from localsam.dynamodb_local import DynamoDBLocal
    from localsam.template import create_table, load_template

    with contextlib.ExitStack() as stack:
        endpoint = args.endpoint or stack.enter_context(DynamoDBLocal()).endpoint_url
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        table = f"billing-bench-{uuid.uuid4().hex[:8]}"
        plain = boto3.client("dynamodb", endpoint_url=endpoint)
        create_table(plain, table, load_template())
        os.environ["TABLE_NAME"] = table
        run(args, table, plain)
    if args.import_repeat > 0:
        print("(d) import time of each handler module / import boto3, fresh processes (target <= 1.5)")
        import_bench.PYTHON = args.import_python
        _, _, http = import_bench.template_env()
        import_bench.report(import_bench.measure(["lambda"], args.import_repeat), ["lambda"], http)
    return 0


def run(args: argparse.Namespace, table: str, plain: Any) -> None:
    from billing.adapters import EventPublisher
    from billing.observability import logger
    from billing.store.ledger import Ledger
    from billing.store.tables import table_models

    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the run
    for h in logger.handlers:  # keep the formatting cost, drop the output
        if hasattr(h, "stream"):
            h.stream = devnull

    published: list[Any] = []

    class NullPublisher(EventPublisher):
        def __init__(self) -> None:
            super().__init__("default", client=object())

        def publish(self, events: Any) -> None:
            published.extend(events)

    # lambda_handler builds its own EventPublisher: its publish goes nowhere during the bench.
    setattr(EventPublisher, "publish", NullPublisher.publish)  # noqa: B010

    app = load_handler("container_settlement")
    ledger = Ledger(table_name=table)
    publisher = NullPublisher()
    recorder = Recorder()
    install_raw_counter(recorder)
    models = table_models(table)
    recorder.attach(models.connection.client)
    for model in (models.State, models.EventRecord, models.Entry, models.Usage, models.Item):
        recorder.attach(model._get_connection().connection.client)

    def event(account: str, detail_type: str, at: str, eid: str, **fields: Any) -> dict[str, Any]:
        source = "platform.accounts" if detail_type == "Account Created" else "platform.containers"
        detail = {"event_id": eid, "account_id": account, "occurred_at": at, **fields}
        return {"version": "0", "id": eid, "source": source, "detail-type": detail_type, "detail": detail}

    def invoke(ev: dict[str, Any]) -> dict[str, Any]:
        with contextlib.redirect_stdout(devnull):
            return dict(app.lambda_handler(ev, FakeContext()))

    total = args.warmup + args.runs + args.lambda_runs
    accounts = [f"bench-{i:05d}" for i in range(total)]
    t0 = time.perf_counter()
    for acct in accounts:
        invoke(event(acct, "Account Created", "2026-03-01T08:00:00Z", f"{acct}-a",
                     email=f"{acct}@example.com", plan="free"))
        invoke(event(acct, "Container Created", "2026-03-01T09:00:00Z", f"{acct}-c",
                     container_id="c1", storage_gb=10))
        invoke(event(acct, "Container Started", "2026-03-10T12:00:00Z", f"{acct}-s",
                     container_id="c1", run_id="r1", tier="small", code_supporter=True))
    print(f"prepared {total} accounts (3 events each via lambda_handler) in {time.perf_counter() - t0:.1f} s")

    def stop_event(acct: str) -> dict[str, Any]:
        return event(acct, "Container Stopped", "2026-03-10T14:30:00Z", f"{acct}-x",
                     container_id="c1", run_id="r1", traffic_bytes=int(args.traffic_gib * GIB))

    def settle(acct: str, via_lambda: bool = False) -> tuple[float, list[tuple[str, dict[str, Any]]], Any]:
        recorder.reset()
        ev = stop_event(acct)
        with contextlib.redirect_stdout(devnull):
            start = time.perf_counter()
            out = app.lambda_handler(ev, FakeContext()) if via_lambda else app.handle(ev, ledger, publisher)
            elapsed = time.perf_counter() - start
        assert not out["duplicate"], out
        state_item = next((p.get("Item") for n, p in recorder.responses if n == "GetItem"), None)
        return elapsed, list(recorder.calls), (state_item, recorder.ops(), recorder.items_written(),
                                                recorder.raw_calls)

    replay_ids = iter(range(10**9))

    def direct(calls: list[tuple[str, dict[str, Any]]], state_item: dict[str, Any], old_pk: str) -> float:
        """The settlement's GetItem + TransactWriteItems on a fresh copy of the account (plain client)."""
        new_pk = f"ACCOUNT#replay-{next(replay_ids):06d}"
        plain.put_item(TableName=table, Item=replace_pk(state_item, old_pk, new_pk))  # untimed setup
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
    raw_n: list[int] = []
    items_n: list[int] = []
    for i, acct in enumerate(accounts[args.warmup : args.warmup + args.runs]):
        if i % 2:  # direct first, replaying the latest captured settlement
            d = direct(*last)
            h, calls, info = settle(acct)
        else:
            h, calls, info = settle(acct)
            d = direct(calls, info[0], f"ACCOUNT#{acct}")
        last = (calls, info[0], f"ACCOUNT#{acct}")
        _, ops, items, raw = info
        handler_t.append(h)
        direct_t.append(d)
        ratios.append(h / d)
        op_counts.append(ops)
        requests_n.append(sum(ops.values()))
        raw_n.append(raw)
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
    print("(a) DynamoDB requests per settlement (target <= 2)")
    print(f"    median {statistics.median(requests_n):g}  max {max(requests_n)}  "
          f"(BaseClient._make_api_call cross-check: median {statistics.median(raw_n):g}, max {max(raw_n)})")
    for name, count in sorted(all_ops.items()):
        print(f"    {name:<20} {count / n:.2f} per settlement")
    print("(b) items written per settlement (target <= 5)")
    print(f"    median {statistics.median(items_n):g}  min {min(items_n)}  max {max(items_n)}")
    tx = next((p for name, p in last[0] if name == "TransactWriteItems"), None)
    if tx:
        kinds = []
        for t in tx["TransactItems"]:
            (op, body), = t.items()
            sk = (body.get("Item") or body.get("Key") or {}).get("sk", {}).get("S", "?")
            kinds.append(f"{op} {sk.split('#')[0]}{'#...' if '#' in sk else ''}")
        print(f"    last TransactItems: {', '.join(kinds)}")
    print("(c) handle() time / direct GetItem + TransactWriteItems time (target <= 1.5)")
    for label, values in (("handle()", handler_t), ("direct", direct_t)):
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
        print(f"lambda_handler (own Ledger + EventPublisher, Logger/Metrics decorators, tracing disabled), "
              f"{len(lambda_t)} stops:")
        print(f"    requests {dict(sorted((k, v / len(lambda_t)) for k, v in lam_ops.items()))}  "
              f"items written {sorted(set(lambda_items))}  -> counts match handle(): {same}")
        print(f"    lambda_handler median {statistics.median(lambda_t) * ms:7.2f} ms   "
              f"p90 {pctl(lambda_t, .9) * ms:7.2f} ms   direct median "
              f"{statistics.median(lambda_direct_t) * ms:.2f} ms   ratio of medians "
              f"{statistics.median(lambda_t) / statistics.median(lambda_direct_t):.2f}")
    print(f"outbound events published (to a null publisher) during the measured stops: {len(published)}")


if __name__ == "__main__":
    sys.exit(main())
