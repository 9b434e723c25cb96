"""The mails the billing stack sends: multipart (plain text and HTML parts that say the same), in the
account's language (``locale``: one message catalog per language in ``billing/mails/<locale>.json``),
rendered from the figures the change recorded in its mail effect.

Every mail opens with one sentence of state, says what to do (the low-credit mail: how many credits
to buy), links to the page and to the credit-mail setting that turns it off. Credits are shown with
two decimals and thousands separators, rounded half-up for display (billing-rules.md, "Shown to
people"); the standard library formats them: English and Korean both group by thousands with a comma
and use a point for decimals, so no locale database (Babel) is needed for the two languages. Values
are HTML-escaped in the HTML part."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urldefrag

from billing.domain.model import Mail

LOCALES = ("en", "ko")
TEMPLATES = ("low_balance", "alert_triggered", "spend_cap_reached", "auto_top_up_disabled", "member_limit_reached")
SETTING_ANCHOR = "credit-mail"  # the page's credit-mail switch (web/src/index.html)
BUY_ANCHOR = "buy"


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


@cache
def catalog(locale: str) -> dict[str, Any]:
    """The messages of ``locale`` (English for a language the product does not speak)."""
    name = locale if locale in LOCALES else "en"
    data: dict[str, Any] = json.loads(resources.files("billing").joinpath(f"mails/{name}.json").read_text("utf-8"))
    return data


@cache
def _layout(name: str) -> Template:
    return Template(resources.files("billing").joinpath(f"mails/{name}").read_text("utf-8"))


def credits_number(value: object) -> str:
    """``"-2185.388"`` -> ``"-2,185.39"``: two decimals, half-up, thousands separators."""
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return str(value)
    return f"{amount:,.2f}"


def _credits(messages: dict[str, Any], value: object) -> str:
    return str(messages["credits"]).format(amount=credits_number(value))


def _duration(messages: dict[str, Any], hours: object) -> str:
    """Less than two hours in whole minutes (at least 1), else hours to one decimal."""
    h = Decimal(str(hours))
    if h < 2:
        minutes = max(1, int((h * 60).quantize(Decimal(1), rounding=ROUND_HALF_UP)))
        return str(messages["minutes"]).format(amount=minutes)
    return str(messages["hours"]).format(amount=f"{h.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP):,}")


def _sentences(mail: Mail, messages: dict[str, Any]) -> tuple[str, list[str], dict[str, str]]:
    """The state sentence, the sentences after it and the figures the action label may name."""
    data, own = dict(mail.data), messages[mail.template]
    if mail.template == "low_balance":
        remaining, burn = Decimal(str(data["remaining"])), _credits(messages, data["hourly_burn"])
        buy = str(messages["credits"]).format(amount=f"{int(str(data['buy'])):,}") if data.get("buy") else ""
        if remaining > 0 and data.get("hours_left") is not None:
            state = own["state_left"].format(remaining=_credits(messages, remaining), burn=burn,
                                             left=_duration(messages, data["hours_left"]))
        else:
            state = own["state_owed"].format(owed=_credits(messages, -remaining), burn=burn)
        return state, [own["buy"].format(buy=buy)] if buy else [], {"buy": buy}
    if mail.template == "alert_triggered":
        kind = str(data["kind"])
        unit = (lambda v: str(messages["hours"]).format(amount=credits_number(v))) if kind == "hours_left_below" \
            else (lambda v: _credits(messages, v))
        rule = own[kind].format(threshold=unit(data["threshold"]))
        return (own["state"].format(rule=rule, value=unit(data["value"])),
                [own["detail"].format(remaining=_credits(messages, data["remaining"]))], {})
    if mail.template == "spend_cap_reached":
        return (own["state"].format(spent=_credits(messages, data["spent"]), cap=_credits(messages, data["cap"])),
                [own["detail"]], {})
    if mail.template == "member_limit_reached":
        # The member by their address too, when the platform gave one (ids are opaque to people).
        who = f"{data['user_id']} ({data['email']})" if data.get("email") else str(data["user_id"])
        return (own["state"].format(user=who, spent=_credits(messages, data["spent"]),
                                    limit=_credits(messages, data["limit"])), [own["detail"]], {})
    return (own["state"].format(failures=data["failures"], credits=_credits(messages, data["credits"])),
            [own["detail"]], {})


def links(page: str) -> dict[str, str]:
    """The page, its buy form and its credit-mail switch (the page's own fragments)."""
    base = urldefrag(page).url
    return {"link": page, "buy_link": f"{base}#{BUY_ANCHOR}", "settings_link": f"{base}#{SETTING_ANCHOR}"}


def render(mail: Mail, link: str) -> RenderedMail:
    if mail.template not in TEMPLATES:
        raise ValueError(f"no mail template {mail.template!r}")
    messages = catalog(mail.locale)
    own = messages[mail.template]
    state, details, figures = _sentences(mail, messages)
    urls = links(link)
    # the low-credit mail names the amount to buy; without one (none suggested) it still offers to buy
    action = own["action"].format(**figures) if figures.get("buy", True) else own["action_any"]
    action_link = urls["buy_link"] if mail.template == "low_balance" else urls["link"]
    text = _layout("_layout.txt").substitute(
        state=state, details="".join(f"{d}\n\n" for d in details), action=action, action_link=action_link,
        page_line=f"{messages['open_page']}: {urls['link']}", why=messages["why"],
        turn_off_line=f"{messages['turn_off']}: {urls['settings_link']}",
    )
    e = html.escape
    page = _layout("_layout.html").substitute(
        lang=mail.locale if mail.locale in LOCALES else "en", subject=e(own["subject"]), state=e(state),
        details="".join(f'<p style="margin:0 0 12px">{e(d)}</p>' for d in details),
        action=e(action), action_link=e(action_link, quote=True), link=e(urls["link"], quote=True),
        open_page=e(messages["open_page"]), why=e(messages["why"]), settings_link=e(urls["settings_link"], quote=True),
        turn_off=e(messages["turn_off"]),
    )
    return RenderedMail(own["subject"], text, page)
