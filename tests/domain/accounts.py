"""An in-memory account driven through the domain's event functions, as the ledger would drive it
(one Book per event over a copy of the balance, containers read on demand), without any storage."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from billing.domain import controls, rollover, settle
from billing.domain.account import Account as Loaded
from billing.domain.account import Containers
from billing.domain.catalog import PriceCatalog, load_catalog
from billing.domain.clock import parse_time
from billing.domain.model import AccountState, Container, LedgerEntry, OutboundEvent, clone
from billing.domain.posting import Book

C = 1_000_000  # µcr per credit
GIB = 2**30


def t(text: str) -> datetime:
    return parse_time(text)


class Account:
    """One account's state, changed event by event; keeps every entry and outbound event."""

    _ids = itertools.count(1)

    def __init__(self, at: str, plan: str = "free", catalog: PriceCatalog | None = None) -> None:
        self.catalog = catalog or load_catalog()
        book = rollover.open_account("acct", "a@example.com", plan, t(at), self.catalog, "open")  # type: ignore[arg-type]
        self.state: AccountState = book.state
        self.containers: dict[str, Container] = {}
        self.entries: list[LedgerEntry] = list(book.entries)
        self.outbox: list[OutboundEvent] = list(book.outbox)

    def _load(self, ids: list[str]) -> dict[str, Container]:
        return {cid: clone(self.containers[cid]) for cid in ids if cid in self.containers}

    def book(self, event_id: str | None = None) -> Book:
        account = Loaded(clone(self.state), Containers(loader=self._load))
        return Book(account, self.catalog, event_id or f"ev-{next(self._ids)}")

    def commit(self, book: Book) -> Book:
        """What the ledger does: the aggregates brought in step, the forecast, then keep it all."""
        for c in controls.close(book):
            self.containers[c.container_id] = c
        self.state = book.state
        self.entries += book.entries
        self.outbox += book.outbox
        return book

    def do(self, rule: Any, at: str, *args: Any, **kwargs: Any) -> Book:
        """Apply one domain function (``settle.container_started``...) at ``at``."""
        book = self.book()
        rule(book, t(at), *args, **kwargs)
        return self.commit(book)

    def start(self, at: str, container: str, run: str, tier: str, code_supporter: bool = False) -> Book:
        return self.do(settle.container_started, at, container, run, tier, code_supporter)

    def stop(self, at: str, container: str, run: str, traffic: int = 0) -> Book:
        return self.do(settle.container_stopped, at, container, run, traffic)

    def create(self, at: str, container: str, gb: int) -> Book:
        return self.do(settle.container_created, at, container, gb)

    def of_type(self, kind: str) -> list[LedgerEntry]:
        return [e for e in self.entries if e.type == kind]


def assert_conserved(state: AccountState) -> None:
    totals = state.totals
    available = sum(lot.remaining for lot in state.lots if not lot.closed)
    assert totals.granted == totals.spent + totals.expired + totals.refunded + available, totals
    assert totals.charged == totals.spent + state.debt, totals
