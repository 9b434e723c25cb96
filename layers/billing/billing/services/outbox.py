"""The outbox dispatcher: delivers what committed changes asked of the outside world.

The table's stream hands every new idempotency record that carries effects to the dispatcher
function, in commit order per account. Each record's effects are delivered in order: outbound
events through EventBridge (consumers drop repeats by ``effect_id``), mails through SES (remembered
once accepted, so a redelivery does not resend). The first record that fails stops the batch and
is reported, so Lambda retries from it and nothing after it is delivered out of order.
"""

from __future__ import annotations

from typing import Any

from billing.adapters import EventPublisher, MailSender, MessageQueue
from billing.domain.model import Mail, OutboundEvent, Work
from billing.observability import log_context, logger, metrics
from billing.services import sweeps
from billing.services.mails import render
from billing.services.sweeps import ContainerWork
from billing.store import outbox
from billing.store.ledger import Ledger


def deliver(record: outbox.OutboxRecord, ledger: Ledger, publisher: EventPublisher, mailer: MailSender,
            work_queue: MessageQueue, buy_credits_url: str) -> None:
    """Deliver one committed change's effects, in order."""
    for effect in record.effects:
        if isinstance(effect, OutboundEvent):
            publisher.publish([effect])
            metrics.add_metric(name="EventsPublished", unit="Count", value=1)
        elif isinstance(effect, Work):
            message = ContainerWork(account_id=effect.account_id, kind=effect.kind, at=effect.at,
                                    skip=tuple(effect.skip))
            work_queue.send_batch([sweeps.body(message)])
        elif isinstance(effect, Mail):
            if outbox.was_sent(ledger.models, record.account_id, effect.effect_id):
                continue
            rendered = render(effect, buy_credits_url)
            mailer.send(effect.to, rendered.subject, rendered.text, rendered.html)
            outbox.mark_sent(ledger.models, record.account_id, effect.effect_id)
            metrics.add_metric(name="MailsSent", unit="Count", value=1)
        logger.info("effect delivered", account_id=record.account_id, event_id=record.event_id,
                    effect_id=effect.effect_id, effect=type(effect).__name__)


def dispatch(stream_event: dict[str, Any], ledger: Ledger, publisher: EventPublisher, mailer: MailSender,
             work_queue: MessageQueue, buy_credits_url: str) -> dict[str, Any]:
    """A batch of stream records: deliver each record's effects; the first failure stops the batch
    (``batchItemFailures`` names it, so Lambda retries from there)."""
    for raw in stream_event.get("Records") or []:
        record = outbox.from_stream_record(raw)
        if record is None:
            continue
        # The change's event id correlates the delivery with the settlement that asked for it.
        with log_context(record.account_id, record.event_id, record.event_id):
            try:
                deliver(record, ledger, publisher, mailer, work_queue, buy_credits_url)
            except Exception:
                logger.exception("effects not delivered", account_id=record.account_id, event_id=record.event_id)
                metrics.add_metric(name="OutboxDeliveryFailures", unit="Count", value=1)
                return {"batchItemFailures": [{"itemIdentifier": raw["dynamodb"]["SequenceNumber"]}]}
    return {"batchItemFailures": []}
