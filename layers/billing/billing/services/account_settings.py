"""What a user sets on the account: the credit-mail switch, auto top-up and a monthly spend cap
(billing-rules.md, "Credit controls"). A change of settings is a change of the account like any
other: the controls are evaluated as it commits (an auto top-up may be asked for at once)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from billing.domain import settle
from billing.domain.account import Account
from billing.domain.amounts import CURRENCIES, MICRO, format_credits, micro_of_credits
from billing.domain.clock import month_key
from billing.domain.errors import Conflict, InvalidInput, RuleViolation, UnknownAccount
from billing.domain.model import AccountState, AutoTopUp, Purchase, from_json
from billing.domain.posting import Book
from billing.observability import logger
from billing.store import keys, queries
from billing.store.ledger import Change, Ledger

UNSET: Any = object()  # a setting the request leaves as it is
LOCALES = ("en", "ko")  # the languages the page and the mails speak
# An IANA name as the tz database spells them ("Asia/Seoul", "UTC", "America/Argentina/Buenos_Aires").
TIME_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]{0,29}(/[A-Za-z0-9][A-Za-z0-9_+-]{0,29}){0,2}$")


def settings_view(state: AccountState) -> dict[str, Any]:
    auto = state.auto_top_up
    return {
        "credit_mail": state.credit_mail,
        "auto_top_up": None if auto is None or auto.removed else {
            "enabled": auto.enabled,
            "below": format_credits(auto.below),
            "credits": auto.credits,
            "max_per_month": auto.max_per_month,
            "pending_purchase_id": auto.pending,
            "failed_payments_in_a_row": auto.failures,
        },
        "spend_cap": format_credits(state.spend_cap) if state.spend_cap is not None else None,
        "spend_cap_reached": state.cap_reached is not None and state.cap_reached == month_key(state.as_of),
        "locale": state.locale,
        "time_zone": state.time_zone,
        "currency": state.currency,
    }


def get_settings(ledger: Ledger, account_id: str) -> dict[str, Any]:
    state = ledger.load(account_id)
    if state is None:
        raise UnknownAccount(f"no account {account_id}")
    return settings_view(state)


def _credits(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInput(f"{name} must be a credit amount (a decimal string or an integer)")
    try:
        micro = micro_of_credits(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from None
    if micro < minimum:
        raise RuleViolation(f"{name} must be at least {format_credits(minimum)}")
    return micro


def _auto_top_up(value: dict[str, Any], current: AutoTopUp | None, purchase_min: int, purchase_max: int) -> AutoTopUp:
    unknown = sorted(set(value) - {"enabled", "below", "credits", "max_per_month"})
    if unknown:
        raise InvalidInput(f"auto_top_up: unknown field(s): {', '.join(unknown)}")
    missing = sorted({"enabled", "below", "credits", "max_per_month"} - set(value))
    if missing:
        raise InvalidInput(f"auto_top_up: missing field(s): {', '.join(missing)}")
    enabled, credits, per_month = value["enabled"], value["credits"], value["max_per_month"]
    if not isinstance(enabled, bool):
        raise InvalidInput("auto_top_up.enabled must be true or false")
    if isinstance(credits, str) and credits.isascii() and credits.isdigit() and len(credits) <= 12:
        credits = int(credits)  # "100" as well as 100
    if isinstance(credits, bool) or not isinstance(credits, int):
        raise InvalidInput("auto_top_up.credits must be a whole number of credits")
    if isinstance(per_month, bool) or not isinstance(per_month, int):
        raise InvalidInput("auto_top_up.max_per_month must be a whole number")
    if not purchase_min <= credits <= purchase_max:
        raise RuleViolation(f"auto_top_up.credits must be a valid purchase: {purchase_min} to {purchase_max}")
    if not 1 <= per_month <= 31:
        raise RuleViolation("auto_top_up.max_per_month must be from 1 to 31")
    below = _credits(value["below"], "auto_top_up.below", MICRO)
    auto = AutoTopUp(enabled=enabled, below=below, credits=credits, max_per_month=per_month)
    if current is not None:  # what is under way stays: the pending purchase, this month's count
        auto.pending, auto.requested = current.pending, dict(current.requested)
        if not (enabled and not current.enabled):  # turning it on again clears the row of failures
            auto.failures, auto.failed = current.failures, list(current.failed)
    return auto


def _locale(value: Any) -> str | None:
    if value is not None and value not in LOCALES:
        raise InvalidInput(f"locale must be one of {', '.join(LOCALES)} or null")
    return value


def _time_zone(value: Any) -> str | None:
    """An IANA time zone the tz database knows (``Asia/Seoul``), or None (the browser's)."""
    if value is None:
        return None
    if not isinstance(value, str) or not TIME_ZONE_NAME.match(value):
        raise InvalidInput("time_zone must be an IANA time zone name such as Asia/Seoul, or null")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"time_zone: unknown time zone {value!r} (an IANA name such as Asia/Seoul)") from None
    return value


def _remove_auto_top_up(current: AutoTopUp | None) -> None:
    """``auto_top_up: null``: off and shown as unset, keeping the pending purchase and the month's
    count (a removal and a new setting in one month still make at most max_per_month purchases)."""
    if current is not None:
        current.enabled, current.removed, current.disabled_by_failures = False, True, False


def _pending_purchase(ledger: Ledger, account_id: str) -> bool:
    """Whether a purchase of the account awaits its payment (its price is in the current currency)."""
    bodies = queries.purchase_bodies(ledger.models, account_id)
    return any(p.status == "pending" and p.account_id == account_id for p in (from_json(b, Purchase) for b in bodies))


def update_settings(
    ledger: Ledger, account_id: str, credit_mail: Any = UNSET, auto_top_up: Any = UNSET, spend_cap: Any = UNSET,
    locale: Any = UNSET, time_zone: Any = UNSET, currency: Any = UNSET,
    actor: str | None = None, now: datetime | None = None,
) -> dict[str, Any]:
    """Change what the request names (UNSET: leave it); returns the settings as they are now."""
    if currency is not UNSET and currency not in CURRENCIES:
        raise InvalidInput(f"currency must be one of {', '.join(CURRENCIES)}")
    # A purchase is priced in the currency it was created in: the currency changes only between them.
    changes_currency = currency is not UNSET and (state := ledger.load(account_id)) is not None \
        and state.currency != currency
    if changes_currency and _pending_purchase(ledger, account_id):
        raise Conflict("the currency can change only while no purchase is pending")
    if credit_mail is not UNSET and not isinstance(credit_mail, bool):
        raise InvalidInput("credit_mail must be true or false")
    locale = locale if locale is UNSET else _locale(locale)
    time_zone = time_zone if time_zone is UNSET else _time_zone(time_zone)
    if auto_top_up is not UNSET and auto_top_up is not None and not isinstance(auto_top_up, dict):
        raise InvalidInput("auto_top_up must be an object or null")
    event_id = keys.settings_event_id(uuid.uuid4().hex)

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, event_id)
        state = book.state
        version = ledger.catalog.at(state.as_of)
        if credit_mail is not UNSET:
            state.credit_mail = credit_mail
        if locale is not UNSET:
            state.locale = locale
        if time_zone is not UNSET:
            state.time_zone = time_zone
        if auto_top_up is not UNSET:
            if auto_top_up is None:
                _remove_auto_top_up(state.auto_top_up)
            else:
                state.auto_top_up = _auto_top_up(
                    auto_top_up, state.auto_top_up, version.purchase_min_credits, version.purchase_max_credits
                )
        if currency is not UNSET:
            if state.currency != currency and state.auto_top_up is not None and state.auto_top_up.pending:
                raise Conflict("the currency can change only while no purchase is pending")
            state.currency = currency
        if spend_cap is not UNSET:
            state.spend_cap = None if spend_cap is None else _credits(spend_cap, "spend_cap", 1)
            # Raising or removing the cap ends a cap reached this month.
            spent = state.month_charged.get(state.cap_reached or "", 0)
            if state.cap_reached and (state.spend_cap is None or state.spend_cap > spent):
                state.cap_reached = None
        changed = {name: value for name, value in
                   (("credit_mail", credit_mail), ("auto_top_up", auto_top_up), ("spend_cap", spend_cap),
                    ("locale", locale), ("time_zone", time_zone), ("currency", currency))
                   if value is not UNSET}
        book.note(actor or account_id, "settings_changed", now or state.as_of, **changed)
        return Change(book, settings_view(state))

    applied = ledger.apply(account_id, event_id, action)
    logger.info("settings changed", account_id=account_id)
    assert applied.state is not None
    return settings_view(applied.state)


def set_credit_mail(ledger: Ledger, account_id: str, enabled: bool) -> dict[str, Any]:
    """The credit-mail switch alone (the original ``PUT /v1/settings`` body)."""
    return update_settings(ledger, account_id, credit_mail=enabled)
