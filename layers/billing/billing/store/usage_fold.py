"""Usage moved into the small items outside a settlement (:mod:`billing.store.usage`).

* :func:`fold_account` folds the first design's day items (``USAGE#D#``, ``USAGE#C#``) and the spill
  items (``USAGE#E#``) into the small items: a chunk per transaction, each chunk added with ``ADD`` and
  removed from its source in the same transaction. A fold interrupted anywhere is resumed by running it
  again, never adds twice, and runs beside live settlements (their ``ADD`` and the fold's commute).
* :func:`rebuild` writes an account's usage afresh from its ledger (the reconciliation's repair).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.operand import Path
from pynamodb.transactions import TransactWrite

from billing.domain.model import AccountState, LedgerEntry, from_json, to_json
from billing.observability import logger
from billing.store import keys
from billing.store.tables import TableModels
from billing.store.usage import (
    HOUR_GRAIN,
    Target,
    additions,
    contributions,
    index_pk,
    index_sk,
    item_sk,
    parse_attribute,
    parse_spill_name,
    slot,
    spill_contributions,
    targets,
)

FOLD_ITEMS = 96  # small items one fold transaction adds to (with its source item: within the 100 allowed)
Key = tuple[str | None, date, int, Any]  # (container, day, hour, cell)


def _chunks(parts: list[tuple[str, Key, int]]) -> Iterator[list[tuple[str, Key, int]]]:
    """The source's attributes in chunks whose contributions add to at most FOLD_ITEMS small items."""
    chunk: list[tuple[str, Key, int]] = []
    seen: set[Target] = set()
    for part in parts:
        container, day, _, cell = part[1]
        pair = set(targets(container, day, cell))
        if chunk and len(seen | pair) > FOLD_ITEMS:
            yield chunk
            chunk, seen = [], set()
        chunk.append(part)
        seen |= pair
    if chunk:
        yield chunk


def _added(chunk: list[tuple[str, Key, int]]) -> dict[Target, dict[str, int]]:
    added: dict[Target, dict[str, int]] = {}
    for _, (container, day, hour, cell), amount in chunk:
        for t in targets(container, day, cell):
            slots = added.setdefault(t, {})
            name = slot(t.grain, day, hour)
            slots[name] = slots.get(name, 0) + amount
    return added


def _fold_legacy(models: TableModels, account_id: str, item: dict[str, Any]) -> int:
    """Fold one first-design day item; returns the attributes moved."""
    pk, sk = item["pk"]["S"], item["sk"]["S"]
    day, container = keys.usage_day_of(sk)
    parts = []
    for name, value in sorted(item.items()):
        parsed = parse_attribute(name)
        if parsed and "N" in value:
            parts.append((name, (container, day, parsed[0], parsed[1]), int(value["N"])))
    moved = 0
    for chunk in _chunks(parts):
        source = models.Usage(pk, sk)
        condition: Condition | None = None
        for name, _, _ in chunk:
            exists = Path([name]).exists()
            condition = exists if condition is None else condition & exists
        try:
            with TransactWrite(connection=models.connection) as tx:
                for target, actions in additions(models, account_id, _added(chunk)):
                    tx.update(target, actions=actions)
                tx.update(source, actions=[Path([name]).remove() for name, _, _ in chunk], condition=condition)
        except TransactWriteError:
            return moved  # moved by a concurrent fold: the next run sees what is left
        moved += len(chunk)
    models.Usage(pk, sk).delete()  # only the keys are left (no code writes the first design's items any more)
    return moved


def _fold_spill(models: TableModels, account_id: str, item: dict[str, Any]) -> int:
    """Fold one spill item; its body shrinks a chunk at a time (versioned), then it is deleted."""
    pk, sk = item["pk"]["S"], item["sk"]["S"]
    day = date.fromisoformat(sk.split("#")[2])
    version = int(item.get("version", {}).get("N", "0"))
    body: dict[str, int] = json.loads(item["body"]["S"])
    parsed = spill_contributions(day, item["body"]["S"])
    names = sorted(body)
    parts = []
    for name in names:
        key = parse_spill_name(name)
        if key is not None:
            container, hour, cell = key
            parts.append((name, (container, day, hour, cell), parsed[(container, day, hour, cell)]))
    moved = 0
    record = models.Item
    for chunk in _chunks(parts):
        for name, _, _ in chunk:
            body.pop(name, None)
        try:
            with TransactWrite(connection=models.connection) as tx:
                for target, actions in additions(models, account_id, _added(chunk)):
                    tx.update(target, actions=actions)
                if body:
                    tx.update(record(pk, sk), actions=[record.body.set(json.dumps(body, sort_keys=True)),
                                                       record.version.set(version + 1)],
                              condition=record.version == version)
                else:
                    tx.delete(record(pk, sk), condition=record.version == version)
        except TransactWriteError:
            return moved
        version += 1
        moved += len(chunk)
    return moved


def _items(models: TableModels, pk: str, low: str, high: str) -> Iterator[dict[str, Any]]:
    client: Any = models.connection.client
    start: dict[str, Any] | None = None
    while True:
        page = client.query(TableName=models.table_name, ConsistentRead=True,
                            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
                            ExpressionAttributeValues={":pk": {"S": pk}, ":low": {"S": low}, ":high": {"S": high}},
                            **({"ExclusiveStartKey": start} if start else {}))
        yield from page.get("Items", [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def _legacy_items(models: TableModels, pk: str) -> Iterator[dict[str, Any]]:
    return _items(models, pk, f"{keys.USAGE}C#", f"{keys.USAGE}D#~")  # USAGE#C#… and USAGE#D#…


def _spill_items(models: TableModels, pk: str) -> Iterator[dict[str, Any]]:
    return _items(models, pk, f"{keys.USAGE}E#", f"{keys.USAGE}E#~")


def _clear_flags(models: TableModels, account_id: str, legacy: bool) -> bool:
    """Tell the balance that no spill (and, ``legacy``, no first-design item) is left, so reports stop
    looking for them: written only if nothing changed since they were seen gone (else the next fold)."""
    pk = keys.account_pk(account_id)
    account = models.Account
    for _ in range(3):
        try:
            item = account.get(pk, keys.STATE, consistent_read=True)
        except DoesNotExist:
            return False
        state = from_json(item.body, AccountState)
        if any(True for _ in _spill_items(models, pk)) or (legacy and any(True for _ in _legacy_items(models, pk))):
            return False
        if not state.usage_spills and not (legacy and state.usage_legacy):
            return True
        state.usage_spills = []
        state.usage_legacy = state.usage_legacy and not legacy
        state.version = int(item.version) + 1
        try:
            actions: list[Any] = [account.body.set(to_json(state)), account.version.set(state.version)]
            account(pk, keys.STATE).update(actions=actions, condition=account.version == int(item.version))
            return True
        except UpdateError:
            continue  # a change in between: read again
    return False


def fold_spills_now(models: TableModels, account_id: str) -> None:
    """Fold the spills a settlement just wrote (after its commit); a failure leaves them for the
    next settlement of the account or the operator's fold, and reports keep reading them meanwhile."""
    try:
        pk = keys.account_pk(account_id)
        for item in _spill_items(models, pk):
            _fold_spill(models, account_id, item)
        _clear_flags(models, account_id, legacy=False)
    except Exception:
        logger.warning("usage spill left for later", account_id=account_id, exc_info=True)


def fold_account(models: TableModels, account_id: str) -> int:
    """Fold the account's first-design items and spills into the small items, then clear the balance's
    flags; returns the cells moved."""
    pk = keys.account_pk(account_id)
    moved = 0
    for item in _legacy_items(models, pk):
        moved += _fold_legacy(models, account_id, item)
    for item in _spill_items(models, pk):
        moved += _fold_spill(models, account_id, item)
    _clear_flags(models, account_id, legacy=True)
    return moved


def _raw_item(account_id: str, target: Target, slots: dict[str, int]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": {"S": keys.account_pk(account_id)},
        "sk": {"S": item_sk(target.container_id, target.grain, target.period, target.text)},
        "c": {"S": target.text},
        **{name: {"N": str(value)} for name, value in slots.items() if value},
    }
    if target.container_id is not None:
        item["gsi1pk"] = {"S": index_pk(account_id, target.grain)}
        item["gsi1sk"] = {"S": index_sk(target.container_id, target.period, target.text)}
    return item


def rebuild(models: TableModels, account_id: str, entries: Iterable[LedgerEntry]) -> int:
    """Replace the account's usage items by what its ledger entries give; returns the day items
    (hour grain) written. Not for an account being settled meanwhile (an operator's repair)."""
    client: Any = models.connection.client
    pk = keys.account_pk(account_id)
    for item in list(_items(models, pk, keys.USAGE, keys.USAGE_END)):
        client.delete_item(TableName=models.table_name, Key={"pk": item["pk"], "sk": item["sk"]})
    added: dict[Target, dict[str, int]] = {}
    for (container, day, hour, cell), amount in contributions(entries).items():
        for t in targets(container, day, cell):
            slots = added.setdefault(t, {})
            name = slot(t.grain, day, hour)
            slots[name] = slots.get(name, 0) + amount
    for t, slots in added.items():
        if any(slots.values()):
            client.put_item(TableName=models.table_name, Item=_raw_item(account_id, t, slots))
    return sum(1 for t in added if t.grain == HOUR_GRAIN)
