"""What a read shows: the account rolled to a moment in memory, never written.

The balance route and the low-credit mail see the account exactly as the next settlement would find
it: month boundaries crossed, lots expired, the new month's lot granted, and the usage accrued since
the last deduction priced as that settlement would price it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from billing.domain import accrual, pricing, rollover
from billing.domain.catalog import PriceCatalog
from billing.domain.model import AccountState, clone
from billing.domain.posting import Book


@dataclass(frozen=True)
class Projection:
    """The account as of ``at`` (in memory only)."""

    state: AccountState
    catalog: PriceCatalog
    at: datetime

    @property
    def available(self) -> int:
        return self.state.available(self.at)

    @property
    def accrued(self) -> int:
        """Usage accrued but not yet deducted, priced as a settlement at ``at`` would price it."""
        probe = Book(clone(self.state), self.catalog, "probe")
        accrual.settle_everything(probe, self.at)
        return probe.pending

    @property
    def remaining(self) -> int:
        """Available balance less the usage accrued but not yet deducted (may be negative)."""
        return self.available - self.accrued

    @property
    def hourly_burn(self) -> int:
        return pricing.hourly_burn(self.catalog, self.state, self.at)


def project(state: AccountState, catalog: PriceCatalog, now: datetime) -> Projection:
    """A copy of the account rolled to ``now`` (or kept at its own clock when that is later)."""
    book = Book(clone(state), catalog, "projection")
    rollover.advance_if_current(book, now)
    return Projection(book.state, catalog, max(now, book.state.as_of))
