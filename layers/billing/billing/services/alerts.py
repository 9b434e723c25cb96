"""Alert rules (``/v1/alerts``): up to 10 per account, each firing once when its condition becomes
true and re-arming when it is false again (the rules are in :mod:`billing.domain.controls`)."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, get_args

from billing.domain import settle
from billing.domain.account import Account
from billing.domain.amounts import format_credits, micro_of_credits
from billing.domain.clock import format_time
from billing.domain.controls import MAX_ALERTS
from billing.domain.errors import InvalidInput, NotFound, RuleViolation, UnknownAccount
from billing.domain.model import AlertKind, AlertRule
from billing.domain.posting import Book
from billing.store import keys
from billing.store.idempotency import RequestKey
from billing.store.ledger import Change, Ledger

KINDS: tuple[str, ...] = get_args(AlertKind)
MAX_HOURS = Decimal(8760)
_HOURS = re.compile(r"^[0-9]{1,4}(\.[0-9]{1,2})?$")


def alert_view(rule: AlertRule) -> dict[str, Any]:
    return {
        "alert_id": rule.alert_id,
        "kind": rule.kind,
        "threshold": rule.threshold,
        "armed": rule.armed,
        "created_at": format_time(rule.created_at),
        "fired_at": format_time(rule.fired_at) if rule.fired_at else None,
    }


def list_alerts(ledger: Ledger, account_id: str) -> list[dict[str, Any]]:
    state = ledger.load(account_id)
    if state is None:
        raise UnknownAccount(f"no account {account_id}")
    return [alert_view(rule) for rule in state.alerts]


def normalized_threshold(kind: str, threshold: Any) -> str:
    """Credits (exact to the µcr, > 0) as a credit string; hours (> 0, at most 8760, two decimals)."""
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
    if isinstance(threshold, bool) or not isinstance(threshold, str | int):
        raise InvalidInput("threshold must be a number as a string (or an integer)")
    if kind == "hours_left_below":
        text = str(threshold)
        if not _HOURS.match(text):
            raise InvalidInput("threshold must be hours, with at most two decimals")
        try:
            hours = Decimal(text)
        except InvalidOperation:
            raise InvalidInput("threshold must be hours") from None
        if not 0 < hours <= MAX_HOURS:
            raise RuleViolation(f"threshold must be more than 0 and at most {MAX_HOURS} hours")
        return str(hours)
    try:
        micro = micro_of_credits(threshold)
    except ValueError as exc:
        raise InvalidInput(f"threshold: {exc}") from None
    if micro <= 0:
        raise RuleViolation("threshold must be more than 0 credits")
    return format_credits(micro)


def create_alert(
    ledger: Ledger, account_id: str, kind: str, threshold: Any, req: RequestKey, now: datetime,
    actor: str | None = None,
) -> dict[str, Any]:
    normalized = normalized_threshold(kind, threshold)
    alert_id = "alr_" + hashlib.sha256(req.event_id.encode()).hexdigest()[:20]

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, req.event_id)
        if len(book.state.alerts) >= MAX_ALERTS:
            raise RuleViolation(f"an account keeps at most {MAX_ALERTS} alert rules")
        rule = AlertRule(alert_id=alert_id, kind=kind, threshold=normalized, created_at=now)  # type: ignore[arg-type]
        book.state.alerts.append(rule)
        book.note(actor or account_id, "alert_created", now, alert_id=alert_id, kind=kind, threshold=normalized)
        return Change(book, alert_view(rule))

    response, _ = ledger.request(account_id, req, action)
    return response


def delete_alert(
    ledger: Ledger, account_id: str, alert_id: str, actor: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Remove a rule (a 404 when the account has no such rule, also when it was removed already)."""
    event_id = keys.settings_event_id(uuid.uuid4().hex)

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, event_id)
        rules = book.state.alerts
        if not any(rule.alert_id == alert_id for rule in rules):
            raise NotFound(f"no alert rule {alert_id[:100]}")
        book.state.alerts = [rule for rule in rules if rule.alert_id != alert_id]
        book.note(actor or account_id, "alert_deleted", now or book.state.as_of, alert_id=alert_id)
        return Change(book, {"alert_id": alert_id, "deleted": True})

    return ledger.apply(account_id, event_id, action).result
