"""Migration of accounts stored in one item (schema 1: the containers inside the state) to a small
balance item plus one item per container (schema 2).

Idempotent and resumable: an account already migrated is left alone, and a migration interrupted
half-way is simply done again (the container items it wrote are written again with the same
content; the balance is replaced last, on the condition that it is still the version read).

It runs by itself when a change first reads an account of schema 1, and as an operator command for
the whole table (README, "Operating it")::

    python -m billing.store.migration --table billing [--endpoint-url http://127.0.0.1:8000] [--fold-usage] [--usage]

``--fold-usage`` moves every account's usage day items of the previous design (``USAGE#D#``,
``USAGE#C#``, one growing item per day) and any spill item into the small items of
:mod:`billing.store.usage`, a chunk per transaction (resumable, idempotent, safe beside live
settlements: :mod:`billing.store.usage_fold`). ``--usage`` instead rebuilds every account's usage
aggregates from its ledger (idempotent: each run writes them afresh; not beside live settlements).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from msgspec import field
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from billing.domain import forecast
from billing.domain.account import Containers
from billing.domain.catalog import PriceCatalog, load_catalog
from billing.domain.clock import format_time
from billing.domain.model import SCHEMA, AccountState, Container, LedgerEntry, from_json, to_json
from billing.store import keys, usage_fold
from billing.store.tables import TableModels, table_models

IN_ONE_TRANSACTION = 90  # containers written with the balance; more are written before it


class LegacyAccountState(AccountState, kw_only=True):
    """Schema 1: the account's containers inside its state item."""

    containers: dict[str, Container] = field(default_factory=dict)


def migrate_account(models: TableModels, catalog: PriceCatalog, account_id: str) -> bool:
    """Split one account into a balance item and container items; False if there was nothing to do."""
    pk = keys.account_pk(account_id)
    try:
        item = models.Account.get(pk, keys.STATE, consistent_read=True)
    except DoesNotExist:
        return False
    legacy = from_json(item.body, LegacyAccountState)
    if legacy.schema >= SCHEMA:
        return False
    state = from_json(to_json(legacy), AccountState)  # the same fields, without the containers
    state.schema = SCHEMA
    state.containers_count, state.container_ids = 0, []
    containers = Containers(loaded=dict(legacy.containers))
    containers.mark_unsaved()  # every container is new as an item of its own
    written = containers.sync(state, catalog, state.as_of)
    state.next_check_at = forecast.next_check(state, catalog)
    version = int(item.version)
    state.version = version + 1
    items = [models.Account(pk, keys.container_sk(c.container_id), body=to_json(c)) for c in written]
    late = items[-IN_ONE_TRANSACTION:]
    early = items[: len(items) - len(late)]
    with models.Account.batch_write() as batch:
        for container_item in early:
            batch.save(container_item)
    due = format_time(state.next_check_at) if state.next_check_at else None
    balance = models.Account(
        pk, keys.STATE, body=to_json(state), version=state.version, as_of=format_time(state.as_of),
        active_shard=keys.active_shard(account_id) if state.containers_count else None,
        due_shard=keys.due_shard(account_id) if due else None, due_at=due,
    )
    try:
        with TransactWrite(connection=models.connection) as tx:
            tx.save(balance, condition=models.Account.version == version)
            for container_item in late:
                tx.save(container_item)
    except (TransactWriteError, PutError):
        return False  # someone else migrated (or changed) it first: the caller reads it again
    return True


def rebuild_usage(models: TableModels, account_id: str) -> int:
    """The account's usage aggregates written afresh from its whole ledger; returns the day items."""
    entry = models.Entry
    items = entry.query(keys.account_pk(account_id), entry.sk.startswith(keys.LEDGER))
    return usage_fold.rebuild(models, account_id, (from_json(item.body, LedgerEntry) for item in items))


def all_accounts(models: TableModels) -> Iterator[str]:
    for item in models.Account.scan(models.Account.sk == keys.STATE):
        yield keys.account_of(item.pk)


def legacy_accounts(models: TableModels) -> Iterator[str]:
    """Every account whose balance item is still of schema 1 (a scan of the STATE items)."""
    condition = (models.Account.sk == keys.STATE) & models.Account.body.startswith('{"account_id"')
    for item in models.Account.scan(condition):
        if from_json(item.body, AccountState).schema < SCHEMA:
            yield keys.account_of(item.pk)


def main(argv: list[str] | None = None) -> int:
    import argparse  # the command line only: every function loads this module (~3 ms of a cold start)

    parser = argparse.ArgumentParser(prog="python -m billing.store.migration", description=__doc__)
    parser.add_argument("--table", required=True)
    parser.add_argument("--endpoint-url", help="DynamoDB endpoint (DynamoDB Local); default: the SDK's")
    parser.add_argument("--usage", action="store_true", help="also rebuild every account's usage aggregates")
    parser.add_argument("--fold-usage", action="store_true",
                        help="move the previous design's usage day items (and spills) into the small items")
    args = parser.parse_args(argv)
    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = args.endpoint_url
    models = table_models(args.table)
    catalog = load_catalog()
    migrated = seen = 0
    for account_id in legacy_accounts(models):
        seen += 1
        migrated += migrate_account(models, catalog, account_id)
    print(f"accounts of schema 1 found: {seen}, migrated now: {migrated}")
    if args.fold_usage:
        moved = [usage_fold.fold_account(models, account_id) for account_id in all_accounts(models)]
        print(f"usage folded for {len(moved)} accounts ({sum(moved)} cells moved)")
    if args.usage:
        rebuilt = [rebuild_usage(models, account_id) for account_id in all_accounts(models)]
        print(f"usage aggregates rebuilt for {len(rebuilt)} accounts ({sum(rebuilt)} day items)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
