"""Records other than the account's own items (purchases, coupons): a JSON body and a version.

A record is read with its version and saved in an account's change on the condition that it is
still that version (absent when it was not read): a concurrent change fails the transaction, which
re-reads everything and decides again.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pynamodb.exceptions import DoesNotExist

from billing.domain.model import Record, from_json, to_json
from billing.store.ledger import Write
from billing.store.tables import TableModels

R = TypeVar("R", bound=Record)


def load_record(models: TableModels, pk: str, sk: str, record: type[R]) -> tuple[R, int] | None:
    try:
        item = models.Item.get(pk, sk, consistent_read=True)
    except DoesNotExist:
        return None
    return from_json(item.body, record), int(item.version)


def record_write(
    models: TableModels, pk: str, sk: str, record: Record, read_version: int | None, **attributes: Any
) -> Write:
    """The record saved with the next version, on condition that it is still the version read."""
    item = models.Item(pk, sk, body=to_json(record), version=(read_version or 0) + 1, **attributes)
    condition = models.Item.pk.does_not_exist() if read_version is None else models.Item.version == read_version
    return item, condition
