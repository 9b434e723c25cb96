"""What a read shows: the account rolled to a moment in memory, never written.

The balance route sees the account as the next settlement would find it: month boundaries crossed
(what the containers accrued up to each boundary paid from that month's lots, then the month's lots
expired and the new month's lot granted), and the usage accrued since priced from the balance's
aggregates (:mod:`billing.domain.forecast`). It reads the balance item only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from billing.domain import forecast, lots, rollover
from billing.domain.catalog import PriceCatalog
from billing.domain.clock import SECOND, next_month_start
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
        """Usage accrued but not yet deducted (see :func:`billing.domain.forecast.accrued`)."""
        return forecast.accrued(self.state, self.catalog, self.at)

    @property
    def remaining(self) -> int:
        """Available balance less the usage accrued but not yet deducted (may be negative)."""
        return self.available - self.accrued

    @property
    def hourly_burn(self) -> int:
        return forecast.hourly_burn(self.state, self.catalog, self.at)


def project(state: AccountState, catalog: PriceCatalog, now: datetime) -> Projection:
    """A copy of the account rolled to ``now`` (or kept at its own clock when that is later)."""
    book = Book(clone(state), catalog, "projection")
    s = book.state
    while now >= next_month_start(s.as_of):
        boundary = next_month_start(s.as_of)
        month_end = boundary - SECOND
        lots.pay(s, forecast.accrued(s, catalog, boundary), month_end, month_end)
        s.accrual = forecast.settled_at(s.accrual, boundary)
        rollover.expire(book, boundary)
        rollover.grant_monthly(book, boundary)
        s.as_of = boundary
    rollover.expire(book, now)
    return Projection(s, catalog, max(now, s.as_of))
