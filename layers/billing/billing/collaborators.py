"""What the account functions work with (ledger, clock, event publisher, mail sender), built from
the settings on first use; tests pass real fakes instead."""

from __future__ import annotations

from dataclasses import dataclass

from billing.adapters import EventPublisher, MailSender
from billing.clock import Clock, utc_now
from billing.ledger import Ledger
from billing.settings import get_settings


@dataclass
class Collaborators:
    """What the account functions work with; tests replace them with real fakes."""

    ledger_: Ledger | None = None
    clock: Clock = utc_now
    publisher_: EventPublisher | None = None
    mail_sender_: MailSender | None = None

    @property
    def ledger(self) -> Ledger:
        # Built from the current settings (cheap: models and catalog are cached) unless injected.
        return self.ledger_ or Ledger()

    @property
    def publisher(self) -> EventPublisher:
        if self.publisher_ is None:
            self.publisher_ = EventPublisher(get_settings().event_bus_name)
        return self.publisher_

    @property
    def mail_sender(self) -> MailSender:
        if self.mail_sender_ is None:
            self.mail_sender_ = MailSender(get_settings().sender_address)
        return self.mail_sender_
