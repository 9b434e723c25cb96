"""Reconciliation's reads: read-only access to the billing table at a bounded rate of read capacity
(a token bucket over what DynamoDB says each read consumed), and one consistent snapshot of an
account (the balance's version read before and after its other items)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from typing import Any

from billing.domain.model import AccountState, Container, LedgerEntry, from_json
from billing.domain.reconciliation import AccountItems, DailyUsage, Usage
from billing.store import keys
from billing.store.tables import TableModels
from billing.store.usage import HOUR_GRAIN, parse_attribute, parse_cell, spill_contributions
from billing.store.usage_reads import container_of

DEFAULT_READ_RATE = 100.0  # read capacity units per second (strongly consistent: 1 unit per 4 KB)
SNAPSHOT_ATTEMPTS = 3  # reads of an account that keeps changing before it is reported busy
SCAN_PAGE = 200  # items a scan page evaluates


class ReadBudget:
    """A token bucket over consumed read capacity: ``rate`` units a second, bursts of ``burst``.
    Reads are charged after the fact (DynamoDB says what they consumed); a bucket in debt sleeps."""

    def __init__(
        self,
        rate: float = DEFAULT_READ_RATE,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("the read rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._clock, self._sleep = clock, sleep
        self._tokens = self.burst
        self._last = clock()
        self.consumed = 0.0
        self.waited = 0.0

    def spend(self, units: float) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate) - units
        self._last = now
        self.consumed += units
        if self._tokens < 0:
            pause = -self._tokens / self.rate
            self.waited += pause
            self._sleep(pause)
            self._tokens = 0.0
            self._last = self._clock()


def _units(response: Mapping[str, Any]) -> float:
    """What a read consumed: DynamoDB's figure, or an estimate by size when it gives none."""
    consumed = response.get("ConsumedCapacity")
    if consumed and "CapacityUnits" in consumed:
        return float(consumed["CapacityUnits"])
    items = response.get("Items") or ([response["Item"]] if response.get("Item") else [])
    return float(max(1, math.ceil(len(json.dumps(items)) / 4096)))


class Busy(Exception):
    """The account kept changing while it was read."""


class TableReader:
    """Read-only access to the billing table, each request charged to the read budget."""

    def __init__(self, models: TableModels, budget: ReadBudget) -> None:
        self.models = models
        self.budget = budget
        self.client: Any = models.connection.client

    def _read(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        response: dict[str, Any] = getattr(self.client, operation)(
            TableName=self.models.table_name, ReturnConsumedCapacity="TOTAL", **kwargs
        )
        self.budget.spend(_units(response))
        return response

    def account_ids(self, after: str | None = None) -> Iterator[str]:
        """Every account with a balance item, in the scan's order, from the one after ``after``."""
        start = {"pk": {"S": keys.account_pk(after)}, "sk": {"S": keys.STATE}} if after else None
        while True:
            kwargs: dict[str, Any] = {
                "FilterExpression": "sk = :state",
                "ExpressionAttributeValues": {":state": {"S": keys.STATE}},
                "ProjectionExpression": "pk",
                "Limit": SCAN_PAGE,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self._read("scan", **kwargs)
            for item in page.get("Items", []):
                pk = item["pk"]["S"]
                if keys.is_account_pk(pk):
                    yield keys.account_of(pk)
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _balance(self, account_id: str) -> dict[str, Any] | None:
        key = {"pk": {"S": keys.account_pk(account_id)}, "sk": {"S": keys.STATE}}
        item: dict[str, Any] | None = self._read("get_item", Key=key, ConsistentRead=True).get("Item")
        return item

    def _range(self, account_id: str, low: str, high: str) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
                "ExpressionAttributeValues": {
                    ":pk": {"S": keys.account_pk(account_id)}, ":low": {"S": low}, ":high": {"S": high},
                },
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self._read("query", **kwargs)
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def snapshot(self, account_id: str) -> AccountItems | None:
        """The account's items as of one version of its balance (None: no such account); raises
        :class:`Busy` when every attempt saw the balance change while the rest was read."""
        for _ in range(SNAPSHOT_ATTEMPTS):
            before = self._balance(account_id)
            if before is None:
                return None
            containers = [
                from_json(i["body"]["S"], Container)
                for i in self._range(account_id, keys.CONTAINER, keys.CONTAINER + "~")
            ]
            ledger = self._range(account_id, keys.LEDGER, keys.LEDGER_END)
            entries = [from_json(i["body"]["S"], LedgerEntry) for i in ledger]
            usage, daily = stored_usage(self._range(account_id, keys.USAGE, keys.USAGE_END))
            after = self._balance(account_id)
            if after is not None and after.get("version") == before.get("version"):
                state = from_json(before["body"]["S"], AccountState)
                return AccountItems(state, containers, entries, usage, daily=daily)
        raise Busy(account_id)


def stored_usage(items: Iterable[Mapping[str, Any]]) -> tuple[Usage, DailyUsage]:
    """Every usage item, as {(day, container or None): {(hour, cell): µcr}} from the day items (with
    the spills and the first design's items), and as {(day, container): {cell: µcr}} from the month
    items (with the same spills and first design's items, by day); zeros left out."""
    hourly: Usage = {}
    daily: DailyUsage = {}

    def add(day: date, container: str | None, hour: int | None, cell: Any, amount: int, both: bool) -> None:
        """An amount of a day's hour (hour items), of a whole day (month items), or (``both``: a spill,
        a first design's item) of an hour that neither item kind holds."""
        if hour is not None:
            cells = hourly.setdefault((day, container), {})
            cells[(hour, cell)] = cells.get((hour, cell), 0) + amount
        if hour is None or both:
            by_day = daily.setdefault((day, container), {})
            by_day[cell] = by_day.get(cell, 0) + amount

    for item in items:
        sk = item["sk"]["S"]
        kind = sk.removeprefix(keys.USAGE)[:1]
        if kind in ("A", "K"):
            cell = parse_cell(item.get("c", {}).get("S", ""))
            container = container_of(sk) if kind == "K" else None
            grain, period = sk.split("#")[-3], sk.split("#")[-2]
            for name, value in item.items():
                if cell is None or "N" not in value or len(name) != 3 or not name[1:].isdigit():
                    continue
                if grain == HOUR_GRAIN and name[0] == "h":
                    add(date.fromisoformat(period), container, int(name[1:]), cell, int(value["N"]), False)
                elif grain != HOUR_GRAIN and name[0] == "d":
                    day = date(int(period[:4]), int(period[5:7]), int(name[1:]))
                    add(day, container, None, cell, int(value["N"]), False)
        elif kind == "E":
            day = date.fromisoformat(sk.split("#")[2])
            for (container, _, hour, cell), amount in spill_contributions(day, item["body"]["S"]).items():
                add(day, container, hour, cell, amount, True)
        else:
            day, container = keys.usage_day_of(sk)
            for name, value in item.items():
                parsed = parse_attribute(name)
                if parsed and "N" in value:
                    add(day, container, parsed[0], parsed[1], int(value["N"]), True)
    clean = {k: {c: v for c, v in cells.items() if v} for k, cells in hourly.items()}
    clean_daily = {k: {c: v for c, v in cells.items() if v} for k, cells in daily.items()}
    return {k: v for k, v in clean.items() if v}, {k: v for k, v in clean_daily.items() if v}
