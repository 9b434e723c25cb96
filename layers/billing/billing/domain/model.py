"""The account's billing state and the ledger's records, as plain typed data.

One :class:`AccountState` is everything a settlement needs to read: the lots, the containers and
their open runs, the traffic counters, the debt and the running totals.

The records are ``msgspec`` structs rather than pydantic models: they are on every settlement's
path, and msgspec defines them and (de)serialises them an order of magnitude faster, which keeps
the cold start of the event-driven functions close to that of boto3 itself (see bench/README.md).
Defaults are omitted when stored; decoding validates the types.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec
from msgspec import Struct, field

from billing.domain.roster import Member

LotKind = Literal["monthly", "event", "coupon", "promotional", "purchased"]
Resource = Literal["container", "storage", "traffic", "ai"]
EntryType = Literal["grant", "deduction", "expiry", "refund", "debt", "correction"]
Plan = Literal["free", "membership"]

RESOURCES: tuple[Resource, ...] = ("container", "storage", "traffic", "ai")
# A label's key (billing-rules.md, "Attribution and ranges"): on events, in filters and in group_by.
LABEL_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

_T = TypeVar("_T")
_encoder = msgspec.json.Encoder()


class Record(Struct, kw_only=True, omit_defaults=True):
    """A stored record: keyword construction, defaults left out of the stored JSON."""


def to_json(record: Any) -> str:
    """A record (or a list or dict of records and plain values) as compact JSON."""
    return _encoder.encode(record).decode()


def from_json(text: str | bytes, kind: type[_T]) -> _T:
    """Decode and validate stored JSON as ``kind``; raises msgspec.ValidationError."""
    return msgspec.json.decode(text, type=kind)


def clone(record: _T) -> _T:
    """A deep copy (through the codec: exact, and faster than copy.deepcopy)."""
    return msgspec.json.decode(_encoder.encode(record), type=type(record))


class CreditLot(Record, kw_only=True):
    """Credits of one kind granted at one time. ``remaining`` is what is still spendable."""

    lot_id: str
    kind: LotKind
    granted: int
    remaining: int
    granted_at: datetime
    expires_at: datetime | None = None
    # Written off at expiry; a late usage from before the expiry may still be paid from it.
    expired: int = 0
    refunded: int = 0
    closed: bool = False  # expired or refunded: never pays for anything after
    purchase_id: str | None = None
    reason: str = ""

    @property
    def is_free(self) -> bool:
        return self.kind != "purchased"

    def usable_at(self, moment: datetime) -> bool:
        return self.granted_at <= moment and (self.expires_at is None or moment < self.expires_at)


class Run(Record, kw_only=True):
    """One run of a container, from its start to its stop; either event may arrive first."""

    run_id: str
    started_at: datetime | None = None
    tier: str | None = None
    code_supporter: bool = False
    user_id: str | None = None  # who ran it (the platform's user_id on its start or stop)
    stopped_at: datetime | None = None
    billed_until: datetime | None = None  # container time is charged up to here
    # Traffic recorded but not yet deducted, by month of the report: bytes and the billable part.
    pending_traffic: dict[str, int] = field(default_factory=dict)
    pending_billable: dict[str, int] = field(default_factory=dict)

    @property
    def is_running(self) -> bool:
        return self.started_at is not None and self.stopped_at is None

    @property
    def is_complete(self) -> bool:
        return (
            self.started_at is not None
            and self.stopped_at is not None
            and self.billed_until == self.stopped_at
            and not self.pending_billable
            and not self.pending_traffic
        )


class Accrual(Record, kw_only=True):
    """Open accruals, summable: a container's (stored with it) and the account's (their sum, on the
    balance), so that what has accrued and the hourly burn are known without reading containers.

    ``runs``: per ``"<tier>"`` or ``"<tier>+cs"`` (Code Supporter on), [number of running runs,
    Σ epoch seconds they are billed until]; ``storage``: per plan, [Σ billable GB under that plan's
    free allowance, Σ GB × epoch seconds storage is billed until]; ``traffic``: µcr of reported
    traffic not yet deducted."""

    runs: dict[str, list[int]] = field(default_factory=dict)
    storage: dict[str, list[int]] = field(default_factory=dict)
    traffic: int = 0
    # The runs again, per ``"<tier>[+cs]@<user_id>"``: what each member's running containers accrue
    # (member limits are forecast from it; runs without a user are only in ``runs``).
    users: dict[str, list[int]] = field(default_factory=dict)

    def plus(self, other: Accrual, sign: int = 1) -> Accrual:
        def merge(a: dict[str, list[int]], b: dict[str, list[int]]) -> dict[str, list[int]]:
            out = {k: list(v) for k, v in a.items()}
            for key, (count, since) in b.items():
                now = out.setdefault(key, [0, 0])
                now[0] += sign * count
                now[1] += sign * since
            return {k: v for k, v in out.items() if v != [0, 0]}

        return Accrual(
            runs=merge(self.runs, other.runs),
            storage=merge(self.storage, other.storage),
            traffic=self.traffic + sign * other.traffic,
            users=merge(self.users, other.users),
        )

    @property
    def empty(self) -> bool:
        return not self.runs and not any(gb for gb, _ in self.storage.values()) and not self.traffic

    @property
    def running(self) -> int:
        return sum(count for count, _ in self.runs.values())


class Container(Record, kw_only=True):
    """A container's storage facts (a timeline, since events may arrive out of order) and runs,
    stored as an item of its own; ``accrual`` is its part of the balance's aggregate, as saved."""

    container_id: str
    created_at: datetime | None = None
    sizes: list[tuple[datetime, int]] = field(default_factory=list)  # (from, allocated GB)
    activity: list[tuple[datetime, bool]] = field(default_factory=list)  # (from, active?)
    deleted_at: datetime | None = None
    storage_billed_until: datetime | None = None
    seen_until: datetime | None = None  # latest event time seen for this container
    runs: dict[str, Run] = field(default_factory=dict)
    closed_runs: dict[str, datetime] = field(default_factory=dict)  # run_id -> stop, recent only
    accrual: Accrual = field(default_factory=Accrual)
    counted: bool = False  # counted among the account's containers (created, not deleted)
    labels: list[tuple[datetime, dict[str, str]]] = field(default_factory=list)  # (from, labels)
    user_id: str | None = None  # who created it: its storage lines are theirs

    def size_at(self, moment: datetime) -> int:
        size = self.sizes[0][1] if self.sizes else 0
        for at, gb in self.sizes:
            if at <= moment:
                size = gb
        return size

    def active_at(self, moment: datetime) -> bool:
        active = True
        for at, flag in self.activity:
            if at <= moment:
                active = flag
        return active

    def labels_at(self, moment: datetime) -> dict[str, str]:
        current: dict[str, str] = {}
        for at, labels in self.labels:
            if at <= moment:
                current = labels
        return current

    @property
    def running_runs(self) -> list[Run]:
        return [r for r in self.runs.values() if r.is_running]


class Totals(Record, kw_only=True):
    """Running totals for the conservation identities, in µcr:
    granted = spent + expired + refunded + available, and charged = spent + debt."""

    granted: int = 0
    spent: int = 0
    expired: int = 0
    refunded: int = 0
    charged: int = 0


AlertKind = Literal["remaining_below", "hours_left_below", "spent_this_month_above"]


class AlertRule(Record, kw_only=True):
    """An alert rule: fires once when its condition becomes true, re-arms when it is false again."""

    alert_id: str
    kind: AlertKind
    threshold: str  # credits (exact to the µcr) or hours, as the user gave it, normalized
    armed: bool = True
    created_at: datetime
    fired_at: datetime | None = None


class AutoTopUp(Record, kw_only=True):
    """Auto top-up: a purchase of ``credits`` when remaining credits fall below ``below`` µcr."""

    enabled: bool = True
    below: int
    credits: int  # whole credits per purchase
    max_per_month: int
    pending: str | None = None  # the auto purchase awaiting its payment
    requested: dict[str, int] = field(default_factory=dict)  # month -> auto purchases requested
    failures: int = 0  # failed auto payments in a row
    failed: list[str] = field(default_factory=list)  # the auto purchases of that row, oldest first
    disabled_by_failures: bool = False  # turned off by the row (not by the user)
    # Removed by the user (``null``): shown as no setting, but what is under way is kept (the pending
    # purchase, the month's count), so turning it on again cannot pass max_per_month or pend twice.
    removed: bool = False


class LabelDays(Record, kw_only=True):
    """The label combinations the usage aggregates hold (see :mod:`billing.domain.attribution`): by
    hash, the latest UTC day's and earlier days' (while they fit), else how many a day was given."""

    day: str = ""
    combinations: list[str] = field(default_factory=list)
    past: dict[str, list[str]] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)


PurchaseStatus = Literal["pending", "paid", "failed", "refunded"]


class PaymentReference(Record, kw_only=True):
    """Which purchase a provider's payment (a Stripe PaymentIntent) pays: how a refund or a dispute,
    which name only the payment, finds its purchase."""

    purchase_id: str
    account_id: str


class Purchase(Record, kw_only=True):
    purchase_id: str
    account_id: str
    credits: int  # whole credits purchased
    price_cents: int
    currency: str = "USD"
    status: PurchaseStatus = "pending"
    created_at: datetime
    auto: bool = False  # created by auto top-up
    paid_at: datetime | None = None
    payment_id: str | None = None
    payment_created_at: datetime | None = None
    failed_at: datetime | None = None
    refund_cents: int | None = None
    refunded_credits: int | None = None  # µcr taken back
    refunded_at: datetime | None = None
    # The payment provider's side (Stripe): the PaymentIntent that pays the purchase; what made the
    # refund (``api``: ours, made at Stripe through the outbox; ``dashboard``: made in Stripe); a
    # dispute's id and state (``open``: its credits taken back; ``won``: given back; ``lost``).
    payment_intent_id: str | None = None
    payment_client_secret: str | None = None  # what the client confirms the PaymentIntent with
    refund_id: str | None = None
    refund_source: Literal["api", "dashboard"] | None = None
    dispute_id: str | None = None
    dispute_status: Literal["open", "won", "lost"] | None = None
    disputed_credits: int | None = None  # µcr a dispute took back
    dispute_lot_id: str | None = None  # the lot a won dispute gave the credits back in


SCHEMA = 2  # 1: containers inside the state; 2: containers as items of their own


class AccountState(Record, kw_only=True):
    """The account's balance item: lots, totals, debt, the clock, settings, and the aggregates of its
    containers (their count and open accruals), which stay small whatever the number of containers."""

    schema: int = 1
    account_id: str
    email: str
    created_at: datetime
    plans: list[tuple[datetime, Plan]]  # plan history: (from, plan)
    credit_price_usd: str = "0.02"
    credit_mail: bool = True
    locale: str | None = None  # "en" or "ko" for the page and the mails (None: the browser's, mails in English)
    time_zone: str | None = None  # an IANA name for times shown to the user (None: the browser's, mails in UTC)
    as_of: datetime  # the account has been settled and rolled up to here (event time)
    lots: list[CreditLot] = field(default_factory=list)
    debt: int = 0
    exhausted: bool = False
    containers_count: int = 0  # created and not deleted
    accrual: Accrual = field(default_factory=Accrual)  # Σ of the containers' accruals
    # The account's containers while they are few (None: more than are listed; see domain.account).
    container_ids: list[str] | None = field(default_factory=list)
    next_check_at: datetime | None = None  # when the forecast says a check is due (running out, mail)
    month_charged: dict[str, int] = field(default_factory=dict)  # month -> µcr charged (less corrections)
    # month -> user -> µcr their usage deducted (less corrections): member limits and GET /v1/members.
    member_spent: dict[str, dict[str, int]] = field(default_factory=dict)
    alerts: list[AlertRule] = field(default_factory=list)
    auto_top_up: AutoTopUp | None = None
    # Auto purchases ever asked for: numbers their ids; never reset (off and on, a new setting, a new month).
    auto_purchases: int = 0
    spend_cap: int | None = None  # µcr a calendar month
    cap_reached: str | None = None  # the month the spend cap was reached in
    # A month boundary whose containers the work queue is still settling (more than are listed):
    # until its last chunk, the old month's unsettled usage is in the aggregates, not in a lot's debt.
    month_closing: datetime | None = None
    traffic_used: dict[str, int] = field(default_factory=dict)  # month -> bytes counted
    totals: Totals = field(default_factory=Totals)
    check_ins: list[str] = field(default_factory=list)  # UTC days checked in (recent)
    coupons: list[str] = field(default_factory=list)  # codes redeemed
    mail_cycle: int = 0  # purchase cycle number; a new one starts at every completed purchase
    mail_sent_cycle: int = -1  # the cycle whose low-credit mail went out
    label_days: LabelDays = field(default_factory=LabelDays)  # label combinations in the aggregates
    currency: str = "USD"  # what the account's purchases are priced and paid in (USD, KRW, EUR)
    payment_customer_id: str | None = None  # the account's Stripe customer, created once
    payment_setup_id: str | None = None  # the latest SetupIntent that saves a card for auto top-up
    disputed: list[str] = field(default_factory=list)  # purchases with an open dispute (the account's mark)

    # The previous design's usage day items may still exist (until the fold: README "Usage aggregates");
    # accounts opened since never had any.
    usage_legacy: bool = True
    usage_spills: list[str] = field(default_factory=list)  # days with a spill item not folded yet
    # Members besides the account's own user (who is its owner: a personal account needs none).
    members: dict[str, Member] = field(default_factory=dict)
    version: int = 0

    def plan_at(self, moment: datetime) -> Plan:
        plan = self.plans[0][1]
        for at, name in self.plans:
            if at <= moment:
                plan = name
        return plan

    @property
    def plan(self) -> Plan:
        return self.plans[-1][1]

    def usable_lots(self, moment: datetime) -> list[CreditLot]:
        return [lot for lot in self.lots if not lot.closed and lot.usable_at(moment)]

    def available(self, moment: datetime | None = None) -> int:
        at = moment or self.as_of
        return sum(lot.remaining for lot in self.usable_lots(at))

    def spent_by(self, user_id: str, month: str) -> int:
        """What the user's usage deducted in ``month`` (less corrections), a member's or not."""
        return self.member_spent.get(month, {}).get(user_id, 0)


class ChargeLine(Record, kw_only=True):
    """One priced line of a settlement: computed exactly and rounded once, half-up."""

    resource: Resource
    item: str  # tier name, "code_supporter", "storage", "traffic", or the AI feature
    amount: int  # µcr, positive
    month: str
    container_id: str | None = None
    run_id: str | None = None
    tier: str | None = None
    seconds: int | None = None
    code_supporter: bool | None = None
    storage_gb: int | None = None  # allocated GB of the container
    billable_gb: int | None = None  # the part above the plan's free allowance
    traffic_bytes: int | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    labels: dict[str, str] | None = None  # the attribution in effect for this line
    user_id: str | None = None  # the member who ran the container or used the AI (organizations)
    # The member this line is attributed to in the usage aggregates when that differs from user_id:
    # ``_other`` past the day's bound on attributions (billing.domain.attribution).
    attributed_user: str | None = None


class LotAmount(Record, kw_only=True):
    lot_id: str
    amount: int


class LedgerEntry(Record, kw_only=True):
    """One credit movement. Amounts are positive; ``type`` gives the direction."""

    entry_id: str
    type: EntryType
    amount: int
    at: datetime
    reason: str
    event_id: str
    lines: list[ChargeLine] = field(default_factory=list)
    paid_by: list[LotAmount] = field(default_factory=list)
    lot_id: str | None = None


class OutboundEvent(Record, kw_only=True, tag="event", tag_field="effect"):
    """An event for EventBridge (source ``billing``); its detail carries the stable ``effect_id``."""

    detail_type: str
    detail: dict[str, object]

    @property
    def effect_id(self) -> str:
        return str(self.detail["effect_id"])


class Mail(Record, kw_only=True, tag="mail", tag_field="effect"):
    """A mail to the account's address: a template of ours and the figures that fill it."""

    effect_id: str
    template: str
    to: str
    data: dict[str, object]
    locale: str = "en"  # the account's language when the mail was decided
    time_zone: str | None = None


WorkKind = Literal["final_settlement", "month_close", "member_limit"]


class Work(Record, kw_only=True, tag="work", tag_field="effect"):
    """Account-wide work too large for one change (an account with many accruing containers): its
    containers are settled up to ``at`` in chunks, through the work queue."""

    effect_id: str
    kind: WorkKind
    account_id: str
    at: datetime
    skip: list[str] = field(default_factory=list)  # containers the asking change settled and asked about
    user_id: str | None = None  # member_limit: the member whose running containers are settled and stopped


PaymentCallKind = Literal["charge_off_session", "refund"]


class PaymentCall(Record, kw_only=True, tag="payment", tag_field="effect"):
    """A call to the payment provider that a committed change asked for: an auto purchase charged
    off-session to the saved card, or an API refund made at the provider. Idempotent at the provider
    by ``idempotency_key`` (the auto purchase's id, the refund's id), so a redelivery never charges
    or refunds twice."""

    effect_id: str
    kind: PaymentCallKind
    account_id: str
    purchase_id: str
    amount_minor: int
    currency: str
    idempotency_key: str
    customer_id: str | None = None
    payment_intent_id: str | None = None


# What a change asks of the outside world, written in the same transaction as the change (the
# outbox) and delivered afterwards, at least once, by the outbox dispatcher.
Effect = OutboundEvent | Mail | Work | PaymentCall
