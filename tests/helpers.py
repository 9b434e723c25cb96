"""Test helpers: drive the container-settlement handler with contract-shaped EventBridge events."""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from billing import wiring
from billing.adapters import EventPublisher, MailSender, MessageQueue
from billing.domain import credits, settle
from billing.domain.clock import parse_time
from billing.domain.model import LotKind, OutboundEvent, Work
from billing.domain.posting import Book
from billing.services import intake, outbox
from billing.store.ledger import Change, Ledger
from billing.store.outbox import OutboxRecord
from localsam.runtime import function_module
from tests.api_helpers import FakeContext

ROOT = Path(__file__).resolve().parents[1]
C = 1_000_000  # µcr per credit
GIB = 2**30


def load_handler(function: str, **collaborators: Any) -> ModuleType:
    """A function's app.py loaded from its file, as Lambda would (a module of its own), with the
    given collaborators (``ledger=``, ``clock=``, ``publisher=``... named after the providers of
    :mod:`billing.wiring`) in place of the ones its configuration would build."""
    return wire(function_module(function), **collaborators)


def wire(module: ModuleType, **collaborators: Any) -> ModuleType:
    """Override providers of a handler module's wiring with ready collaborators."""
    for name, value in collaborators.items():
        module.deps.dependency_overrides[getattr(wiring, name)] = lambda value=value: value
    return module


def invoke(module: ModuleType, event: Any) -> Any:
    """Call a handler module's ``lambda_handler`` as Lambda would."""
    return module.lambda_handler(event, FakeContext())


class RecordingPublisher(EventPublisher):
    """A real publisher whose transport is a list."""

    def __init__(self) -> None:
        super().__init__("default", client=object())
        self.sent: list[OutboundEvent] = []

    def publish(self, events: Any) -> None:  # type: ignore[override]
        self.sent.extend(events)

    def of_type(self, detail_type: str) -> list[dict[str, Any]]:
        """The details of the events of a type, without their ``effect_id`` (checked to be there)."""
        details = [dict(e.detail) for e in self.sent if e.detail_type == detail_type]
        for detail in details:
            assert re.fullmatch(r"[0-9a-f]{32}", str(detail.pop("effect_id")))
        return details


class RecordingQueue(MessageQueue):
    """A real queue adapter whose transport is a list of (body, attributes, group)."""

    def __init__(self) -> None:
        super().__init__("local-queue", client=object())
        self.sent: list[tuple[str, dict[str, str], str | None]] = []

    def send(self, body: str, attributes: dict[str, str] | None = None, group: str | None = None,
             dedup: str | None = None) -> None:  # type: ignore[override]
        self.sent.append((body, attributes or {}, group))

    def send_batch(self, bodies: Any) -> None:  # type: ignore[override]
        self.sent.extend((b, {}, None) for b in bodies)

    def take(self) -> list[str]:
        bodies = [body for body, _, _ in self.sent]
        self.sent.clear()
        return bodies


class RecordingMailer(MailSender):
    """A real mail sender whose transport is a list of (to, subject, text)."""

    def __init__(self) -> None:
        super().__init__("billing@example.com", client=object())
        self.sent: list[tuple[str, str, str]] = []
        self.html: list[str | None] = []

    def send(self, to: str, subject: str, body: str, html: str | None = None) -> str:  # type: ignore[override]
        self.sent.append((to, subject, body))
        self.html.append(html)
        return f"mail-{len(self.sent)}"


def deliver_effects(ledger: Ledger, account_id: str, event_id: str, publisher: EventPublisher,
                    mailer: MailSender | None = None, work_queue: MessageQueue | None = None,
                    payments: outbox.PaymentSide | None = None) -> None:
    """Deliver what the change of ``event_id`` asked for, as the outbox dispatcher does. Without a
    ``work_queue`` its container work is left undelivered (and so not remembered as delivered), for
    a test's stand-in of the work side (tests/test_large_accounts.py: Jobs) to deliver."""
    stored = ledger.stored(account_id, event_id)
    effects = [e for e in stored.effects if work_queue is not None or not isinstance(e, Work)] if stored else []
    if effects:
        record = OutboxRecord(account_id, event_id, effects)
        outbox.deliver(record, ledger, publisher, mailer or RecordingMailer(), work_queue or RecordingQueue(),
                       "https://example.com/buy", payments=payments)


SOURCES = {
    "Account Created": "platform.accounts",
    "Plan Changed": "platform.accounts",
    "Member Added": "platform.accounts",
    "Member Removed": "platform.accounts",
    "Member Role Changed": "platform.accounts",
    "AI Usage Recorded": "platform.ai",
}


class Outbox:
    """Stands in for the table's stream: delivers the effects of every change committed since the
    last call (each record once), as the outbox dispatcher would."""

    def __init__(self, ledger: Ledger, publisher: EventPublisher, mailer: MailSender,
                 payments: outbox.PaymentSide | None = None) -> None:
        self.ledger, self.publisher, self.mailer, self.payments = ledger, publisher, mailer, payments
        self.seen: set[tuple[str, str]] = set()

    def drain(self) -> None:
        m = self.ledger.models
        for item in m.EventRecord.scan(m.EventRecord.effects.exists(), consistent_read=True):
            key = (str(item.pk), str(item.sk))
            if key in self.seen or not str(item.pk).startswith("ACCOUNT#"):
                continue
            self.seen.add(key)
            deliver_effects(self.ledger, item.pk.removeprefix("ACCOUNT#"), item.sk.removeprefix("EVENT#"),
                            self.publisher, self.mailer, payments=self.payments)


class Platform:
    """Sends the platform's events for one account as the template routes them: through the intake
    function (validation; a refused event raises), then the settlement of the queued event."""

    _ids = itertools.count(1)

    def __init__(self, ledger: Ledger, account_id: str = "acct-1") -> None:
        self.ledger = ledger
        self.account_id = account_id
        self.publisher = RecordingPublisher()
        self.mailer = RecordingMailer()
        # The platform sends events as they happen: the handler's clock is the latest event time sent.
        self.now: datetime | None = None
        self.queue = RecordingQueue()
        self.handler = load_handler("platform_events", catalog=ledger.catalog, settlement_queue=self.queue,
                                    clock=self.clock)

    def clock(self) -> datetime:
        assert self.now is not None
        return self.now

    def advance_clock(self, event: Any) -> None:
        """Events are processed as they happen: the clock moves to the latest readable event time."""
        try:
            at = parse_time(event["detail"]["occurred_at"])
        except (KeyError, TypeError, ValueError):
            return  # a malformed event: the time it is processed is whatever it was
        self.now = max(self.now or at, at)

    def event(self, detail_type: str, at: str, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
        detail = {"event_id": event_id or f"ev-{next(self._ids)}", "account_id": self.account_id,
                  "occurred_at": at, **fields}
        return {"version": "0", "id": "x", "source": SOURCES.get(detail_type, "platform.containers"),
                "detail-type": detail_type, "detail": detail}

    def send(self, detail_type: str, at: str, event_id: str | None = None, **fields: Any) -> dict[str, Any]:
        return self.deliver(self.event(detail_type, at, event_id, **fields))

    def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        """Deliver an event through the intake handler and settle it from the queue (a refusal is
        raised), then deliver its effects as the outbox dispatcher would."""
        self.advance_clock(event)
        invoke(self.handler, event)
        [body] = self.queue.take()
        applied = intake.settle_queued(body, self.ledger, self.clock())
        event_id = event["detail"]["event_id"]
        deliver_effects(self.ledger, self.account_id, event_id, self.publisher, self.mailer)
        return {"event_id": event_id, "duplicate": applied.duplicate, "entries": len(applied.entries)}

    def state(self) -> Any:
        return self.ledger.load(self.account_id)

    def container(self, container_id: str) -> Any:
        return self.ledger.container(self.account_id, container_id)

    def entries(self) -> list[Any]:
        from billing.store import keys
        from billing.store.ledger import entries_from_items

        entry = self.ledger.models.Entry
        items = entry.query(keys.account_pk(self.account_id), entry.sk.startswith(keys.LEDGER))
        return entries_from_items(items)


def grant(
    ledger: Ledger, account_id: str, event_id: str, at: datetime, kind: LotKind, amount: int,
    expires: datetime | None, reason: str,
) -> None:
    """Grant a lot to an account exactly once for ``event_id``, as the grant services do."""

    def action(state: Any) -> Change:
        book = Book(settle.require(state, account_id), ledger.catalog, event_id)
        credits.grant(book, at, kind, amount, expires, reason)
        return Change(book)

    ledger.apply(account_id, event_id, action)


def assert_conserved(state: Any) -> None:
    t = state.totals
    available = sum(lot.remaining for lot in state.lots if not lot.closed)
    assert t.granted == t.spent + t.expired + t.refunded + available, t
    assert t.charged == t.spent + state.debt, t
    assert all(lot.remaining >= 0 for lot in state.lots)
    assert state.debt >= 0
