"""Usage aggregates on DynamoDB: small items, one per scope, period and attribution cell, whose size
never grows with the day's traffic, labels, containers or members (README, "Usage aggregates").

Items of the partition ``ACCOUNT#<id>``; ``c`` holds the cell (:func:`cell_text`), the key its hash:

=============================================  ==============================================
``USAGE#A#D#<day>#<cell hash>``                the account's day: µcr per hour, ``h00``–``h23``
``USAGE#A#M#<month>#<cell hash>``              the account's month: µcr per day, ``d01``–``d31``
``USAGE#K#<n>:<container>#D#<day>#<hash>``     a container's day (GSI1 ``…#USAGE#D``, ``<day>#…``)
``USAGE#K#<n>:<container>#M#<month>#<hash>``   a container's month (GSI1 ``…#USAGE#M``, ``<month>#…``)
``USAGE#E#<day>#<event hash>``                 what a settlement added that its transaction had no room for
``USAGE#D#<day>``, ``USAGE#C#<container>#<day>``  the first design's day items, until migrated
=============================================  ==============================================

A settlement adds (``ADD``, atomic) to the day and month item of each cell it charged, for the account
and for the container, in its own transaction: 4 small items a cell, whatever the account's size. Reads
are in :mod:`billing.store.usage_reads`; the migration of the first design's items in
:mod:`billing.store.usage_fold`.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote, unquote

from pynamodb.expressions.operand import Path, Value
from pynamodb.models import Model

from billing.domain.model import LedgerEntry
from billing.domain.usage import Cell, cell_of, charged
from billing.store import keys
from billing.store.tables import TableModels

HOUR_GRAIN, MONTH_GRAIN = "D", "M"  # a day's hours, a month's days
# A contribution: (container or None for the account, deduction time's day, hour, cell) -> µcr.
Contributions = dict[tuple[str | None, date, int, Cell], int]


def cell_text(cell: Cell) -> str:
    """``resource|tier|model|feature|labels|user``, each part percent-encoded (labels ``k=v;k=v``)."""
    labels = ";".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in cell.labels)
    parts = (cell.resource, cell.tier, cell.model, cell.feature)
    return "|".join(quote(p, safe="") for p in parts) + "|" + labels + "|" + quote(cell.user, safe="")


def parse_cell(text: str) -> Cell | None:
    if text.count("|") != 5:
        return None
    resource, tier, model, feature, labels, user = text.split("|")
    pairs = tuple(
        (unquote(k), unquote(v)) for k, _, v in (pair.partition("=") for pair in labels.split(";") if pair)
    )
    return Cell(unquote(resource), unquote(tier), unquote(model), unquote(feature), pairs, unquote(user))


def attribute(hour: int, cell: Cell) -> str:
    """The first design's attribute name of an hour and cell (``h<HH>|…``, without the member)."""
    return f"h{hour:02d}|" + cell_text(cell).rpartition("|")[0]


def parse_attribute(name: str) -> tuple[int, Cell] | None:
    """An attribute of the first design's day items: (hour, cell)."""
    if not name.startswith("h") or name.count("|") != 5:
        return None
    hour, rest = name.split("|", 1)
    cell = parse_cell(rest + "|")
    return (int(hour[1:]), cell) if cell and hour[1:].isdigit() else None


def cell_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def scope_key(container_id: str | None) -> str:
    """``A`` for the account; ``K#<n>:<container>`` (length-prefixed: no id is a prefix of another's)."""
    return "A" if container_id is None else f"K#{len(container_id)}:{container_id}"


def period_of(grain: str, day: date) -> str:
    return day.isoformat() if grain == HOUR_GRAIN else day.isoformat()[:7]


def slot(grain: str, day: date, hour: int) -> str:
    """The number attribute of a contribution in an item of ``grain``: its hour, or its day."""
    return f"h{hour:02d}" if grain == HOUR_GRAIN else f"d{day.day:02d}"


def item_sk(container_id: str | None, grain: str, period: str, text: str) -> str:
    return f"{keys.USAGE}{scope_key(container_id)}#{grain}#{period}#{cell_hash(text)}"


def index_pk(account_id: str, grain: str) -> str:
    """GSI1's partition of every container's items of ``grain``: grouping by container is one query."""
    return f"{keys.account_pk(account_id)}#USAGE#{grain}"


def index_sk(container_id: str, period: str, text: str) -> str:
    return f"{period}#{len(container_id)}:{container_id}#{cell_hash(text)}"


def spill_sk(day: date, event_id: str) -> str:
    return f"{keys.USAGE}E#{day.isoformat()}#{hashlib.sha256(event_id.encode()).hexdigest()[:24]}"


def spill_name(container_id: str | None, hour: int, cell: Cell) -> str:
    return f"{quote(container_id or '', safe='')}|{hour:02d}|{cell_text(cell)}"


def parse_spill_name(name: str) -> tuple[str | None, int, Cell] | None:
    container, _, rest = name.partition("|")
    hour, _, text = rest.partition("|")
    cell = parse_cell(text)
    return (unquote(container) or None, int(hour), cell) if cell and hour.isdigit() else None


def contributions(entries: Iterable[LedgerEntry]) -> Contributions:
    """What ``entries`` add, by scope (the account, and the line's container), day, hour and cell."""
    out: Contributions = defaultdict(int)
    for at, line, amount in charged(entries):
        cell = cell_of(line)
        for container_id in {None, line.container_id}:
            out[(container_id, at.date(), at.hour, cell)] += amount
    return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class Target:
    """One small item a contribution adds to."""

    container_id: str | None
    grain: str
    period: str
    text: str


def targets(container_id: str | None, day: date, cell: Cell) -> tuple[Target, Target]:
    text = cell_text(cell)
    return (Target(container_id, HOUR_GRAIN, period_of(HOUR_GRAIN, day), text),
            Target(container_id, MONTH_GRAIN, period_of(MONTH_GRAIN, day), text))


def additions(
    models: TableModels, account_id: str, added: dict[Target, dict[str, int]]
) -> list[tuple[Model, list[Any]]]:
    """(item, actions) of an update per target: ``ADD`` to its slots, the cell's text (and, for a
    container, its GSI1 keys) set again, the same values every time."""
    pk = keys.account_pk(account_id)
    out: list[tuple[Model, list[Any]]] = []
    for t, slots in sorted(added.items(), key=lambda kv: (kv[0].container_id or "", kv[0].grain, kv[0].period,
                                                          kv[0].text)):
        actions: list[Any] = [Path([name]).add(Value(value)) for name, value in sorted(slots.items()) if value]
        if not actions:
            continue
        actions.append(Path(["c"]).set(Value({"S": t.text})))
        if t.container_id is not None:
            actions.append(Path(["gsi1pk"]).set(Value({"S": index_pk(account_id, t.grain)})))
            actions.append(Path(["gsi1sk"]).set(Value({"S": index_sk(t.container_id, t.period, t.text)})))
        out.append((models.Usage(pk, item_sk(t.container_id, t.grain, t.period, t.text)), actions))
    return out


@dataclass
class UsageWrites:
    """A settlement's usage writes: updates of small items, and (rarely) spill items to put."""

    updates: list[tuple[Model, list[Any]]]
    spills: list[Model]
    spill_days: list[str]

    def __len__(self) -> int:
        return len(self.updates) + len(self.spills)


def plan(
    contributed: Contributions, room: int
) -> tuple[dict[Target, dict[str, int]], dict[date, dict[str, int]]]:
    """Which contributions go to their small items (at most ``room`` items with the spills, the
    account's first) and which, past it, to one spill item a day. Every µcr goes to exactly one."""
    order = sorted(contributed.items(), key=lambda kv: (kv[0][0] is not None, kv[0][0] or "", kv[0][1], kv[0][2],
                                                        cell_text(kv[0][3])))
    wanted = {t for (c, day, _, cell) in contributed for t in targets(c, day, cell)}
    # When everything fits, nothing spills; else one spill item a day is kept room for.
    budget = room if len(wanted) <= room else max(0, room - len({day for (_, day, _, _) in contributed}))
    added: dict[Target, dict[str, int]] = {}
    spilled: dict[date, dict[str, int]] = defaultdict(dict)
    for (container_id, day, hour, cell), amount in order:
        pair = targets(container_id, day, cell)
        if len(added) + sum(1 for t in pair if t not in added) <= budget:
            for t in pair:
                slots = added.setdefault(t, {})
                name = slot(t.grain, day, hour)
                slots[name] = slots.get(name, 0) + amount
        else:
            name = spill_name(container_id, hour, cell)
            spilled[day][name] = spilled[day].get(name, 0) + amount
    return added, dict(spilled)


def writes(
    models: TableModels, account_id: str, event_id: str, entries: Iterable[LedgerEntry], room: int
) -> UsageWrites:
    """The usage writes of a settlement's entries within ``room`` items of its transaction."""
    added, spilled = plan(contributions(entries), room)
    pk = keys.account_pk(account_id)
    spills: list[Model] = [models.Item(pk, spill_sk(day, event_id), body=json.dumps(cells, sort_keys=True))
              for day, cells in sorted(spilled.items())]
    return UsageWrites(additions(models, account_id, added), spills, sorted(d.isoformat() for d in spilled))


def count(entries: Iterable[LedgerEntry]) -> int:
    """How many small items ``entries`` add to (before any spill)."""
    return len({t for (c, day, _, cell) in contributions(entries) for t in targets(c, day, cell)})


def spill_contributions(day: date, body: str) -> Contributions:
    out: Contributions = {}
    for name, amount in json.loads(body).items():
        parsed = parse_spill_name(name)
        if parsed:
            container_id, hour, cell = parsed
            out[(container_id, day, hour, cell)] = out.get((container_id, day, hour, cell), 0) + int(amount)
    return out


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
