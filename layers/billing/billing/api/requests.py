"""The HTTP request bodies (pydantic, strict: a number sent as text is a 400) and the parsing of
values the models cannot check alone (credit amounts exact to the µcr, UTC times)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from billing.api.http import validation_reasons
from billing.domain.amounts import MICRO, micro_of_credits
from billing.domain.clock import parse_time
from billing.domain.errors import InvalidInput, RuleViolation

MAX_GRANT_MICRO = 1_000_000_000 * MICRO
M = TypeVar("M", bound=BaseModel)


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class PurchaseRequest(_Request):
    credits: int


class RedeemRequest(_Request):
    code: str


class SettingsRequest(_Request):
    credit_mail: bool


class GrantRequest(_Request):
    account_id: str = Field(min_length=1, max_length=128)
    credits: int | str
    kind: str
    expires_at: str
    reason: str = Field(min_length=1, max_length=500)
    purchase_id: str | None = None


class CouponRequest(_Request):
    code: str
    credits: int | str
    valid_days: int
    expires_at: str
    max_redemptions: int


class MoneyIn(_Request):
    currency: str
    cents: int


class PaymentNoticeBody(_Request):
    id: str = Field(min_length=1, max_length=255)
    type: Literal["payment.succeeded", "payment.failed"]
    purchase_id: str = Field(min_length=1, max_length=255)
    amount: MoneyIn
    created_at: str


def parse_request(model: type[M], body: Any) -> M:
    """Validate a JSON body against a strict model: wrong types, missing fields -> 400."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(validation_reasons(exc.errors()) or "invalid body") from None


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
