"""Records other than the account's own items (purchases, coupons): a JSON body and a version.

A record is read with its version and saved in an account's change on the condition that it is
still that version (absent when it was not read): a concurrent change fails the transaction, which
re-reads everything and decides again.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pynamodb.exceptions import DoesNotExist

from billing.domain.clock import format_time
from billing.domain.model import PaymentReference, Purchase, Record, from_json, to_json
from billing.store import keys
from billing.store.tables import TableModels

R = TypeVar("R", bound=Record)
Write = tuple[Any, Any]  # an item and the condition it is saved with


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


def purchase_write(models: TableModels, p: Purchase, read_version: int | None) -> Write:
    """A purchase, indexed for its account's purchase history (GSI1)."""
    return record_write(
        models, keys.purchase_pk(p.purchase_id), keys.PURCHASE, p, read_version,
        gsi1pk=keys.purchases_index_pk(p.account_id), gsi1sk=format_time(p.created_at) + "#" + p.purchase_id,
    )


def payment_reference_write(models: TableModels, p: Purchase) -> Write:
    """The purchase a PaymentIntent pays, found by the intent's id (written once, never changed)."""
    assert p.payment_intent_id is not None
    ref = PaymentReference(purchase_id=p.purchase_id, account_id=p.account_id)
    return record_write(models, keys.payment_reference_pk(p.payment_intent_id), keys.PURCHASE, ref, None)


def load_payment_reference(models: TableModels, payment_intent_id: str) -> PaymentReference | None:
    found = load_record(models, keys.payment_reference_pk(payment_intent_id), keys.PURCHASE, PaymentReference)
    return found[0] if found else None
