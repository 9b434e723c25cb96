"""Load test on DynamoDB Local: concurrent workers send a mixed stream for a few hundred accounts
through the template's handlers, then the reconciliation checks every account. Prints figures only
(nothing is asserted).

The stream, per account (times within the last two days, so that the intake's time rules pass):
``Account Created``; two ``Container Created``; container runs (``Container Started`` /
``Container Stopped``, tiers and Code Supporter drawn at random, some with traffic); AI uses; and,
beside them, purchases through the HTTP API with their signed payment-webhook confirmations. Of the
platform events, 10% are sent twice (duplicates), AI uses arrive after later container events (late,
reordered, as a platform's clocks and retries give) and 2% of the accounts also get an AI use dated 31
days back, which the intake refuses (counted apart: on AWS it would land in PlatformEventsDLQ).

Everything goes through the functions' own ``lambda_handler`` with the event its trigger gives, on
the local stack's stand-ins (``localsam.runner.StackRunner``: DynamoDB Local, moto's SQS, EventBridge
and Secrets Manager); each worker thread is its own Lambda execution environment (its own copy of
each handler module, as concurrent Lambda containers have), since the local runner itself invokes
one function at a time:

* ``--workers`` producer threads: ``PlatformEventsFunction`` (the EventBridge envelope; it validates
  and queues each event on the FIFO ``SettlementQueue``, its account as message group);
* ``--workers`` consumer threads: ``SettlementFunction`` on batches received from that queue (moto
  holds back a message group while one of its messages is in flight: each account's events are
  settled in order, up to ``--workers`` accounts at once); a failed record is made visible again and
  retried, as Lambda's event source mapping does;
* ``--workers`` HTTP threads: ``POST /v1/purchases`` (``AccountApiFunction``, the JWT caller, an
  ``Idempotency-Key``) then ``POST /v1/webhooks/payments`` (``PaymentWebhookFunction``, signed with
  the local webhook secret; 20% of notices sent twice), racing the settlements for the same balance
  items (optimistic locking: a lost race is retried).

    python -m bench.load_bench [--accounts 300] [--workers 8] [--seed 7] [--endpoint URL] [--outbox]

Figures: events and requests per second, handler latency (p50, p99) by function, optimistic-lock
retries (attempts beyond the first) and settlement records retried, refusals, errors, and the
reconciliation's accounts checked and differences (the target is zero). ``--outbox`` also drains the
table's stream through ``OutboxDispatcherFunction`` afterwards and times it.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import os
import queue
import random
import statistics
import threading
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")

TIERS = ("micro", "small", "medium", "large")
SOURCES = {"Account Created": "platform.accounts", "AI Usage Recorded": "platform.ai"}
FUNCTIONS = ("PlatformEventsFunction", "SettlementFunction", "AccountApiFunction", "PaymentWebhookFunction")
TOO_LATE = "too-late"  # the event id's suffix of the AI uses dated before the late-event window


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def account_stream(rng: random.Random, account_id: str, start: datetime) -> list[dict[str, Any]]:
    """One account's platform events (the EventBridge envelope's source, detail-type and detail), in
    the order the platform sends them."""
    n = 0

    def event(detail_type: str, at: datetime, **fields: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        detail = {"event_id": f"{account_id}-{n}", "account_id": account_id, "occurred_at": iso(at), **fields}
        return {"source": SOURCES.get(detail_type, "platform.containers"), "detail-type": detail_type,
                "detail": detail}

    plan = rng.choice(("free", "membership"))
    events = [event("Account Created", start, email=f"{account_id}@example.com", plan=plan)]
    late: list[dict[str, Any]] = []
    t = start + timedelta(minutes=1)
    for c in ("c1", "c2"):
        events.append(event("Container Created", t, container_id=c, storage_gb=rng.choice((3, 10, 25)),
                            labels={"team": rng.choice(("core", "ml"))}))
    for run in range(rng.randint(2, 4)):
        container = rng.choice(("c1", "c2"))
        t += timedelta(minutes=rng.randint(5, 90))
        tier = rng.choice(TIERS)
        events.append(event("Container Started", t, container_id=container, run_id=f"r{run}", tier=tier,
                            code_supporter=rng.random() < 0.3))
        for _ in range(rng.randint(0, 2)):  # AI uses during the run, reported late
            late.append(event("AI Usage Recorded", t + timedelta(minutes=rng.randint(1, 20)), feature="chat",
                              model=rng.choice(("claude-haiku-4.5", "gpt-5-mini")),
                              input_tokens=rng.randint(100, 5000), output_tokens=rng.randint(50, 2000),
                              container_id=container))
        t += timedelta(minutes=rng.randint(20, 120))
        events.append(event("Container Stopped", t, container_id=container, run_id=f"r{run}",
                            traffic_bytes=rng.choice((0, 0, 2 * 1024**3))))
        if late and rng.random() < 0.7:
            events.append(late.pop(0))  # after the stop it happened before: a late event
    events += late
    if rng.random() < 0.02:  # older than the late-event window: the intake refuses it
        too_late = event("AI Usage Recorded", start - timedelta(days=31), feature="chat", model="claude-haiku-4.5",
                         input_tokens=100, output_tokens=100)
        too_late["detail"]["event_id"] = f"{account_id}-{TOO_LATE}"
        events.append(too_late)
    duplicated = [e for e in events[1:] if rng.random() < 0.1]
    for copy in duplicated:  # a redelivery: the same event again, a little later in the stream
        events.insert(rng.randint(events.index(copy) + 1, len(events)), copy)
    return events


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.retries = 0  # optimistic-lock attempts beyond the first
        self.record_retries = 0  # settlement records failed by the handler and received again
        self.refused = 0  # platform events the intake refused (expected: the too-late ones)
        self.settled_records = 0
        self.errors: list[str] = []
        self.count = 0

    def record(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            self.count += 1

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text[:240])


@contextlib.contextmanager
def counted_attempts(stats: Stats) -> Iterator[None]:
    """Attempts beyond the first of every change and request (``Ledger.apply``)."""
    from billing.store.ledger import Ledger

    original = Ledger.apply

    def apply(self: Any, *args: Any, **kwargs: Any) -> Any:
        applied = original(self, *args, **kwargs)
        with stats.lock:
            stats.retries += max(0, applied.attempts - 1)
        return applied

    Ledger.apply = apply  # type: ignore[method-assign]
    try:
        yield
    finally:
        Ledger.apply = original  # type: ignore[method-assign]


class ExecutionEnvironment:
    """One Lambda execution environment: a fresh copy of each function's handler module (its
    module-level processor and wiring its own), invoked with a Lambda context of its function."""

    def __init__(self, stack: Any, name: str) -> None:
        from localsam.http_api import HttpApi
        from localsam.runtime import load_module

        runtime, resolver = stack.runtime, stack.resolver
        self.specs = {fn: runtime.spec(fn) for fn in FUNCTIONS}
        self.handlers: dict[str, Callable[[Any, Any], Any]] = {}
        for fn, spec in self.specs.items():
            module = load_module(spec.handler_path, f"load_{fn}_{name}")
            self.handlers[fn] = getattr(module, spec.handler_name)
        self.api = HttpApi(stack.template, self.invoke, resolver)

    def invoke(self, fn: str, event: Any) -> Any:
        from localsam.runtime import InvocationError, LambdaContext

        try:
            return self.handlers[fn](event, LambdaContext(self.specs[fn]))
        except Exception as exc:
            raise InvocationError(fn, exc) from exc

    def http(self, method: str, path: str, body: str, headers: dict[str, str]) -> Any:
        return self.api.handle(method, path, {"host": "localhost", "content-type": "application/json", **headers},
                               body.encode())


def common_environment(stack: Any) -> dict[str, str]:
    """The functions' environments together (the handlers run at once in one process): they must
    agree on every variable they share."""
    merged: dict[str, str] = {}
    for fn in FUNCTIONS:
        for name, value in stack.function_environment(fn).items():
            if name.startswith("AWS_LAMBDA_"):
                continue
            if merged.get(name, value) != value:
                raise SystemExit(f"the functions disagree on {name}: {merged[name]!r} / {value!r}")
            merged[name] = value
    return merged


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--workers", type=int, default=8, help="threads of each kind (producers, consumers, HTTP)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"), help="a running DynamoDB Local")
    parser.add_argument("--outbox", action="store_true", help="then drain the table's stream through the dispatcher")
    parser.add_argument("--short", action="store_true", help="a smoke run (CI): 3 accounts, 2 threads of each kind")
    args = parser.parse_args(argv)
    if args.short:
        args.accounts, args.workers = 3, 2
    warnings.filterwarnings("ignore", message="No application metrics to publish")

    from localsam.runner import StackRunner

    with StackRunner(dynamodb_endpoint=args.endpoint) as stack:
        run(args, stack)
    return 0


def run(args: argparse.Namespace, stack: Any) -> None:
    from billing.domain.catalog import load_catalog
    from billing.observability import metrics
    from billing.store.tables import table_models
    from localsam.aws import LOCAL_PARAMETERS
    from localsam.sqs import _sqs_record

    metrics.add_metric = lambda **_: None  # type: ignore[method-assign]  # no EMF lines among the figures
    os.environ.update(common_environment(stack))
    secret = LOCAL_PARAMETERS["PaymentWebhookSecret"]
    sqs = stack.client("sqs")
    settlement_url = stack.queue_urls["SettlementQueue"]
    settlement_arn = stack.queue_arns["SettlementQueue"]

    rng = random.Random(args.seed)
    now = datetime.now(UTC).replace(microsecond=0)
    accounts = [f"load-{i:04d}" for i in range(args.accounts)]
    streams = {a: account_stream(rng, a, now - timedelta(hours=rng.randint(20, 40))) for a in accounts}
    buyers = [(a, i) for i, a in enumerate(rng.sample(accounts, k=len(accounts)) * 2)]
    repeats = {i: rng.random() < 0.2 for _, i in buyers}
    credits = {i: rng.choice((50, 100, 250)) for _, i in buyers}
    stats = Stats()
    created = {a: threading.Event() for a in accounts}

    # One execution environment per worker thread, loaded and warmed (its clients made) before the
    # clock starts: a cold start is not what this measures.
    kinds = ("producer", "consumer", "http")
    environments: dict[str, queue.Queue[ExecutionEnvironment]] = {k: queue.Queue() for k in kinds}
    for kind in kinds:
        for n in range(args.workers):
            env = ExecutionEnvironment(stack, f"{kind}{n}")
            env.http("GET", "/v1/balance", "", {"x-local-sub": "warm-up"})
            env.http("POST", "/v1/webhooks/payments", "{}", {"billing-signature": "t=0,v1=00"})
            environments[kind].put(env)
    from billing.adapters import aws_client

    for service in ("sqs", "events", "sesv2"):  # the layer's clients, made once (boto3's session is not thread-safe)
        aws_client(service)
    local = threading.local()

    def environment(kind: str) -> ExecutionEnvironment:
        if getattr(local, "env", None) is None:
            local.env = environments[kind].get_nowait()
        env: ExecutionEnvironment = local.env
        return env

    def produce(account_id: str) -> None:
        from localsam.runtime import InvocationError

        env = environment("producer")
        for raw in streams[account_id]:
            envelope = {"version": "0", "id": str(uuid.uuid4()), "account": "123456789012", "region": "us-east-1",
                        "time": iso(datetime.now(UTC)), "resources": [], **raw}
            began = time.perf_counter()
            try:
                env.invoke("PlatformEventsFunction", envelope)
            except InvocationError as exc:
                if raw["detail"]["event_id"].endswith(TOO_LATE):
                    with stats.lock:
                        stats.refused += 1
                else:
                    stats.error(f"intake {raw['detail-type']}: {exc}")
            stats.record("intake", time.perf_counter() - began)

    producing = threading.Event()
    producing.set()
    receiving = threading.Lock()  # SQS hands a message group to one receiver at a time; moto's check races


    def consume() -> None:
        env = environment("consumer")
        idle_since: float | None = None
        while True:
            with receiving:
                answer = sqs.receive_message(QueueUrl=settlement_url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                             AttributeNames=["All"], MessageAttributeNames=["All"])
            messages = answer.get("Messages") or []
            if not messages:
                if not producing.is_set():
                    attributes = sqs.get_queue_attributes(QueueUrl=settlement_url, AttributeNames=[
                        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
                    if not any(int(v) for v in attributes.values()):
                        idle_since = idle_since or time.monotonic()
                        if time.monotonic() - idle_since > 0.5:
                            return
                time.sleep(0.02)
                continue
            idle_since = None
            event = {"Records": [_sqs_record(m, settlement_arn) for m in messages]}
            began = time.perf_counter()
            try:
                response = env.invoke("SettlementFunction", event)
            except Exception as exc:  # the whole batch failed: every record comes back
                stats.error(f"settlement batch: {exc}")
                response = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages]}
            stats.record("settlement", time.perf_counter() - began)
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                sqs.delete_message_batch(QueueUrl=settlement_url, Entries=[
                    {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(done)])
            for m in messages:
                if m["MessageId"] in failed:  # visible again at once (Lambda would wait out the timeout)
                    sqs.change_message_visibility(QueueUrl=settlement_url, ReceiptHandle=m["ReceiptHandle"],
                                                  VisibilityTimeout=0)
                elif json.loads(m["Body"]).get("detail-type") == "Account Created":
                    created[json.loads(m["Body"])["detail"]["account_id"]].set()
            with stats.lock:
                stats.settled_records += len(done)
                stats.record_retries += len(failed)

    def buy_and_pay(account_id: str, i: int) -> None:
        env = environment("http")
        if not created[account_id].wait(timeout=600):
            stats.error(f"purchase: {account_id} was never created")
            return
        body = json.dumps({"credits": credits[i]})
        began = time.perf_counter()
        answer = env.http("POST", "/v1/purchases", body, {"x-local-sub": account_id, "idempotency-key": f"buy-{i}"})
        stats.record("purchase (HTTP)", time.perf_counter() - began)
        if answer.status != 201 and answer.status != 200:
            stats.error(f"purchase: {answer.status} {answer.body}")
            return
        purchase = answer.json()
        notice = json.dumps({"id": f"evt-{purchase['purchase_id']}", "type": "payment.succeeded",
                             "purchase_id": purchase["purchase_id"], "amount": purchase["price"],
                             "created_at": iso(datetime.now(UTC))})
        for _ in range(2 if repeats[i] else 1):  # the provider retries a notice
            t = str(int(time.time()))
            signature = hmac.new(secret.encode(), f"{t}.{notice}".encode(), hashlib.sha256).hexdigest()
            began = time.perf_counter()
            paid = env.http("POST", "/v1/webhooks/payments", notice, {"billing-signature": f"t={t},v1={signature}"})
            stats.record("payment webhook", time.perf_counter() - began)
            if paid.status != 200:
                stats.error(f"webhook: {paid.status} {paid.body}")

    events = sum(len(s) for s in streams.values())
    print(f"{args.accounts} accounts, {events} platform events (duplicates and refused ones included), "
          f"{len(buyers)} purchases with {len(buyers) + sum(repeats.values())} payment notices; "
          f"{args.workers} producers + {args.workers} settlement consumers + {args.workers} HTTP workers; "
          f"DynamoDB Local at {stack.dynamodb_endpoint}")
    began = time.perf_counter()
    with counted_attempts(stats), ThreadPoolExecutor(args.workers) as producers, \
            ThreadPoolExecutor(args.workers) as consumers, ThreadPoolExecutor(args.workers) as http:
        loops = [consumers.submit(consume) for _ in range(args.workers)]
        jobs = [producers.submit(produce, a) for a in accounts]
        jobs += [http.submit(buy_and_pay, a, i) for a, i in buyers]
        for job in jobs[:len(accounts)]:
            job.result()
        producing.clear()
        for job in loops + jobs[len(accounts):]:
            job.result()
    elapsed = time.perf_counter() - began

    print(f"\n{stats.count} handler invocations in {elapsed:.1f} s: {stats.count / elapsed:.0f} per second; "
          f"{events / elapsed:.0f} platform events per second in, {stats.settled_records / elapsed:.0f} settled")
    for kind, values in sorted(stats.latency.items()):
        print(f"  {kind:<16} {len(values):>6} calls   p50 {statistics.median(values) * 1000:6.1f} ms   "
              f"p99 {percentile(values, 0.99) * 1000:6.1f} ms")
    print(f"settlement records: {stats.settled_records} settled, {stats.record_retries} failed and retried")
    print(f"optimistic-lock retries (attempts beyond the first): {stats.retries}")
    print(f"refused by the intake (older than 30 days, expected): {stats.refused}")
    print(f"errors: {len(stats.errors)}" + "".join(f"\n  {e}" for e in stats.errors[:10]))
    dead = stack.queue_messages("PlatformEventsDLQ")  # what the settlement refused (the intake's refusals raise)
    print(f"dead-lettered by the settlement: {len(dead)}"
          + "".join(f"\n  {m['body']['detail']['event_id']}" for m in dead[:10] if isinstance(m.get("body"), dict)))

    if args.outbox:
        began = time.perf_counter()
        streams_report = stack.drain_streams()
        print(f"\noutbox: {streams_report.invocations} dispatcher invocations in {time.perf_counter() - began:.1f} s")

    try:
        from billing.services.reconcile import reconcile
    except ImportError:
        print("\nreconciliation: billing.services.reconcile is not there; skipped")
        return
    began = time.perf_counter()
    report = reconcile(table_models(stack.table_name), load_catalog(), read_rate=1e9)
    print(f"\nreconciliation: {report.accounts_checked} accounts checked in {time.perf_counter() - began:.1f} s, "
          f"{report.differences} differences {report.first_differences[:20]}")
    for account_id, reasons in list(report.details.items())[:5]:
        print(f"  {account_id}: {reasons[:3]}")


if __name__ == "__main__":
    raise SystemExit(main())
