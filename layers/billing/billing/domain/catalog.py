"""The price catalog: versioned by effective time, loaded from data (JSON), never written into logic.

Usage is priced with the version in effect when it happened; :meth:`PriceCatalog.split_points`
lets the engine cut an interval where a new version takes effect so each piece is priced by its own.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path

import msgspec
from msgspec import Struct

from billing.domain.amounts import micro_of_credits
from billing.domain.errors import UnknownPriceItem


class TierPrice(Struct, frozen=True, forbid_unknown_fields=True):
    credits_per_hour: Decimal
    membership_only: bool = False
    gpu: bool = False


class ModelPrice(Struct, frozen=True, forbid_unknown_fields=True):
    input: Decimal
    output: Decimal


class CatalogVersion(Struct, frozen=True, forbid_unknown_fields=True):
    version: str
    effective_at: datetime
    credit_price_usd: Decimal
    tiers: dict[str, TierPrice]
    code_supporter_credits_per_hour: Decimal
    storage_credits_per_gb_hour: Decimal
    free_storage_gb: dict[str, int]
    traffic_free_bytes_per_month: int
    traffic_credits_per_gb: Decimal
    ai_models: dict[str, ModelPrice]
    monthly_credits: dict[str, Decimal]
    check_in_credits: Decimal
    purchase_min_credits: int
    purchase_max_credits: int
    refund_window_days: int
    # The price of one credit in each sold currency (major units); USD falls back to credit_price_usd
    # (and an account's own agreed price), so catalogs written before currencies still load.
    credit_prices: dict[str, Decimal] = {}

    def __post_init__(self) -> None:
        if self.effective_at.utcoffset() is None or self.effective_at.utcoffset():
            raise ValueError("effective_at must be a UTC time (Z suffix)")

    def credit_price(self, currency: str, account_price_usd: str) -> Decimal:
        """What one credit costs in ``currency``: the account's agreed price in USD, the catalog's
        price in the others."""
        if currency == "USD":
            return Decimal(account_price_usd)
        try:
            return self.credit_prices[currency]
        except KeyError:
            raise UnknownPriceItem(f"credits are not sold in {currency}") from None

    def tier(self, name: str) -> TierPrice:
        try:
            return self.tiers[name]
        except KeyError:
            raise UnknownPriceItem(f"unknown container tier: {name}") from None

    def model(self, name: str) -> ModelPrice:
        try:
            return self.ai_models[name]
        except KeyError:
            raise UnknownPriceItem(f"unknown AI model: {name}") from None

    def code_supporter_rate(self, tier: str) -> Decimal:
        """Code Supporter costs nothing on GPU tiers."""
        return Decimal(0) if self.tier(tier).gpu else self.code_supporter_credits_per_hour

    def free_storage(self, plan: str) -> int:
        return self.free_storage_gb[plan]

    def monthly_micro(self, plan: str) -> int:
        return micro_of_credits(self.monthly_credits[plan])

    @property
    def check_in_micro(self) -> int:
        return micro_of_credits(self.check_in_credits)


class _CatalogFile(Struct):
    versions: list[CatalogVersion]


class PriceCatalog:
    """All catalog versions, oldest first."""

    def __init__(self, versions: list[CatalogVersion]) -> None:
        if not versions:
            raise ValueError("a price catalog needs at least one version")
        self.versions = sorted(versions, key=lambda v: v.effective_at)
        self._starts = [v.effective_at for v in self.versions]

    def at(self, moment: datetime) -> CatalogVersion:
        """The version in effect at ``moment`` (the first version also covers earlier times)."""
        index = bisect_right(self._starts, moment) - 1
        return self.versions[max(index, 0)]

    def effective_since(self, moment: datetime) -> datetime | None:
        """When the version in effect at ``moment`` took effect (None for the first version, which
        also covers earlier times)."""
        index = bisect_right(self._starts, moment) - 1
        return self._starts[index] if index > 0 else None

    def split_points(self, start: datetime, end: datetime) -> list[datetime]:
        """Effective times strictly inside (start, end): where a priced interval must be cut."""
        return [t for t in self._starts[1:] if start < t < end]

    @classmethod
    def from_json(cls, text: str) -> PriceCatalog:
        return cls(msgspec.json.decode(text, type=_CatalogFile).versions)


@lru_cache(maxsize=8)
def load_catalog(path: str | None = None) -> PriceCatalog:
    """The catalog from a JSON file, or the packaged defaults of billing-rules.md."""
    if path:
        return PriceCatalog.from_json(Path(path).read_text())
    text = resources.files("billing.domain").joinpath("prices/default.json").read_text()
    return PriceCatalog.from_json(text)
