"""The outbox dispatcher: delivers what committed changes asked of the outside world.

The table's stream hands every new idempotency record that carries effects to the dispatcher
function, in commit order per account. Each record's effects are delivered in order: outbound
events through EventBridge (consumers drop repeats by ``effect_id``), work through the work queue,
mails through SES. Each effect is remembered once delivered, so a retried record repeats none that
were. A transient failure (throttling, a 5xx, a timeout) stops the batch at its record and is
reported, so Lambda retries from it and nothing after it is delivered out of order.

An effect refused for good (SES's ``MessageRejected``: a suppressed or rejected address; an account
that may not send) would fail every retry and block the change's later effects: it is dead-lettered
alone, with its reason (a ``RefusedEffect`` message on OutboxDLQ, see :class:`Refusal`), remembered
as refused, and the change's other effects are delivered all the same. A replay of that dead letter
tries it again once the cause is fixed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from billing.adapters import EventPublisher, MailSender, MessageQueue
from billing.config import get_config
from billing.domain.clock import Clock, utc_now
from billing.domain.model import Effect, Mail, OutboundEvent, PaymentCall, Work, from_json, to_json
from billing.observability import log_context, logger, metrics
from billing.payments import PaymentProvider, PaymentRefused, SignedWebhookPayments
from billing.services import payment_calls, sweeps
from billing.services.mails import render
from billing.services.sweeps import ContainerWork
from billing.store import outbox
from billing.store.ledger import Ledger

# SES v2 refusals that no retry gets past: the message or its address is rejected (a suppressed
# recipient is one), or the account or sender may not send until an operator acts.
REFUSED_FOR_GOOD = frozenset({
    "MessageRejected", "MailFromDomainNotVerifiedException", "AccountSuspendedException",
    "SendingPausedException", "BadRequestException",
})


@dataclass(frozen=True)
class Refusal:
    """An effect refused for good: what the dead letter on OutboxDLQ says (``RefusedEffect``)."""

    account_id: str
    event_id: str
    effect: Effect
    reason: str  # the refusal's error code
    message: str = ""

    def body(self) -> str:
        return json.dumps({"RefusedEffect": {
            "account_id": self.account_id, "event_id": self.event_id, "reason": self.reason,
            "message": self.message, "effect": json.loads(to_json(self.effect)),
        }})

    @classmethod
    def of_body(cls, raw: dict[str, Any]) -> Refusal:
        value = raw["RefusedEffect"]
        [effect] = from_json(json.dumps([value["effect"]]), list[Effect])
        return cls(str(value["account_id"]), str(value["event_id"]), effect, str(value["reason"]),
                   str(value.get("message", "")))


class Deliver(Protocol):
    """The dispatcher's delivery of one change's effects (:func:`billing.services.outbox.deliver`)."""

    def __call__(self, record: outbox.OutboxRecord, dead_letters: MessageQueue | None = None,
                 retry_refused: bool = False) -> list[Refusal]: ...


def refused_for_good(effect: Effect, exc: Exception) -> str | None:
    """The error code of a refusal no retry gets past, or None (transient, or not a refusal)."""
    if isinstance(effect, PaymentCall) and isinstance(exc, PaymentRefused):
        return exc.code  # the payment provider refused the call (a refund Stripe will not make)
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code) if isinstance(effect, Mail) and code in REFUSED_FOR_GOOD else None


@dataclass(frozen=True)
class PaymentSide:
    """The payment provider calls are made with (the deployment's; the neutral one makes none) and
    the clock a refused auto payment is dated by."""

    provider: PaymentProvider = field(default_factory=SignedWebhookPayments)
    clock: Clock = utc_now


def _send(effect: Effect, publisher: EventPublisher, mailer: MailSender, work_queue: MessageQueue,
          buy_credits_url: str, ledger: Ledger, payments: PaymentSide) -> None:
    if isinstance(effect, PaymentCall):
        payment_calls.carry_out(effect, ledger, payments.provider, payments.clock())
    elif isinstance(effect, OutboundEvent):
        publisher.publish([effect])
        metrics.add_metric(name="EventsPublished", unit="Count", value=1)
    elif isinstance(effect, Work):
        message = ContainerWork(account_id=effect.account_id, kind=effect.kind, at=effect.at, skip=tuple(effect.skip),
                                user_id=effect.user_id)
        work_queue.send_batch([sweeps.body(message)])
    else:
        rendered = render(effect, buy_credits_url)
        mailer.send(effect.to, rendered.subject, rendered.text, rendered.html)
        metrics.add_metric(name="MailsSent", unit="Count", value=1)


def deliver(record: outbox.OutboxRecord, ledger: Ledger, publisher: EventPublisher, mailer: MailSender,
            work_queue: MessageQueue, buy_credits_url: str, dead_letters: MessageQueue | None = None,
            retry_refused: bool = False, payments: PaymentSide | None = None) -> list[Refusal]:
    """Deliver one committed change's effects, in order, but those delivered already (and those
    dead-lettered already, unless ``retry_refused``: the replay of their dead letter). An effect
    refused for good is put on ``dead_letters`` and skipped; returns the refusals (a refusal needs
    ``dead_letters`` the first time: without it, it is raised)."""
    models = ledger.models
    done = outbox.delivered(models, record.account_id, [effect.effect_id for effect in record.effects])
    refusals = []
    for effect in record.effects:
        before = done.get(effect.effect_id)
        if before == outbox.SENT or (before == outbox.REFUSED and not retry_refused):
            continue
        try:
            _send(effect, publisher, mailer, work_queue, buy_credits_url, ledger, payments or PaymentSide())
        except Exception as exc:
            reason = refused_for_good(effect, exc)
            if reason is None or (before is None and dead_letters is None):
                raise
            refusal = Refusal(record.account_id, record.event_id, effect, reason, str(exc)[:1000])
            if before is None and dead_letters is not None:  # dead-lettered, then remembered: never lost
                dead_letters.send(refusal.body(), {"ErrorCode": reason, "ErrorMessage": refusal.message or reason})
                outbox.mark_refused(models, record.account_id, effect.effect_id, reason)
                metrics.add_metric(name="EffectsRefused", unit="Count", value=1)
            logger.error("effect refused for good", account_id=record.account_id, event_id=record.event_id,
                         effect_id=effect.effect_id, reason=reason)
            refusals.append(refusal)
            continue
        outbox.mark_sent(models, record.account_id, effect.effect_id)
        logger.info("effect delivered", account_id=record.account_id, event_id=record.event_id,
                    effect_id=effect.effect_id, effect=type(effect).__name__)
    return refusals


def configured_delivery(ledger: Ledger, client: Callable[[str], Any]) -> Deliver:
    """The dispatcher's delivery with the deployment's settings (SES sender, work queue, bus), on the
    clients ``client`` makes (the operator's replay)."""
    config = get_config()
    publisher = EventPublisher(config.event_bus_name, client=client("events"))
    mailer = MailSender(config.sender_address, client=client("sesv2"), configuration_set=config.ses_configuration_set)
    work = MessageQueue(config.work_queue_url, client=client("sqs"))

    def delivered(record: outbox.OutboxRecord, dead_letters: MessageQueue | None = None,
                  retry_refused: bool = False) -> list[Refusal]:
        return deliver(record, ledger, publisher, mailer, work, config.buy_credits_url, dead_letters, retry_refused)

    return delivered


def dispatch(stream_event: dict[str, Any], ledger: Ledger, publisher: EventPublisher, mailer: MailSender,
             work_queue: MessageQueue, buy_credits_url: str, dead_letters: MessageQueue | None = None,
             payments: PaymentSide | None = None) -> dict[str, Any]:
    """A batch of stream records: deliver each record's effects; the first transient failure stops
    the batch (``batchItemFailures`` names it, so Lambda retries from there)."""
    for raw in stream_event.get("Records") or []:
        record = outbox.from_stream_record(raw)
        if record is None:
            continue
        # The change's event id correlates the delivery with the settlement that asked for it.
        with log_context(record.account_id, record.event_id, record.event_id):
            try:
                deliver(record, ledger, publisher, mailer, work_queue, buy_credits_url, dead_letters,
                        payments=payments)
            except Exception:
                logger.exception("effects not delivered", account_id=record.account_id, event_id=record.event_id)
                metrics.add_metric(name="OutboxDeliveryFailures", unit="Count", value=1)
                return {"batchItemFailures": [{"itemIdentifier": raw["dynamodb"]["SequenceNumber"]}]}
    return {"batchItemFailures": []}
