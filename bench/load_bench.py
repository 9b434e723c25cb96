"""Load test on DynamoDB Local: concurrent workers send a mixed stream for a few hundred accounts,
then the reconciliation checks every account. Prints figures only (nothing is asserted).

The stream, per account (times within the last two days, so that the intake's time rules pass):
``Account Created``; two ``Container Created``; container runs (``Container Started`` /
``Container Stopped``, tiers and Code Supporter drawn at random, some with traffic); AI uses; and,
beside them, purchases through the account API's service with their signed-webhook confirmations.
Of the platform events, 10% are sent twice (duplicates) and AI uses arrive after later container
events (late events, as a platform's clocks and retries give). Platform events are settled as the
FIFO settlement queue hands them, one account at a time per message group: each account's events in
order on one worker, up to ``--workers`` accounts at once. Purchases and payment notices (with 20%
repeats of the same notice) run on ``--workers`` more threads at the same time, on the same accounts:
they race the settlements for the same balance items (optimistic locking: a lost race is retried).

    python -m bench.load_bench [--accounts 300] [--workers 8] [--seed 7] [--endpoint URL]

Figures: events and requests per second, handler latency (p50, p99) by kind, optimistic-lock
retries (attempts beyond the first), errors, and the reconciliation's accounts checked and
differences (the target is zero).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

TIERS = ("micro", "small", "medium", "large")
SOURCES = {"Account Created": "platform.accounts", "AI Usage Recorded": "platform.ai"}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def account_stream(rng: random.Random, account_id: str, start: datetime) -> list[dict[str, Any]]:
    """One account's platform events, in the order the platform sends them."""
    n = 0

    def event(detail_type: str, at: datetime, **fields: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        detail = {"event_id": f"{account_id}-{n}", "account_id": account_id, "occurred_at": iso(at), **fields}
        return {"version": "0", "id": str(uuid.uuid4()), "source": SOURCES.get(detail_type, "platform.containers"),
                "detail-type": detail_type, "detail": detail}

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
    duplicated = [e for e in events[1:] if rng.random() < 0.1]
    for copy in duplicated:  # a redelivery: the same event again, a little later in the stream
        events.insert(rng.randint(events.index(copy) + 1, len(events)), copy)
    return events


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.retries = 0
        self.errors: list[str] = []
        self.count = 0

    def record(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            self.count += 1


@contextlib.contextmanager
def counted_attempts(stats: Stats) -> Iterator[None]:
    """Attempts beyond the first of every change and request (``Ledger.apply``/``request``)."""
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"), help="a running DynamoDB Local")
    args = parser.parse_args(argv)

    from localsam.dynamodb_local import DynamoDBLocal

    with contextlib.ExitStack() as stack:
        endpoint = args.endpoint or stack.enter_context(DynamoDBLocal()).endpoint_url
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
        run(args, endpoint)
    return 0


def run(args: argparse.Namespace, endpoint: str) -> None:
    import boto3

    from billing.domain.catalog import load_catalog
    from billing.observability import metrics
    from billing.services import intake, purchases
    from billing.services.purchases import PaymentNotice
    from billing.services.reconcile import reconcile
    from billing.store.idempotency import request_key
    from billing.store.ledger import Ledger
    from billing.store.tables import table_models
    from localsam.template import create_table

    metrics.add_metric = lambda **_: None  # type: ignore[method-assign]  # no EMF lines among the figures
    table = f"billing-load-{uuid.uuid4().hex[:8]}"
    create_table(boto3.client("dynamodb", endpoint_url=endpoint), table)
    catalog = load_catalog()
    ledger = Ledger(table_name=table, catalog=catalog, sleep=lambda s: time.sleep(min(s, 0.05)))
    rng = random.Random(args.seed)
    now = datetime.now(UTC).replace(microsecond=0)
    accounts = [f"load-{i:04d}" for i in range(args.accounts)]
    streams = {a: account_stream(rng, a, now - timedelta(hours=rng.randint(20, 40))) for a in accounts}
    stats = Stats()
    created = {a: threading.Event() for a in accounts}

    def settle_account_stream(account_id: str) -> None:
        for raw in streams[account_id]:
            began = time.perf_counter()
            try:
                intake.settle_queued(json.dumps(raw), ledger, datetime.now(UTC))
            except Exception as exc:  # a refusal would be dead-lettered; none is expected here
                with stats.lock:
                    stats.errors.append(f"{raw['detail-type']}: {type(exc).__name__}: {exc}"[:200])
            stats.record("settlement", time.perf_counter() - began)
            if raw["detail-type"] == "Account Created":
                created[account_id].set()

    def buy_and_pay(account_id: str, i: int) -> None:
        created[account_id].wait()
        began = time.perf_counter()
        credits = rng.choice((50, 100, 250))
        req = request_key(account_id, f"load-buy-{i}", "POST", "/v1/purchases", {"credits": credits})
        try:
            purchase = purchases.create_purchase(ledger, account_id, credits, req, datetime.now(UTC))
            stats.record("purchase", time.perf_counter() - began)
            notice = PaymentNotice(id=f"pay-{account_id}-{i}", type="payment.succeeded",
                                   purchase_id=purchase["purchase_id"], currency="USD",
                                   cents=purchase["price"]["cents"], created_at=now)
            for _ in range(2 if rng.random() < 0.2 else 1):  # the provider retries a notice
                began = time.perf_counter()
                purchases.handle_payment(ledger, notice, datetime.now(UTC))
                stats.record("payment webhook", time.perf_counter() - began)
        except Exception as exc:
            with stats.lock:
                stats.errors.append(f"purchase: {type(exc).__name__}: {exc}"[:200])

    buyers = [(a, i) for i, a in enumerate(rng.sample(accounts, k=len(accounts)) * 2)]
    events = sum(len(s) for s in streams.values())
    print(f"{args.accounts} accounts, {events} platform events ({events - 3 * args.accounts} after the "
          f"accounts and containers were created, duplicates included), {len(buyers)} purchases, "
          f"{args.workers} + {args.workers} workers, DynamoDB Local at {endpoint}")
    began = time.perf_counter()
    with counted_attempts(stats), ThreadPoolExecutor(args.workers) as settle, \
            ThreadPoolExecutor(args.workers) as http:
        jobs = [settle.submit(settle_account_stream, a) for a in accounts]
        jobs += [http.submit(buy_and_pay, a, i) for a, i in buyers]
        for job in jobs:
            job.result()
    elapsed = time.perf_counter() - began

    print(f"\n{stats.count} handler calls in {elapsed:.1f} s: {stats.count / elapsed:.0f} per second "
          f"({events / elapsed:.0f} platform events per second)")
    for kind, values in sorted(stats.latency.items()):
        ordered = sorted(values)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        print(f"  {kind:<16} {len(values):>6} calls   p50 {statistics.median(values) * 1000:6.1f} ms   "
              f"p99 {p99 * 1000:6.1f} ms")
    print(f"optimistic-lock retries (attempts beyond the first): {stats.retries}")
    print(f"errors: {len(stats.errors)}" + "".join(f"\n  {e}" for e in stats.errors[:10]))

    began = time.perf_counter()
    report = reconcile(table_models(table), catalog, read_rate=1e9)
    print(f"\nreconciliation: {report.accounts_checked} accounts checked in {time.perf_counter() - began:.1f} s, "
          f"{report.differences} differences {report.first_differences[:20]}")
    for account_id, reasons in list(report.details.items())[:5]:
        print(f"  {account_id}: {reasons[:3]}")


if __name__ == "__main__":
    raise SystemExit(main())
