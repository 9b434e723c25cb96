"""Usage aggregates on DynamoDB: one item per day for the account (``USAGE#D#<day>``) and per day and
container (``USAGE#C#<container>#<day>``), added to in the settlement's transaction.

Each item has one number attribute per hour and cell, ``h<HH>|<resource>|<tier>|<model>|<feature>|
<labels>`` (components percent-encoded), holding the µcr charged less corrected in that hour for
that attribution. A range of days is one ``Query`` per scope (the account, or one container),
whatever the number of ledger entries behind it. :func:`rebuild` writes them afresh from the ledger.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any
from urllib.parse import quote, unquote

from pynamodb.expressions.operand import Path, Value
from pynamodb.models import Model

from billing.domain.model import LedgerEntry
from billing.domain.usage import Cell, UsageDay, cell_of, charged, days_of
from billing.store import keys
from billing.store.tables import TableModels


def attribute(hour: int, cell: Cell) -> str:
    labels = ";".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in cell.labels)
    parts = (cell.resource, cell.tier, cell.model, cell.feature)
    return f"h{hour:02d}|" + "|".join(quote(p, safe="") for p in parts) + "|" + labels


def parse_attribute(name: str) -> tuple[int, Cell] | None:
    if not name.startswith("h") or name.count("|") != 5:
        return None
    hour, resource, tier, model, feature, labels = name.split("|")
    pairs = tuple(
        (unquote(k), unquote(v)) for k, _, v in (pair.partition("=") for pair in labels.split(";") if pair)
    )
    return int(hour[1:]), Cell(unquote(resource), unquote(tier), unquote(model), unquote(feature), pairs)


def updates(
    models: TableModels, account_id: str, entries: Iterable[LedgerEntry]
) -> Iterator[tuple[Model, list[Any]]]:
    """The additions of ``entries`` to the day items: (item, actions) for a transaction's update."""
    deltas: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for at, line, amount in charged(entries):
        name = attribute(at.hour, cell_of(line))
        deltas[keys.usage_day_sk(at.date())][name] += amount
        if line.container_id:
            deltas[keys.container_usage_day_sk(line.container_id, at.date())][name] += amount
    pk = keys.account_pk(account_id)
    for sk, delta in sorted(deltas.items()):
        actions = [Path([name]).add(Value(value)) for name, value in sorted(delta.items()) if value]
        if actions:
            yield models.Usage(pk, sk), actions


def member_spending(
    models: TableModels, account_id: str, entries: Iterable[LedgerEntry]
) -> Iterator[tuple[Model, list[Any]]]:
    """What ``entries`` add to each member's month counter (``SPENT#<month>#<user>``: µcr of the
    user's lines, deductions less corrections): (item, actions) for the settlement's transaction."""
    deltas: dict[str, int] = defaultdict(int)
    for _at, line, amount in charged(entries):
        if line.user_id:
            deltas[keys.spent_sk(line.month, line.user_id)] += amount
    pk = keys.account_pk(account_id)
    for sk, delta in sorted(deltas.items()):
        if delta:
            yield models.Usage(pk, sk), [Path(["spent"]).add(Value(delta))]


def month_spending(models: TableModels, account_id: str, month: str) -> dict[str, int]:
    """Each user's µcr deducted in ``month`` (one Query of the month's counters: O(members))."""
    prefix = keys.spent_prefix(month)
    items = _query(models, keys.account_pk(account_id), prefix, prefix + "\x7f")  # user ids are printable ASCII
    return {item["sk"]["S"].removeprefix(prefix): int(item.get("spent", {}).get("N", "0")) for item in items}


def _days(items: Iterable[dict[str, Any]], container_id: str | None) -> list[UsageDay]:
    days = []
    for item in items:
        day = UsageDay(date.fromisoformat(item["sk"]["S"][-10:]), container_id)
        for name, value in item.items():
            parsed = parse_attribute(name)
            if parsed and "N" in value:
                day.add(parsed[0], parsed[1], int(value["N"]))
        days.append(day)
    return days


def _query(models: TableModels, pk: str, low: str, high: str) -> Iterator[dict[str, Any]]:
    client: Any = models.connection.client
    start: dict[str, Any] | None = None
    while True:
        kwargs: dict[str, Any] = {
            "TableName": models.table_name,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :low AND :high",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":low": {"S": low}, ":high": {"S": high}},
        }
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = client.query(**kwargs)
        yield from page.get("Items", [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def account_days(models: TableModels, account_id: str, first: date, last: date) -> list[UsageDay]:
    """The account's usage days in [first, last] (one Query, paged by DynamoDB)."""
    items = _query(models, keys.account_pk(account_id), keys.usage_day_sk(first), keys.usage_day_sk(last))
    return _days(items, None)


def container_days(
    models: TableModels, account_id: str, container_id: str, first: date, last: date
) -> list[UsageDay]:
    """One container's usage days in [first, last]."""
    low, high = keys.container_usage_day_sk(container_id, first), keys.container_usage_day_sk(container_id, last)
    return _days(_query(models, keys.account_pk(account_id), low, high), container_id)


def rebuild(models: TableModels, account_id: str, entries: Iterable[LedgerEntry]) -> int:
    """Replace the account's usage items by what its ledger entries give (the migration from month
    items, and the reconciliation's repair); returns how many day items there are now."""
    client: Any = models.connection.client
    pk = keys.account_pk(account_id)
    for item in _query(models, pk, keys.USAGE, keys.USAGE_END):
        client.delete_item(TableName=models.table_name, Key={"pk": item["pk"], "sk": item["sk"]})
    days = days_of(entries)
    for (day, container_id), usage in days.items():
        sk = keys.container_usage_day_sk(container_id, day) if container_id else keys.usage_day_sk(day)
        cells = {
            attribute(hour, cell): {"N": str(amount)}
            for hour, hour_cells in usage.hours.items()
            for cell, amount in hour_cells.items()
        }
        client.put_item(TableName=models.table_name, Item={"pk": {"S": pk}, "sk": {"S": sk}, **cells})
    return len(days)
