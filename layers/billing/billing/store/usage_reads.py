"""The usage report's reads, bounded by design: one ``Query`` of the items of the granularity asked
(a day's hours for ``hour``; a month's days for ``day`` and ``month``), for the account, one container,
or every container at once through GSI1, plus the spill items and the first design's items of the
range; never more than a :class:`ReadBudget` of items and bytes (then :class:`ReadLimit`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from billing.domain.usage import UsageDay
from billing.store import keys
from billing.store.tables import TableModels
from billing.store.usage import (
    HOUR_GRAIN,
    index_pk,
    parse_attribute,
    parse_cell,
    period_of,
    spill_contributions,
)

MAX_ITEMS = 1_000
MAX_BYTES = 5 * 2**20


class ReadLimit(Exception):
    """The answer would need more than the budget's items or bytes."""

    def __init__(self, items: int, read_bytes: int) -> None:
        super().__init__(f"{items} items, {read_bytes} bytes read")
        self.items, self.bytes = items, read_bytes


@dataclass
class ReadBudget:
    """Items and bytes an answer may read; what it has read so far."""

    max_items: int = MAX_ITEMS
    max_bytes: int = MAX_BYTES
    items: int = 0
    bytes: int = 0
    requests: int = 0

    def take(self, item: dict[str, Any]) -> None:
        self.items += 1
        self.bytes += item_size(item)
        if self.items > self.max_items or self.bytes > self.max_bytes:
            raise ReadLimit(self.items, self.bytes)

    @property
    def left(self) -> int:
        return max(1, self.max_items - self.items + 1)  # one more than allowed: enough to know it is too many


def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's size of an item: names plus values (numbers counted by their digits)."""
    size = 0
    for name, value in item.items():
        (kind, raw), = value.items()
        size += len(name.encode()) + (len(str(raw).encode()) if kind in ("S", "N") else 8)
    return size


def _query(models: TableModels, budget: ReadBudget, **kwargs: Any) -> Iterator[dict[str, Any]]:
    client: Any = models.connection.client
    start: dict[str, Any] | None = None
    while True:
        page = client.query(TableName=models.table_name, Limit=budget.left, **kwargs,
                            **({"ExclusiveStartKey": start} if start else {}))
        budget.requests += 1
        for item in page.get("Items", []):
            budget.take(item)
            yield item
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def _between(models: TableModels, budget: ReadBudget, pk: str, low: str, high: str) -> Iterator[dict[str, Any]]:
    return _query(models, budget, KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                  ExpressionAttributeValues={":pk": {"S": pk}, ":low": {"S": low}, ":high": {"S": high}})


def container_of(sk: str) -> str | None:
    """The container of a container-scope item's sort key (``USAGE#K#<n>:<container>#…``)."""
    rest = sk.removeprefix(f"{keys.USAGE}K#")
    length, _, tail = rest.partition(":")
    return tail[: int(length)] if length.isdigit() else None


class Days:
    """Usage days being collected, by (day, container)."""

    def __init__(self, first: date, last: date) -> None:
        self.first, self.last = first, last
        self.days: dict[tuple[date, str | None], UsageDay] = {}

    def day(self, day: date, container_id: str | None) -> UsageDay | None:
        if not self.first <= day <= self.last:
            return None
        return self.days.setdefault((day, container_id), UsageDay(day, container_id))

    def add_item(self, item: dict[str, Any], container_id: str | None) -> None:
        """A small item: ``h<HH>`` of a day, or ``d<DD>`` of a month."""
        cell = parse_cell(item.get("c", {}).get("S", ""))
        if cell is None:
            return
        sk = item["sk"]["S"]
        grain, period = sk.split("#")[-3], sk.split("#")[-2]
        for name, value in item.items():
            if "N" not in value or len(name) != 3 or not name[1:].isdigit():
                continue
            if grain == HOUR_GRAIN and name[0] == "h":
                if (usage_day := self.day(date.fromisoformat(period), container_id)) is not None:
                    usage_day.add(int(name[1:]), cell, int(value["N"]))
            elif name[0] == "d":
                day = date(int(period[:4]), int(period[5:7]), int(name[1:]))
                if (usage_day := self.day(day, container_id)) is not None:
                    usage_day.add_whole(cell, int(value["N"]))

    def add_legacy(self, item: dict[str, Any]) -> None:
        day, container_id = keys.usage_day_of(item["sk"]["S"])
        for name, value in item.items():
            parsed = parse_attribute(name)
            if parsed and "N" in value and (usage_day := self.day(day, container_id)) is not None:
                usage_day.add(parsed[0], parsed[1], int(value["N"]))

    def result(self) -> list[UsageDay]:
        return [d for _, d in sorted(self.days.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]


def read_days(
    models: TableModels, account_id: str, first: date, last: date, hourly: bool, budget: ReadBudget,
    container_id: str | None = None, by_container: bool = False, spills: bool = True, legacy: bool = True,
) -> list[UsageDay]:
    """The usage days of [first, last] of the account, of ``container_id``, or (``by_container``) of
    every container: by the hour (``hourly``: the days' items) or by the day (the months' items).
    ``spills`` and ``legacy`` (the balance's flags) say whether spill items or the previous design's
    items may exist: one more query each when they may."""
    grain = HOUR_GRAIN if hourly else "M"
    low, high = period_of(grain, first), period_of(grain, last) + "#~"
    pk = keys.account_pk(account_id)
    days = Days(first, last)
    if by_container and container_id is None:
        items = _query(models, budget, IndexName="gsi1",
                       KeyConditionExpression="gsi1pk = :pk AND gsi1sk BETWEEN :low AND :high",
                       ExpressionAttributeValues={":pk": {"S": index_pk(account_id, grain)},
                                                  ":low": {"S": low}, ":high": {"S": high}})
        for item in items:
            days.add_item(item, container_of(item["sk"]["S"]))
    else:
        scope = "A" if container_id is None else f"K#{len(container_id)}:{container_id}"
        prefix = f"{keys.USAGE}{scope}#{grain}#"
        for item in _between(models, budget, pk, prefix + low, prefix + high):
            days.add_item(item, container_id)
    spilled = _between(models, budget, pk, f"{keys.USAGE}E#{first.isoformat()}", f"{keys.USAGE}E#{last.isoformat()}#~")
    for item in spilled if spills else ():
        day = date.fromisoformat(item["sk"]["S"].split("#")[2])
        for (cid, _, hour, cell), amount in spill_contributions(day, item["body"]["S"]).items():
            wanted = cid is not None if by_container and container_id is None else cid == container_id
            if wanted and (usage_day := days.day(day, cid)) is not None:
                usage_day.add(hour, cell, amount)
    if legacy:
        _legacy(models, budget, pk, first, last, container_id, by_container, days)
    return days.result()


def _legacy(
    models: TableModels, budget: ReadBudget, pk: str, first: date, last: date, container_id: str | None,
    by_container: bool, days: Days,
) -> None:
    """The first design's day items not migrated yet (``python -m billing.store.migration --usage``)."""
    if container_id is not None:
        low, high = keys.container_usage_day_sk(container_id, first), keys.container_usage_day_sk(container_id, last)
    elif by_container:
        low, high = f"{keys.USAGE}C#", f"{keys.USAGE}C#~"
    else:
        low, high = keys.usage_day_sk(first), keys.usage_day_sk(last)
    for item in _between(models, budget, pk, low, high):
        days.add_legacy(item)
