"""The usage page's response models (pydantic): what the usage API answers, typed for validation
and the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from billing.domain.model import Resource

Unit = Literal["credits", "usd"]


class Money(BaseModel):
    currency: str = "USD"
    cents: int


Amount = str | Money


class LotView(BaseModel):
    lot_id: str
    kind: str
    granted: str
    remaining: str
    granted_at: str
    expires_at: str | None


class Expiration(BaseModel):
    lot_id: str
    kind: str
    amount: str
    expires_at: str


class BalanceView(BaseModel):
    account_id: str
    plan: str
    available: str
    free: str
    purchased: str
    debt: str
    exhausted: bool
    credit_mail: bool
    accrued: str
    remaining: str
    hourly_burn: str
    hours_left: float | None
    next_monthly_grant_at: str
    lots: list[LotView]
    upcoming_expirations: list[Expiration]
    credit_price_usd: str
    at: str


class SeriesPoint(BaseModel):
    date: str
    amount: Amount
    cumulative: Amount


class ByResource(BaseModel):
    container: Amount
    storage: Amount
    traffic: Amount
    ai: Amount


class UsageView(BaseModel):
    account_id: str
    month: str
    unit: Unit
    granularity: Literal["day"] = "day"
    cumulative_mode: bool
    resource: Resource | None
    container_id: str | None
    total: Amount
    by_resource: ByResource
    series: list[SeriesPoint]
    days_elapsed: int
    average_daily: Amount
    projected_run_out: str | None
    credit_price_usd: str


class ContainerLogEntry(BaseModel):
    container_id: str
    run_id: str | None
    tier: str | None
    seconds: int | None
    code_supporter: bool | None
    storage_gb: int | None  # allocated
    billable_gb: int | None = None  # above the free allowance
    traffic_bytes: int | None
    credits: str
    deducted_at: str
    storage_seconds: int | None = None
    entry_id: str


class ContainerLog(BaseModel):
    date: str
    entries: list[ContainerLogEntry]


class AiLogEntry(BaseModel):
    type: Literal["Chat", "Snap", "AI Supporter"]
    container_id: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    credits: str
    at: str
    entry_id: str


class AiLog(BaseModel):
    entries: list[AiLogEntry]
    next_cursor: str | None


class LotPayment(BaseModel):
    lot_id: str
    amount: str


class LedgerEntryView(BaseModel):
    entry_id: str
    type: str
    amount: str
    at: str
    reason: str
    event_id: str
    lines: list[dict[str, Any]]
    paid_by: list[LotPayment]
    lot_id: str | None = None


class LedgerPage(BaseModel):
    entries: list[LedgerEntryView]
    next_cursor: str | None
    from_: str = Field(serialization_alias="from")
    to: str | None


class LedgerCsv(BaseModel):
    body: str
    next_cursor: str | None
