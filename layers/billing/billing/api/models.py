"""The HTTP API's response bodies, as msgspec structs: what the handlers answer (encoded by
:func:`billing.api.http.json_response`) and what the OpenAPI document says they answer
(:mod:`billing.api.openapi` reads these very classes, so the two cannot differ).

Most routes answer the dicts the services build (and store, for a repeated request to replay); the
structs here describe them field by field, and the tests check every real response against them.
Defining a struct costs microseconds, which keeps the HTTP functions' cold start small (no pydantic).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field

from billing.domain.model import EntryType, LotKind, Plan, PurchaseStatus, Resource

Credits = Annotated[
    str,
    Meta(pattern=r"^-?[0-9]+\.[0-9]{6}$", description="Credits: a decimal string with 6 decimals.",
         examples=["13.600000"]),
]
Time = Annotated[
    str,
    Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
         description="An ISO-8601 UTC time with a Z suffix.", examples=["2026-03-20T12:00:00Z"]),
]
Day = Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="A UTC day, YYYY-MM-DD.")]
Unit = Literal["credits", "usd"]


class View(Struct, kw_only=True):
    """Base of the response bodies (keyword-only fields)."""


class Money(View, kw_only=True):
    """An amount of money in the currency's minor unit (cents; KRW has none: whole won); ``cents``
    repeats the amount for USD."""

    currency: Literal["USD", "KRW", "EUR"] = "USD"
    amount_minor: int
    cents: int | UnsetType = UNSET


Amount = Credits | Money  # credits, or money with ``unit=usd``


# ---------------------------------------------------------------------- errors


class ErrorDetail(View, kw_only=True):
    code: Annotated[str, Meta(description="Machine-readable: invalid_input, unauthorized, forbidden, "
                                          "not_found, unknown_account, conflict, not_allowed, service_busy...")]
    message: Annotated[str, Meta(description="What is wrong; for a 400, `<field>: <reason>`.")]


class ErrorBody(View, kw_only=True):
    """Every error the functions answer."""

    error: ErrorDetail


class GatewayMessage(View, kw_only=True):
    """What API Gateway itself answers when its authorizer refuses a request (no function runs)."""

    message: str


# ---------------------------------------------------------------------- balance


class LotView(View, kw_only=True):
    """A credit lot as in the balance and the grant routes."""

    lot_id: str
    kind: LotKind
    granted: Credits
    remaining: Credits
    granted_at: Time
    expires_at: Time | None


class Expiration(View, kw_only=True):
    lot_id: str
    kind: LotKind
    amount: Credits
    expires_at: Time


class BalanceView(View, kw_only=True):
    """The balance, rolled to now in memory (nothing is written)."""

    account_id: str
    plan: Plan
    available: Credits
    free: Credits
    purchased: Credits
    debt: Credits
    exhausted: bool
    credit_mail: bool
    accrued: Annotated[str, Meta(description="Usage not yet deducted (credits).")]
    remaining: Annotated[str, Meta(description="available - accrued (credits; negative in debt).")]
    hourly_burn: Credits
    hours_left: float | None
    next_monthly_grant_at: Time
    lots: list[LotView]
    upcoming_expirations: list[Expiration]
    credit_price_usd: Annotated[str, Meta(description="The account's price of one credit in dollars.")]
    at: Time


# ---------------------------------------------------------------------- usage


class SeriesPoint(View, kw_only=True):
    date: Annotated[str, Meta(description="The period: YYYY-MM-DD, YYYY-MM-DDTHH (hour) or YYYY-MM (month).")]
    amount: Annotated[Amount, Meta(description="The period's own usage (in dollars: the step between cumulatives).")]
    cumulative: Annotated[Amount, Meta(description="The running sum up to and including the period.")]


class ByResource(View, kw_only=True):
    container: Amount
    storage: Amount
    traffic: Amount
    ai: Amount


class UsageGroup(View, kw_only=True):
    key: str
    total: Amount
    series: list[SeriesPoint]


class UsageView(View, kw_only=True):
    """Usage of a range of days (a month by default), by period; ``groups`` only with ``group_by``."""

    account_id: str
    month: str | None
    from_: Day = field(name="from")
    to: Day
    granularity: Literal["hour", "day", "month"]
    unit: Unit
    cumulative_mode: bool
    group_by: str | None
    filters: dict[str, str]
    total: Amount
    by_resource: ByResource
    series: list[SeriesPoint]
    days_elapsed: int
    average_daily: Amount
    projected_run_out: Time | None
    credit_price_usd: str
    groups: list[UsageGroup] | UnsetType = UNSET


class ContainerLogEntry(View, kw_only=True):
    container_id: str
    run_id: str | None
    tier: str | None
    seconds: int | None
    code_supporter: bool | None
    storage_gb: int | None  # allocated
    billable_gb: int | None = None  # above the free allowance
    traffic_bytes: int | None
    credits: Credits
    deducted_at: Time
    storage_seconds: int | None = None
    entry_id: str


class ContainerLog(View, kw_only=True):
    """One row per deduction and container of a UTC day."""

    date: Day
    entries: list[ContainerLogEntry]


class AiLogEntry(View, kw_only=True):
    type: Literal["Chat", "Snap", "AI Supporter"]
    container_id: str | None
    model: str | None
    input_tokens: int
    output_tokens: int
    credits: Credits
    at: Time
    entry_id: str


class AiLog(View, kw_only=True):
    """AI usage, newest first, a page at a time."""

    entries: list[AiLogEntry]
    next_cursor: str | None


# ---------------------------------------------------------------------- audit log


class LotPayment(View, kw_only=True):
    lot_id: str
    amount: Credits


class ChargeLineView(View, kw_only=True):
    """A priced line of an entry: the fields that apply to it (the others are left out)."""

    resource: Resource
    item: str
    amount: Credits
    month: str
    container_id: str | UnsetType = UNSET
    run_id: str | UnsetType = UNSET
    tier: str | UnsetType = UNSET
    seconds: int | UnsetType = UNSET
    code_supporter: bool | UnsetType = UNSET
    storage_gb: int | UnsetType = UNSET
    billable_gb: int | UnsetType = UNSET
    traffic_bytes: int | UnsetType = UNSET
    model: str | UnsetType = UNSET
    input_tokens: int | UnsetType = UNSET
    output_tokens: int | UnsetType = UNSET
    start: Time | UnsetType = UNSET
    end: Time | UnsetType = UNSET
    labels: dict[str, str] | UnsetType = UNSET


class LedgerEntryView(View, kw_only=True):
    entry_id: str
    type: EntryType
    amount: Annotated[str, Meta(description="Positive credits; `type` gives the direction.")]
    at: Time
    reason: str
    event_id: str
    lines: list[ChargeLineView]
    paid_by: list[LotPayment]
    lot_id: str | None = None


class LedgerPage(View, kw_only=True):
    """Ledger entries of a range, oldest first, a page at a time."""

    entries: list[LedgerEntryView]
    next_cursor: str | None
    from_: Time = field(name="from")
    to: Time | None


class LedgerCsv(View, kw_only=True):
    """The audit log as CSV (the body of a ``text/csv`` response, not JSON)."""

    body: str
    next_cursor: str | None


# ---------------------------------------------------------------------- purchases and credits


class PaymentView(View, kw_only=True):
    """How the client pays the purchase (with Stripe): confirm the PaymentIntent with Stripe.js."""

    provider: Literal["stripe"]
    payment_intent_id: str
    client_secret: str


class PurchaseCreated(View, kw_only=True):
    """A new purchase, pending until the payment provider confirms it."""

    purchase_id: str
    credits: Credits
    price: Money
    status: Literal["pending"]
    created_at: Time
    payment: PaymentView | UnsetType = UNSET


class SetupView(View, kw_only=True):
    """A Stripe SetupIntent that saves a card for auto top-up (confirm it with Stripe.js)."""

    provider: Literal["stripe"]
    setup_intent_id: str
    client_secret: str


class PurchaseView(View, kw_only=True):
    purchase_id: str
    credits: Credits
    price: Money
    status: PurchaseStatus
    created_at: Time
    paid_at: Time | None
    refund: Money | None
    refunded_credits: Credits | None
    refunded_at: Time | None
    auto: Annotated[bool, Meta(description="Bought by auto top-up.")]


class PurchaseList(View, kw_only=True):
    """The account's purchases and refunds, newest first."""

    purchases: list[PurchaseView]


class Receipt(View, kw_only=True):
    """The receipt of a paid purchase."""

    number: Annotated[str, Meta(description="Stable receipt number: R-<payment day>-<10 characters>.",
                                examples=["R-20260110-3F9A0C1B2D"])]
    credits: Credits
    price: Money
    paid_at: Time
    payment_reference: Annotated[str | None, Meta(description="The payment provider's payment id.")]


class PurchaseDetail(PurchaseView, kw_only=True):
    """One purchase as in the list, with its receipt (null while it is not paid)."""

    receipt: Receipt | None


class RefundResult(View, kw_only=True):
    purchase_id: str
    refund: Money
    credits: Annotated[str, Meta(description="The unused credits taken back.")]


class LotGrant(View, kw_only=True):
    """The lot a check-in, a coupon or an operator grant added."""

    lot: LotView


class CouponView(View, kw_only=True):
    code: str
    credits: Credits
    valid_days: int
    expires_at: Time
    max_redemptions: int
    redemptions: int


class AutoTopUpView(View, kw_only=True):
    enabled: bool
    below: Credits
    credits: int
    max_per_month: int
    pending_purchase_id: str | None
    failed_payments_in_a_row: int


class SettingsView(View, kw_only=True):
    """The account's settings: credit mail, auto top-up, the monthly spend cap and the currency."""

    credit_mail: bool
    currency: Literal["USD", "KRW", "EUR"] | UnsetType = UNSET
    auto_top_up: AutoTopUpView | None
    spend_cap: Credits | None
    spend_cap_reached: bool = False
    locale: Literal["en", "ko"] | None = None
    time_zone: Annotated[str | None, Meta(description="An IANA time zone name, or null (the browser's).")] = None


AlertKind = Literal["remaining_below", "hours_left_below", "spent_this_month_above"]


class AlertView(View, kw_only=True):
    """An alert rule: it fires once when its condition becomes true and re-arms when it is false again."""

    alert_id: str
    kind: AlertKind
    threshold: Annotated[str, Meta(description="Credits (6 decimals) or hours.")]
    armed: bool
    created_at: Time
    fired_at: Time | None


class AlertList(View, kw_only=True):
    alerts: list[AlertView]


class AlertDeleted(View, kw_only=True):
    alert_id: str
    deleted: bool


class StripeEventResult(View, kw_only=True):
    """How a Stripe event was applied: ``handled`` false for a type that is ignored, ``duplicate``
    when it changed nothing."""

    event_id: str
    type: str
    handled: bool
    duplicate: bool
    purchase_id: str | None = None
    status: PurchaseStatus | None = None


class PaymentResult(View, kw_only=True):
    """How a payment notice was applied; ``duplicate`` when it changed nothing."""

    purchase_id: str
    status: PurchaseStatus
    duplicate: bool
    lot: LotView | UnsetType = UNSET


OpenApiDocument = dict[str, Any]


# ---------------------------------------------------------------------- organizations


class MemberView(View, kw_only=True):
    """A member of the account: their role, monthly limit and what their usage deducted this month."""

    user_id: str
    role: Literal["owner", "admin", "billing", "member"]
    email: str
    monthly_limit: Credits | None
    spent_this_month: Credits
    limit_reached: bool = False


class MemberList(View, kw_only=True):
    members: list[MemberView]


class ActivityEntry(View, kw_only=True):
    at: Time
    actor: Annotated[str, Meta(description="Who made the change: a user id, or `platform` (membership events).")]
    action: str
    details: dict[str, Any]


class ActivityPage(View, kw_only=True):
    """Who changed what, newest first, a page at a time."""

    entries: list[ActivityEntry]
    next_cursor: str | None
