"""Read queries of the usage page and the account API (nothing here writes).

Paging keys are plain dicts of the table's key attributes; :class:`billing.store.cursors.CursorCodec`
turns them into signed cursors and back, and :func:`check_page_key` refuses a key that does not
belong to the query it is offered to.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from billing.domain.clock import format_time
from billing.domain.errors import InvalidInput
from billing.domain.model import Container, LedgerEntry, from_json
from billing.domain.roster import Activity
from billing.store import keys
from billing.store.tables import TableModels

PageKey = dict[str, str]


def check_page_key(key: PageKey, names: set[str], account_id: str, prefix: str = keys.LEDGER) -> None:
    """A paging key must be one of this account's ledger (or ``prefix``) keys (InvalidInput otherwise)."""
    if set(key) != names or not all(isinstance(v, str) for v in key.values()):
        raise InvalidInput("invalid cursor")
    if key["pk"] != keys.account_pk(account_id) or not key["sk"].startswith(prefix):
        raise InvalidInput("invalid cursor")


def _dynamo_key(key: PageKey | None) -> dict[str, dict[str, str]] | None:
    return {name: {"S": value} for name, value in key.items()} if key else None


def ledger_page(
    models: TableModels, account_id: str, start: datetime, end: datetime | None, limit: int, after: PageKey | None
) -> tuple[list[LedgerEntry], PageKey | None]:
    """Ledger entries from ``start`` to ``end`` (inclusive; None: the end of history), oldest first."""
    lo = keys.ledger_bound(start)
    hi = keys.ledger_bound(end, end=True) if end else keys.LEDGER_END
    if after is not None:
        check_page_key(after, {"pk", "sk"}, account_id)
        if not lo <= after["sk"] <= hi:
            raise InvalidInput("invalid cursor: it belongs to another range")
    entry = models.Entry
    items = list(
        entry.query(
            keys.account_pk(account_id), entry.sk.between(lo, hi), limit=limit + 1,
            page_size=min(limit + 1, 1000), last_evaluated_key=_dynamo_key(after),
        )
    )
    page = items[:limit]
    next_key = {"pk": page[-1].pk, "sk": page[-1].sk} if len(items) > limit else None
    return [from_json(i.body, LedgerEntry) for i in page], next_key


def activity_page(
    models: TableModels, account_id: str, start: datetime, end: datetime | None, limit: int, after: PageKey | None
) -> tuple[list[Activity], PageKey | None]:
    """The account's activity from ``start`` to ``end`` (inclusive; None: up to now), newest first."""
    lo = keys.activity_bound(start)
    hi = keys.activity_bound(end, end=True) if end else keys.ACTIVITY_END
    if after is not None:
        check_page_key(after, {"pk", "sk"}, account_id, keys.ACTIVITY)
        if not lo <= after["sk"] <= hi:
            raise InvalidInput("invalid cursor: it belongs to another range")
    item = models.Item
    items = list(
        item.query(
            keys.account_pk(account_id), item.sk.between(lo, hi), limit=limit + 1, scan_index_forward=False,
            page_size=min(limit + 1, 1000), last_evaluated_key=_dynamo_key(after),
        )
    )
    page = items[:limit]
    next_key = {"pk": page[-1].pk, "sk": page[-1].sk} if len(items) > limit else None
    return [from_json(i.body, Activity) for i in page], next_key


def deductions_of_day(models: TableModels, account_id: str, day: str) -> Iterator[LedgerEntry]:
    """The deduction entries of one UTC day (``YYYY-MM-DD``), oldest first."""
    entry = models.Entry
    lo, hi = f"{keys.LEDGER}{day}T00:00:00Z", f"{keys.LEDGER}{day}T23:59:59Z~"
    for item in entry.query(keys.account_pk(account_id), entry.sk.between(lo, hi)):
        if item.entry_type == "deduction":
            yield from_json(item.body, LedgerEntry)


def ai_page(
    models: TableModels, account_id: str, limit: int, after: PageKey | None
) -> tuple[list[LedgerEntry], PageKey | None]:
    """The account's AI entries, newest first."""
    index_pk = keys.ai_index_pk(account_id)
    if after is not None:
        check_page_key(after, {"pk", "sk", "gsi1pk", "gsi1sk"}, account_id)
        if after["gsi1pk"] != index_pk or after["gsi1sk"] != after["sk"]:
            raise InvalidInput("invalid cursor")
    items = list(
        models.Entry.ai.query(
            index_pk, scan_index_forward=False, limit=limit + 1, page_size=limit + 1,
            last_evaluated_key=_dynamo_key(after),
        )
    )
    page = items[:limit]
    next_key = None
    if len(items) > limit:
        last = page[-1]
        next_key = {"pk": last.pk, "sk": last.sk, "gsi1pk": last.gsi1pk, "gsi1sk": last.gsi1sk}
    return [from_json(i.body, LedgerEntry) for i in page], next_key


def container_ids(models: TableModels, account_id: str) -> list[str]:
    """Every container of the account (its CONTAINER# items, paged by DynamoDB)."""
    account = models.Account
    items = account.query(keys.account_pk(account_id), account.sk.startswith(keys.CONTAINER), attributes_to_get=["sk"])
    return [str(item.sk).removeprefix(keys.CONTAINER) for item in items]


def purchase_bodies(models: TableModels, account_id: str) -> Iterator[str]:
    """The stored purchases of an account, newest first (JSON bodies)."""
    for item in models.Item.by_gsi1.query(keys.purchases_index_pk(account_id), scan_index_forward=False):
        yield str(item.body)


def _page_key(key: Any) -> dict[str, str] | None:
    """A LastEvaluatedKey as a plain dict of strings (it travels in a queue message)."""
    return {name: value["S"] for name, value in key.items()} if key else None


def active_accounts(
    models: TableModels, shard: str, limit: int, after: dict[str, str] | None
) -> tuple[list[str], dict[str, str] | None]:
    """One page of the accounts with containers in a shard of the ``active`` index."""
    results = models.Account.active.query(shard, limit=limit, page_size=limit, last_evaluated_key=_dynamo_key(after))
    accounts = [keys.account_of(item.pk) for item in results]
    return accounts, _page_key(results.last_evaluated_key)


def due_accounts(
    models: TableModels, shard: str, at: datetime, limit: int, after: dict[str, str] | None
) -> tuple[list[str], dict[str, str] | None]:
    """One page of the accounts whose forecast check is due by ``at`` in a shard of the ``due`` index."""
    index = models.Account.due
    results = index.query(
        shard, models.Account.due_at <= format_time(at), limit=limit, page_size=limit,
        last_evaluated_key=_dynamo_key(after),
    )
    accounts = [keys.account_of(item.pk) for item in results]
    return accounts, _page_key(results.last_evaluated_key)


def accruing_containers(
    models: TableModels, account_id: str, limit: int, after: str | None, user_id: str | None = None
) -> tuple[list[str], str | None]:
    """Up to ``limit`` of the account's containers with open accruals, after container ``after``
    (a chunk of account-wide work), and where the next chunk starts (None: this was the last).
    With ``user_id``: only the containers where that member has a run running (a member limit)."""
    account = models.Account
    pk = keys.account_pk(account_id)
    start = {"pk": pk, "sk": keys.container_sk(after)} if after else None
    ids: list[str] = []
    results = account.query(
        pk, account.sk.startswith(keys.CONTAINER), consistent_read=True, page_size=200,
        last_evaluated_key=_dynamo_key(start),
    )
    for item in results:
        c = from_json(item.body, Container)
        if user_id is not None:
            if any(run.is_running and run.user_id == user_id for run in c.runs.values()):
                ids.append(c.container_id)
        elif not c.accrual.empty or c.runs:
            ids.append(c.container_id)
        if len(ids) == limit:
            return ids, c.container_id
    return ids, None


def accounts_behind(models: TableModels, account_ids: list[str], moment: datetime) -> list[str]:
    """Of these accounts, the ones whose balance has not been rolled up to ``moment`` yet (its clock,
    ``as_of``, is earlier): the month-close check. One BatchGetItem per 100 accounts."""
    from billing.domain.model import AccountState  # only the rare item without an as_of needs it

    bound = format_time(moment)
    behind: list[str] = []
    for start in range(0, len(account_ids), 100):
        wanted = [(keys.account_pk(a), keys.STATE) for a in account_ids[start : start + 100]]
        for item in models.Account.batch_get(wanted):
            as_of = item.as_of or format_time(from_json(item.body, AccountState).as_of)
            if as_of < bound:
                behind.append(keys.account_of(item.pk))
    return sorted(behind)
