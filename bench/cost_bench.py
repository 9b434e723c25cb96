"""Cost bench: the DynamoDB capacity each operation consumes, in $ per million operations, at 1, 1,000
and 10,000 containers, without and with labels (issue 19).

For each account size, an account (Membership) is built with that many running containers: the first
through the settlement service (Account Created, Container Created, Container Started), the others
its clones written with BatchWriteItem and brought into the balance's aggregates by the domain's own
``Containers.sync``. With labels, each container carries a label of its own (``team=t<k>``: one
distinct label per container, the worst case for attribution). Then the day's traffic: every other
container is stopped once, on the same day, through the settlement service (``--prior`` caps how
many), so the day's usage aggregates hold what a busy day leaves. Then each operation is measured
through its function's handler, as its trigger calls it:

* stop: a ``Container Stopped`` (SettlementFunction, the SQS record the FIFO queue hands over);
* AI use: an ``AI Usage Recorded`` on a container (SettlementFunction);
* purchase: ``POST /v1/purchases`` (AccountApiFunction) and its signed ``payment.succeeded``
  (PaymentWebhookFunction);
* balance read: ``GET /v1/balance`` (UsageApiFunction);
* 30-day usage read: ``GET /v1/usage?from=…&to=…`` over 30 days, and the same grouped by container
  (and by label, with labels).

Every DynamoDB request of the process goes through a wrapper around ``BaseClient._make_api_call`` that
counts the read and write units DynamoDB bills for it, by its rules, from the sizes of the items it
reads and writes (before and after), index writes included (see :class:`Meter`); what DynamoDB Local
reports (``ReturnConsumedCapacity``) is printed beside as a cross-check. So the figures follow the
code: a change of design shows in them without touching the bench. The price is DynamoDB's on-demand
price in us-east-1 (Standard table class): $1.25 per million write request units and $0.25 per
million read request units, so $ per million operations = 1.25 x write units + 0.25 x read units.
Not counted: the outbox's delivery (the stream and OutboxDispatcherFunction, ~1 write per effect;
a stop or an AI use on a funded account has none), storage, streams, Lambda and SQS.

    python -m bench.cost_bench [--containers 1,1000,10000] [--prior N] [--endpoint URL] [--short]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.client

from bench import local
from bench.scale_bench import (
    KB,
    Context,
    api_event,
    ev,
    handler,
    iso,
    item_size,
    save_clones,
    settle,
    sqs_event,
)

WRITE_PRICE = 1.25  # $ per million write request units, on-demand, us-east-1, Standard table class
READ_PRICE = 0.25  # $ per million read request units (a strongly consistent read of 4 KB is 1 unit)
READ_OPS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
OPEN = datetime(2026, 2, 1, tzinfo=UTC)
DAY = datetime(2026, 3, 10, tzinfo=UTC)
STARTED = DAY + timedelta(hours=8)
NOW = DAY + timedelta(hours=23, minutes=50)
SECRET = "bench-webhook-secret-0123456789"


@dataclass
class Units:
    requests: Counter[str] = field(default_factory=Counter)
    read: float = 0.0
    write: float = 0.0
    index_write: float = 0.0
    local: float = 0.0  # what DynamoDB Local reported (read + write), a cross-check

    @property
    def dollars_per_million(self) -> float:
        return WRITE_PRICE * self.write + READ_PRICE * self.read


def write_units(size: int) -> int:
    return max(1, math.ceil(size / KB))


def read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / (4 * KB))) * (1.0 if consistent else 0.5)


class Meter:
    """The capacity units DynamoDB bills for every DynamoDB request of the process while metering,
    by its documented rules, from the items' sizes (``scale_bench.item_size``):

    * a write: 1 unit per KB (rounded up) of the larger of the item before and after it; 2 per KB in
      a transaction; every index whose key the item has before or after: 1 more write (KEYS_ONLY
      and small projections: under 1 KB), 2 when the index key changes (a delete and a put);
    * a read: 1 unit per 4 KB (rounded up) strongly consistent, half eventually consistent, 2 in a
      transaction; a Query by the total size of the items it returns, a BatchGetItem item by item.

    The items before and after each write are read with metering paused. DynamoDB Local's own report
    (``ReturnConsumedCapacity``) is kept beside it: Local does not apply every rule (a transaction's
    items are counted at 2 units whatever their size)."""

    def __init__(self) -> None:
        self.units: Units | None = None
        self._lock = threading.Lock()
        self._paused = threading.local()
        self._indexes: dict[str, list[tuple[str, ...]]] = {}
        base: Any = botocore.client.BaseClient
        original = base._make_api_call
        meter = self

        def wrapped(client: Any, op: str, params: dict[str, Any]) -> Any:
            units = meter.units
            if (units is None or getattr(meter._paused, "on", False)
                    or client.meta.service_model.service_name != "dynamodb" or op not in READ_OPS | WRITE_OPS):
                return original(client, op, params)
            params = {**params, "ReturnConsumedCapacity": "TOTAL"}
            writes = meter._writes(op, params)
            before = [meter._get(client, table, key) for table, key, _ in writes]
            response = original(client, op, params)
            after = [meter._get(client, table, key) for table, key, _ in writes]
            consumed = response.get("ConsumedCapacity")
            rows = consumed if isinstance(consumed, list) else [consumed] if consumed else []
            with meter._lock:
                units.requests[op] += 1
                units.local += sum(r.get("CapacityUnits", 0) for r in rows)
                for (table, _, factor), old, new in zip(writes, before, after, strict=True):
                    units.write += factor * write_units(max(item_size(old), item_size(new)))
                    units.index_write += meter._index_writes(client, table, old, new)
                units.read += meter._reads(op, params, response)
            return response

        base._make_api_call = wrapped

    @staticmethod
    def _writes(op: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
        """(table, key, units per KB) of each item the request writes."""
        def key_of(body: dict[str, Any]) -> dict[str, Any]:
            return body.get("Key") or {k: body["Item"][k] for k in ("pk", "sk")}

        if op == "TransactWriteItems":
            return [(body["TableName"], key_of(body), 2) for t in params["TransactItems"]
                    for kind, body in t.items() if kind != "ConditionCheck"]
        if op == "BatchWriteItem":
            return [(table, key_of(r.get("PutRequest") or r["DeleteRequest"]), 1)
                    for table, requests in params["RequestItems"].items() for r in requests]
        if op in WRITE_OPS:
            return [(params["TableName"], key_of(params), 1)]
        return []

    def _get(self, client: Any, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        self._paused.on = True
        try:
            item: dict[str, Any] | None = client.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
            return item
        finally:
            self._paused.on = False

    def _index_writes(self, client: Any, table: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
        if table not in self._indexes:
            self._paused.on = True
            try:
                described = client.describe_table(TableName=table)["Table"]
            finally:
                self._paused.on = False
            self._indexes[table] = [tuple(k["AttributeName"] for k in index["KeySchema"])
                                    for index in described.get("GlobalSecondaryIndexes", [])]
        n = 0
        for attributes in self._indexes[table]:
            was = old is not None and all(a in old for a in attributes)
            now = new is not None and all(a in new for a in attributes)
            if was and now:
                assert old is not None and new is not None
                n += 1 if all(old[a] == new[a] for a in attributes) else 2
            elif was or now:
                n += 1
        return n

    @staticmethod
    def _reads(op: str, params: dict[str, Any], response: dict[str, Any]) -> float:
        consistent = bool(params.get("ConsistentRead"))
        if op == "GetItem":
            return read_units(item_size(response.get("Item")), consistent) if response.get("Item") else \
                read_units(0, consistent)
        if op == "BatchGetItem":
            units = 0.0
            for table, items in (response.get("Responses") or {}).items():
                table_consistent = bool(params["RequestItems"][table].get("ConsistentRead"))
                units += sum(read_units(item_size(i), table_consistent) for i in items)
            return units
        if op in ("Query", "Scan"):
            return read_units(sum(item_size(i) for i in response.get("Items") or []), consistent)
        if op == "TransactGetItems":
            return sum(2 * read_units(item_size(r.get("Item")), True) for r in response.get("Responses") or [])
        return 0.0

    @contextlib.contextmanager
    def measure(self) -> Any:
        self.units = Units()
        try:
            yield self.units
        finally:
            units, self.units = self.units, None
            units.write += units.index_write


def build(ledger: Any, account: str, n: int, labelled: bool) -> None:
    """The account with ``n`` running containers ``c00000``...: the first through the settlement
    service, the others its clones (see the module's docstring)."""
    from billing.domain.model import Accrual, clone

    labels = (lambda k: {"labels": {"team": f"t{k:05d}"}}) if labelled else (lambda k: {})
    settle(ledger, ev(account, "Account Created", iso(OPEN), f"{account}-open", email="c@example.com",
                      plan="membership"))
    settle(ledger, ev(account, "Container Created", iso(STARTED), f"{account}-c0", container_id="c00000",
                      storage_gb=10, **labels(0)))
    settle(ledger, ev(account, "Container Started", iso(STARTED), f"{account}-s0", container_id="c00000",
                      run_id="r-c00000", tier="small", code_supporter=False))
    if n == 1:
        return
    first = ledger.container(account, "c00000")
    clones = {}
    for k in range(1, n):
        cid = f"c{k:05d}"
        c = clone(first)
        c.container_id, c.accrual, c.counted = cid, Accrual(), False  # new: not in the aggregates yet
        run = c.runs.pop("r-c00000")
        run.run_id = f"r-{cid}"
        c.runs[run.run_id] = run
        if labelled:
            c.labels = [(at, {"team": f"t{k:05d}"}) for at, _ in c.labels]
        clones[cid] = c
    save_clones(ledger, account, clones)


def day_traffic(ledger: Any, account: str, n: int, prior: int) -> tuple[int, str | None]:
    """Stops of containers 1, 2, ... (up to ``prior``) spread over the day's hours, each settled for
    real; returns how many were settled and the first refusal, if any."""
    stops = min(n - 1, prior)
    span = (NOW - timedelta(minutes=20) - STARTED - timedelta(hours=1)).total_seconds()
    for k in range(1, stops + 1):
        at = STARTED + timedelta(hours=1, seconds=span * k / (stops + 1))
        try:
            settle(ledger, ev(account, "Container Stopped", iso(at), f"{account}-x{k}", container_id=f"c{k:05d}",
                              run_id=f"r-c{k:05d}", traffic_bytes=0))
        except Exception as exc:  # the design of the day fails past an item's 400 KB, say
            reason = getattr(exc, "cause_response_message", None) or str(exc)
            return k - 1, f"stop #{k}: {type(exc).__name__}: {reason[:120]}"
    return stops, None


def handlers(ledger: Any) -> dict[str, Any]:
    """The four functions' handler modules, loaded once, wired to the bench's table and clock."""
    from billing.store.cursors import CursorCodec

    clock = lambda: NOW  # noqa: E731
    return {
        "settlement": handler("settlement", ledger=ledger, clock=clock),
        "usage": handler("usage_api", ledger=ledger, clock=clock,
                         cursor_codec=CursorCodec("bench-cursor-secret-0123456789")),
        "accounts": handler("account_api", ledger=ledger, clock=clock),
        "webhook": handler("payment_webhook", ledger=ledger, clock=clock, webhook_secrets=[SECRET]),
    }


def operations(apps: dict[str, Any], account: str, labelled: bool, meter: Meter) -> dict[str, Units | str]:
    from billing.api.signatures import sign

    settlement, usage, accounts, webhook = apps["settlement"], apps["usage"], apps["accounts"], apps["webhook"]
    out: dict[str, Units | str] = {}

    def queued(raw: dict[str, Any]) -> dict[str, Any]:
        event = sqs_event([json.dumps(raw)])
        event["Records"][0]["messageAttributes"] = {"AcceptedAt": {"stringValue": iso(NOW), "dataType": "String"}}
        return event

    with meter.measure() as units:
        result = settlement.lambda_handler(queued(ev(
            account, "Container Stopped", iso(NOW - timedelta(minutes=15)), f"{account}-stop", container_id="c00000",
            run_id="r-c00000", traffic_bytes=2 * 2**30)), Context())
    out["stop"] = units if result == {"batchItemFailures": []} else f"failed: {result}"
    with meter.measure() as units:
        result = settlement.lambda_handler(queued(ev(
            account, "AI Usage Recorded", iso(NOW - timedelta(minutes=10)), f"{account}-ai", feature="chat",
            model="claude-haiku-4.5", input_tokens=1_200, output_tokens=350, container_id="c00000")), Context())
    out["AI use"] = units if result == {"batchItemFailures": []} else f"failed: {result}"

    def http(module: Any, method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None,
             sub: str | None = account) -> tuple[int, Any]:
        event = api_event(path, sub or "nobody")
        event["routeKey"] = event["requestContext"]["routeKey"] = f"{method} {path}"
        event["requestContext"]["http"]["method"] = method
        event["headers"].update({"content-type": "application/json", **(headers or {})})
        if sub is None:
            event["requestContext"].pop("authorizer")
        if body is not None:
            event["body"] = body
        response = module.lambda_handler(event, Context())
        return response["statusCode"], json.loads(response["body"]) if response.get("body") else None

    with meter.measure() as units:
        status, created = http(accounts, "POST", "/v1/purchases", json.dumps({"credits": 100}),
                               {"idempotency-key": f"{account}-buy"})
        assert status == 201, created
        notice = json.dumps({"id": f"{account}-pay", "type": "payment.succeeded", "purchase_id": created["purchase_id"],
                             "amount": created["price"], "created_at": iso(NOW)})
        status, paid = http(webhook, "POST", "/v1/webhooks/payments", notice,
                            {"billing-signature": sign(notice, SECRET, int(NOW.timestamp()))}, sub=None)
    out["purchase"] = units if status == 200 else f"failed: {status} {paid}"

    def read(name: str, path: str, query: dict[str, str] | None = None) -> None:
        event = api_event(path, account, query)
        with meter.measure() as units:
            response = usage.lambda_handler(event, Context())
        out[name] = units if response["statusCode"] == 200 else \
            f"{response['statusCode']}: {response['body'][:90]}"

    thirty = {"from": (DAY - timedelta(days=29)).strftime("%Y-%m-%d"), "to": DAY.strftime("%Y-%m-%d")}
    read("balance read", "/v1/balance")
    read("30-day usage read", "/v1/usage", thirty)
    read("  grouped by container", "/v1/usage", {**thirty, "group_by": "container"})
    if labelled:
        read("  grouped by label", "/v1/usage", {**thirty, "group_by": "label:team"})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--containers", default="1,1000,10000")
    parser.add_argument("--prior", type=int, default=10_000, help="at most this many stops earlier in the day")
    parser.add_argument("--endpoint", default=os.environ.get("DYNAMODB_ENDPOINT"), help="a running DynamoDB Local")
    parser.add_argument("--short", action="store_true", help="a smoke run (CI): 1 and 12 containers")
    args = parser.parse_args(argv)
    sizes = [1, 12] if args.short else [int(x) for x in args.containers.split(",")]

    from billing.store.ledger import Ledger

    print(f"cost_bench: python {sys.version.split()[0]}; units by DynamoDB's billing rules; on-demand us-east-1: "
          f"${WRITE_PRICE} per million write units, ${READ_PRICE} per million read units")
    meter = Meter()
    rows: list[tuple[int, bool, int, str | None, dict[str, Units | str]]] = []
    with local.dynamodb_local(args.endpoint) as endpoint, open(os.devnull, "w") as devnull:
        table = local.new_table(endpoint, "bench-cost")
        ledger = Ledger(table_name=table, sleep=lambda _: None)
        apps = handlers(ledger)
        for n in sizes:
            for labelled in (False, True):
                account = f"cost-{n}-{'l' if labelled else 'u'}"
                start = time.perf_counter()
                with contextlib.redirect_stdout(devnull):  # the services' and handlers' EMF lines
                    build(ledger, account, n, labelled)
                    settled, refused = day_traffic(ledger, account, n, args.prior)
                    measured = operations(apps, account, labelled, meter)
                rows.append((n, labelled, settled, refused, measured))
                print(f"  built {n:,} containers{' (labelled)' if labelled else ''}, {settled:,} stops earlier in "
                      f"the day, in {time.perf_counter() - start:.0f} s" + (f"; refused: {refused}" if refused else ""),
                      flush=True)
    report(rows)
    return 0


def report(rows: list[tuple[int, bool, int, str | None, dict[str, Units | str]]]) -> None:
    print(f"\n{'operation':<24}{'containers':>11}{'labels':>8}{'stops before':>13}{'requests':>10}{'read u':>8}"
          f"{'write u':>9}{'(index)':>8}{'$ / million':>13}{'Local says':>12}")
    names = [name for name in rows[0][4]] + ["  grouped by label"]
    for name in dict.fromkeys(names):
        for n, labelled, settled, _, measured in rows:
            units = measured.get(name)
            if units is None:
                continue
            head = f"{name:<24}{n:>11,}{'yes' if labelled else 'no':>8}{settled:>13,}"
            if isinstance(units, str):
                print(f"{head}   {units}")
                continue
            print(f"{head}{sum(units.requests.values()):>10}{units.read:>8g}{units.write:>9g}{units.index_write:>8g}"
                  f"{units.dollars_per_million:>13.2f}{units.local:>12g}")
    print(f"\n$ / million = {WRITE_PRICE} x write units + {READ_PRICE} x read units (DynamoDB on-demand, us-east-1, "
          "Standard table class); units by DynamoDB's billing rules from the items' sizes, index writes included; "
          "'Local says': the read + write units DynamoDB Local reported (ReturnConsumedCapacity)")


if __name__ == "__main__":
    sys.exit(main())
