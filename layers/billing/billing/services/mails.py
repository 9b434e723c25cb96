"""The mails the billing stack sends, rendered from a mail effect's template name and figures."""

from __future__ import annotations

from dataclasses import dataclass

from billing.domain.model import Mail


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str


def render(mail: Mail, buy_credits_url: str) -> RenderedMail:
    data = mail.data
    if mail.template == "low_balance":
        hours = data.get("hours_left")
        left = f"about {hours} hours" if hours is not None else "unknown"
        return RenderedMail(
            "Your credits are running low",
            "Your credits are running low.\n\n"
            f"Remaining credits: {data['remaining']}\n"
            f"Estimated time left at the current usage: {left}\n\n"
            f"Buy credits: {buy_credits_url}\n",
        )
    raise ValueError(f"no mail template {mail.template!r}")
