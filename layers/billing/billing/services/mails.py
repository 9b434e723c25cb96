"""The mails the billing stack sends: multipart (plain text and HTML), rendered from the templates
of ``billing/mails`` with the figures the change recorded in its mail effect, and a link to the
billing page. Values are HTML-escaped in the HTML part."""

from __future__ import annotations

import html
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from billing.domain.model import Mail

SUBJECTS = {
    "low_balance": "Your credits are running low",
    "alert_triggered": "A credit alert went off",
    "spend_cap_reached": "Your monthly spend cap is reached",
    "auto_top_up_disabled": "Auto top-up is off",
    "member_limit_reached": "A member's monthly limit is reached",
}
ACTIONS = {
    "low_balance": "Buy credits",
    "alert_triggered": "See your credit usage",
    "spend_cap_reached": "Review your spend cap",
    "auto_top_up_disabled": "Check auto top-up",
    "member_limit_reached": "Review member limits",
}
RULES = {
    "remaining_below": "remaining credits below {} credits",
    "hours_left_below": "less than {} hours of credits left",
    "spent_this_month_above": "more than {} credits spent this month",
}


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@cache
def _template(name: str) -> Template:
    return Template(resources.files("billing").joinpath(f"mails/{name}").read_text())


def _figures(mail: Mail, link: str) -> dict[str, str]:
    data: dict[str, Any] = dict(mail.data)
    if mail.template == "low_balance":
        hours = data.get("hours_left")
        data["left"] = f"about {hours} hours" if hours is not None else "unknown"
    if mail.template == "alert_triggered":
        data["rule"] = RULES[str(data["kind"])].format(data["threshold"])
        data["value"] = f"{data['value']} hours" if data["kind"] == "hours_left_below" else f"{data['value']} credits"
    data["link"] = link
    return {k: str(v) for k, v in data.items()}


def render(mail: Mail, link: str) -> RenderedMail:
    if mail.template not in SUBJECTS:
        raise ValueError(f"no mail template {mail.template!r}")
    figures = _figures(mail, link)
    subject = SUBJECTS[mail.template]
    text = _template(f"{mail.template}.txt").substitute(figures)
    content = _template(f"{mail.template}.html").substitute({k: html.escape(v) for k, v in figures.items()})
    page = _template("_layout.html").substitute(
        subject=html.escape(subject), heading=html.escape(subject), content=content,
        link=html.escape(link, quote=True), action=ACTIONS[mail.template],
    )
    return RenderedMail(subject, text, page)
