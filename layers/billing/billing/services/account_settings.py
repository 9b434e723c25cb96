"""What a user sets on the account: the credit-mail switch."""

from __future__ import annotations

import uuid
from typing import Any

from billing.domain import settle
from billing.domain.account import Account
from billing.domain.posting import Book
from billing.observability import logger
from billing.store import keys
from billing.store.ledger import Change, Ledger


def set_credit_mail(ledger: Ledger, account_id: str, enabled: bool) -> dict[str, Any]:
    event_id = keys.settings_event_id(uuid.uuid4().hex)

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, event_id)
        book.state.credit_mail = enabled
        return Change(book)

    ledger.apply(account_id, event_id, action)
    logger.info("settings changed", account_id=account_id, credit_mail=enabled)
    return {"credit_mail": enabled}
