"""What the HTTP API accepts, as msgspec structs: the query strings and the JSON bodies, and the
parsing of values the structs cannot check alone (credit amounts exact to the µcr, UTC times).

* Query strings (:class:`Query`): values are text, converted (``"10"`` -> 10, ``"true"`` -> True);
  an unknown parameter is a 400 that names it.
* JSON bodies (:class:`Body`): strict JSON types (a number sent as a string is a 400); fields a
  route does not know are ignored.

A value that does not validate is a 400 ``invalid_input`` whose message is ``<field>: <reason>``.
The same structs are the OpenAPI document's parameters and request bodies (:mod:`billing.api.routes`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from billing.domain.amounts import MICRO, micro_of_credits
from billing.domain.clock import parse_time
from billing.domain.errors import InvalidInput, RuleViolation
from billing.domain.model import LABEL_KEY, Resource

if TYPE_CHECKING:
    from billing.services.usage import UsageQuery

MAX_GRANT_MICRO = 1_000_000_000 * MICRO
S = TypeVar("S", bound=Struct)


# ---------------------------------------------------------------------- query strings


class Query(Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of the query-string structs: an unknown parameter is a 400 that names it."""


class NoQuery(Query, kw_only=True):
    """A route without query parameters."""


Cursor = Annotated[str, Meta(min_length=1, max_length=2048, description="`next_cursor` of the previous page.")]
Limit = Annotated[int, Meta(ge=1, le=100, description="Entries per page.")]


Filter = Annotated[str, Meta(min_length=1, max_length=200)]
UsageDay = Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                               description="A UTC day, YYYY-MM-DD (whole days).")]
GroupBy = Annotated[str, Meta(max_length=40, description="resource, container, tier, model, feature, user or "
                                                          "label:<key>; "
                                                          "only groups with usage appear.")]
LABEL_PREFIX = "label."  # label.<key>=<value> filters by a label (any key): not a fixed parameter


class UsageParams(Query, kw_only=True):
    """``/v1/usage`` and ``/v1/usage.csv``; besides these, ``label.<key>=<value>`` filters by a label."""

    month: Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}$", description="YYYY-MM (default: this month, "
                                                                       "unless from/to are given).")] | None = None
    from_: Annotated[UsageDay, Meta(description="The first day of a range (with `to`; up to 366 days).")] | None = \
        field(default=None, name="from")
    to: Annotated[UsageDay, Meta(description="The last day of the range, included.")] | None = None
    granularity: Literal["hour", "day", "month"] = "day"
    cumulative: Annotated[bool, Meta(description="The chart the caller draws: the running total (true) or "
                                                   "each period's amount; every point has both.")] = True
    unit: Literal["credits", "usd"] = "credits"
    group_by: GroupBy | None = None
    resource: Resource | None = None
    container: Annotated[Filter, Meta(description="Only this container's usage.")] | None = None
    container_id: Annotated[Filter, Meta(description="The same as `container` (its earlier name).")] | None = None
    tier: Filter | None = None
    model: Filter | None = None
    feature: Filter | None = None
    user: Annotated[str, Meta(pattern=r"^[\x20-\x7e]{1,128}$",
                              description="Only this member's usage (their user_id).")] | None = None

    def usage_query(self, labels: Mapping[str, str]) -> UsageQuery:
        """The service's query: the filters by dimension, and by label (``label.<key>`` parameters)."""
        from billing.services.usage import UsageQuery  # the usage function's, not every handler's, import

        if self.container and self.container_id and self.container != self.container_id:
            raise InvalidInput("container and container_id name different containers")
        filters = {name: value for name, value in (
            ("resource", self.resource), ("container", self.container or self.container_id), ("tier", self.tier),
            ("model", self.model), ("feature", self.feature), ("user", self.user)) if value}
        for key, value in labels.items():
            if not LABEL_KEY.match(key):
                raise InvalidInput(f"label.{key[:40]}: a label key is [a-z][a-z0-9_]{{0,31}}")
            if not 1 <= len(value) <= 64 or not value.isprintable():
                raise InvalidInput(f"label.{key}: a label value is 1 to 64 printable characters")
            filters[f"label:{key}"] = value
        return UsageQuery(month=self.month, from_=self.from_, to=self.to, granularity=self.granularity,
                          cumulative=self.cumulative, unit=self.unit, group_by=self.group_by, filters=filters)


def split_labels(params: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """``label.<key>=<value>`` parameters apart from the others: (the others, {key: value})."""
    labels = {name[len(LABEL_PREFIX):]: value for name, value in params.items() if name.startswith(LABEL_PREFIX)}
    rest = {name: value for name, value in params.items() if not name.startswith(LABEL_PREFIX)}
    return rest, labels


def usage_query_of(params: Mapping[str, str]) -> UsageQuery:
    """A usage query string (``label.<key>`` filters included) as the usage service's query."""
    rest, labels = split_labels(params)
    return parse_query(UsageParams, rest).usage_query(labels)


class ContainerLogParams(Query, kw_only=True):
    date: Annotated[str, Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="The UTC day, YYYY-MM-DD.")]


class AiLogParams(Query, kw_only=True):
    limit: Limit = 50
    cursor: Cursor | None = None


Bound = Annotated[str, Meta(min_length=1, max_length=40)]
From = Annotated[Bound, Meta(description="YYYY-MM-DD or an ISO-8601 UTC time (default: the whole history).")]
To = Annotated[Bound, Meta(description="YYYY-MM-DD (up to its last second) or an ISO-8601 UTC time.")]
PageSize = Annotated[int, Meta(ge=1, le=100, description="Entries per page (JSON: 50 by default; CSV: all, "
                                                         "up to 1,000, by default).")]


class LedgerParams(Query, kw_only=True):
    from_: From | None = field(default=None, name="from")
    to: To | None = None
    limit: PageSize | None = None
    cursor: Cursor | None = None
    format: Literal["json", "csv"] = "json"


class ActivityParams(Query, kw_only=True):
    from_: From | None = field(default=None, name="from")
    to: To | None = None
    limit: Limit = 50
    cursor: Cursor | None = None


# ---------------------------------------------------------------------- JSON bodies


class Body(Struct, kw_only=True):
    """Base of the JSON bodies (strict types; unknown fields are ignored)."""


class PurchaseRequest(Body, kw_only=True):
    credits: Annotated[int, Meta(description="Whole credits (the catalog's minimum to maximum).", examples=[100])]


class RedeemRequest(Body, kw_only=True):
    code: str


class AutoTopUpRequest(Body, kw_only=True, forbid_unknown_fields=True):
    enabled: bool
    below: Annotated[int | str, Meta(description="Top up when remaining credits fall below this (at least 1).")]
    credits: Annotated[int | str, Meta(description="Credits bought each time: a valid purchase (whole credits).")]
    max_per_month: Annotated[int, Meta(description="At most this many auto purchases in a calendar month (1 to 31).")]


SpendCap = Annotated[int | str, Meta(description="Credits deducted in a calendar month at which running containers "
                                                 "are stopped.")]


class MemberLimitRequest(Body, kw_only=True, forbid_unknown_fields=True):
    """A member's monthly limit: credits (at least 0), or null for none."""

    monthly_limit: Annotated[int | str | None, Meta(description="Credits a calendar month (at least 0), or null.",
                                                    examples=["200"])]

    def limit(self) -> int | None:
        """The limit in µcr (None: no limit); below zero or not a credit amount is a 400."""
        if self.monthly_limit is None:
            return None
        try:
            micro = micro_of_credits(self.monthly_limit)
        except ValueError as exc:
            raise InvalidInput(f"monthly_limit: {exc}") from None
        if micro < 0:
            raise InvalidInput("monthly_limit: must be at least 0 credits")
        return micro


class SettingsRequest(Body, kw_only=True, forbid_unknown_fields=True):
    """Any of the settings; what the body leaves out stays as it is (``null`` turns a control off)."""

    credit_mail: bool | UnsetType = UNSET
    auto_top_up: AutoTopUpRequest | UnsetType | None = UNSET
    spend_cap: SpendCap | UnsetType | None = UNSET
    locale: Annotated[Literal["en", "ko"], Meta(description="The page's and the mails' language (null: the "
                                                           "browser's; mails in English).")] | UnsetType | None = UNSET
    time_zone: Annotated[str, Meta(description="An IANA time zone name such as Asia/Seoul for times shown to the "
                                               "user (null: the browser's; mails in UTC).",
                                   max_length=64)] | UnsetType | None = UNSET

    currency: Annotated[Literal["USD", "KRW", "EUR"], Meta(
        description="What purchases are priced and paid in; changed only while no purchase is pending.",
    )] | UnsetType = UNSET

    def changes(self) -> dict[str, Any]:
        """The settings the body names, as the service's keyword arguments (a body naming none is a 400)."""
        named: dict[str, Any] = {}
        if self.credit_mail is not UNSET:
            named["credit_mail"] = self.credit_mail
        if self.auto_top_up is not UNSET:
            named["auto_top_up"] = None if self.auto_top_up is None else msgspec.structs.asdict(self.auto_top_up)
        if self.spend_cap is not UNSET:
            named["spend_cap"] = self.spend_cap
        for name in ("locale", "time_zone"):
            if getattr(self, name) is not UNSET:
                named[name] = getattr(self, name)
        if self.currency is not UNSET:
            named["currency"] = self.currency
        if not named:
            raise InvalidInput(
                "body: name at least one of credit_mail, auto_top_up, spend_cap, locale, time_zone, currency")
        return named


class AlertRequest(Body, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["remaining_below", "hours_left_below", "spent_this_month_above"]
    threshold: Annotated[int | str, Meta(description="Credits (remaining_below, spent_this_month_above) or hours "
                                                     "(hours_left_below), as a decimal string or an integer.")]


CreditAmount = Annotated[
    int | str, Meta(description="Credits: an integer, or a decimal string exact to the µcr (6 decimals).")
]
UtcTime = Annotated[str, Meta(description="An ISO-8601 UTC time (Z or +00:00).", examples=["2026-02-10T00:00:00Z"])]


class GrantRequest(Body, kw_only=True):
    account_id: Annotated[str, Meta(min_length=1, max_length=128)]
    credits: CreditAmount
    kind: Annotated[str, Meta(description="event, coupon or promotional.")]
    expires_at: UtcTime
    reason: Annotated[str, Meta(min_length=1, max_length=500)]
    purchase_id: Annotated[str | None, Meta(description="The purchase a promotional grant belongs to.")] = None


class CouponRequest(Body, kw_only=True):
    code: str
    credits: CreditAmount
    valid_days: int
    expires_at: UtcTime
    max_redemptions: int


class MoneyIn(Body, kw_only=True):
    currency: str
    cents: int


class PaymentNoticeBody(Body, kw_only=True):
    """The payment provider's notice (signed: see the ``Billing-Signature`` header)."""

    id: Annotated[str, Meta(min_length=1, max_length=255, description="The provider's payment id.")]
    type: Literal["payment.succeeded", "payment.failed"]
    purchase_id: Annotated[str, Meta(min_length=1, max_length=255)]
    amount: MoneyIn
    created_at: UtcTime


# ---------------------------------------------------------------------- validation

_AT = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD = re.compile(r"^Object (?P<what>contains unknown|missing required) field `(?P<name>[^`]*)`$")


def reason_of(exc: msgspec.ValidationError, subject: str) -> str:
    """msgspec's ``Expected `int` >= 1 - at `$.limit``` as ``limit: Expected `int` >= 1``; a missing or
    unknown field is named as the field. ``subject`` names the whole value (``body``)."""
    found = _AT.match(str(exc))
    reason, path = (found.group("reason"), found.group("path") or "") if found else (str(exc), "")
    named = _FIELD.match(reason)
    if named:
        path = f"{path}.{named.group('name')}"
        reason = "required" if named.group("what") == "missing required" else "unknown field"
    where = path.lstrip(".") or subject
    return f"{where}: {reason}"


def parse_request(model: type[S], body: Any) -> S:
    """A parsed JSON body as ``model``, strictly: a wrong type or a missing field is a 400."""
    try:
        return msgspec.convert(body, model, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidInput(reason_of(exc, "body")) from None


def parse_query(model: type[S], params: Mapping[str, str]) -> S:
    """Query parameters (text) as ``model``; unknown ones are a 400 that names every one of them."""
    known = {f.encode_name for f in msgspec.structs.fields(model)}
    unknown = sorted(name for name in params if name not in known)
    if unknown:
        many = "unknown query parameters" if len(unknown) > 1 else "unknown query parameter"
        raise InvalidInput(f"{', '.join(unknown)}: {many}")
    try:
        return msgspec.convert(dict(params), model, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidInput(reason_of(exc, "query")) from None


def parse_credits(value: int | str, name: str = "credits") -> int:
    """An integer or a decimal string exact to the µcr, as µcr (> 0)."""
    try:
        micro = micro_of_credits(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from None
    if micro <= 0 or micro > MAX_GRANT_MICRO:
        raise RuleViolation(f"{name} must be more than 0 and at most {MAX_GRANT_MICRO // MICRO}")
    return micro


def parse_when(value: str, name: str) -> datetime:
    try:
        return parse_time(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from None
