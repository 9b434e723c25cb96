"""The mails people get (billing/services/mails.py): one sentence of state, the amount to buy, a
link to the page and one to the setting that turns the mail off; plain text and HTML that say the
same; in the account's language (English, Korean), credits with two decimals (half-up) and
thousands separators."""

from __future__ import annotations

import html
import json
import re
from importlib import resources

import pytest

from billing.domain.low_balance import suggested_purchase
from billing.domain.model import Mail
from billing.services.mails import LOCALES, TEMPLATES, render

PAGE = "https://billing.example.com/"
SAMPLES = {
    "low_balance": {"remaining": "22.800000", "hourly_burn": "27.200000", "hours_left": 0.84, "buy": 653},
    "alert_triggered": {"alert_id": "al-1", "kind": "remaining_below", "threshold": "15.000000",
                        "value": "12.345000", "remaining": "12.345000"},
    "spend_cap_reached": {"cap": "1250.000000", "spent": "1250.004000"},
    "auto_top_up_disabled": {"failures": 3, "credits": "100.000000"},
    "member_limit_reached": {"user_id": "u7", "limit": "20.000000", "spent": "20.007111"},
}


def mail(template: str, locale: str = "en", **data: object) -> Mail:
    return Mail(effect_id="e-1", template=template, to="u@example.com", data={**SAMPLES[template], **data},
                locale=locale)


def html_text(page: str) -> str:
    """What a reader sees of the HTML part: tags dropped, entities decoded, spaces collapsed."""
    body = page.split("<body", 1)[1].split(">", 1)[1]
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def keys(tree: dict[str, object], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in tree.items():
        out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def test_every_language_has_every_message() -> None:
    catalogs = {loc: json.loads(resources.files("billing").joinpath(f"mails/{loc}.json").read_text("utf-8"))
                for loc in LOCALES}
    assert keys(catalogs["ko"]) == keys(catalogs["en"])
    for template in TEMPLATES:
        assert template in catalogs["en"]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("template", TEMPLATES)
def test_text_and_html_say_the_same_with_both_links(template: str, locale: str) -> None:
    rendered = render(mail(template, locale), PAGE)
    seen = html_text(rendered.html)
    lines = [line for line in rendered.text.splitlines() if line.strip()]
    for line in lines:
        # a "label: link" line of the text part is the link's label in the HTML part
        words = line.split(": https://")[0]
        assert words in seen, (words, seen)
    assert f'href="{PAGE}#credit-mail"' in rendered.html and f"{PAGE}#credit-mail" in rendered.text
    assert f'href="{PAGE}"' in rendered.html and PAGE in rendered.text
    assert f'lang="{locale}"' in rendered.html
    # one sentence of state first, not a heading repeating the subject
    assert lines[0].endswith((".", "다.")) and lines[0] != rendered.subject
    assert "000000" not in rendered.text + rendered.html  # no six-decimal figure
    assert "_" not in re.sub(r"https?://\S+", "", rendered.text)  # no raw code (remaining_below)
    if locale == "ko":  # nothing left in English but the links
        assert not re.search(r"[A-Za-z]{3,}", re.sub(r"https?://\S+", "", rendered.text)), rendered.text
        assert re.search(r"[가-힣]", rendered.subject)


def test_the_low_credit_mail_in_debt_says_what_is_owed_and_how_much_to_buy() -> None:
    # remaining -2185.388 credits at 27.2 an hour: owed 2,185.39 (half-up); to buy: what is owed plus a
    # day at this pace, 2185.388 + 24 * 27.2 = 2838.188 -> 2,839 whole credits
    buy = suggested_purchase(-2_185_388_000, 27_200_000, 50, 1_000_000)
    assert buy == 2839
    rendered = render(mail("low_balance", remaining="-2185.388000", hours_left=0.0, buy=buy), PAGE)
    first = rendered.text.splitlines()[0]
    assert first == "Your credits have run out: you owe 2,185.39 credits and usage goes on at 27.20 credits an hour."
    assert "Buy 2,839 credits" in rendered.text and f"{PAGE}#buy" in rendered.text
    assert "-2185" not in rendered.text and "0.0 hours" not in rendered.text
    ko = render(mail("low_balance", "ko", remaining="-2185.388000", hours_left=0.0, buy=buy), PAGE)
    assert "2,185.39 크레딧" in ko.text and "2,839 크레딧" in ko.text


def test_the_low_credit_mail_gives_the_time_left_in_minutes() -> None:
    # 22.8 left at 27.2 an hour: 0.84 h = 50.4 -> 50 minutes; to buy 24 * 27.2 - 0 = 652.8 -> 653
    assert suggested_purchase(22_800_000, 27_200_000, 50, 1_000_000) == 653
    rendered = render(mail("low_balance"), PAGE)
    assert rendered.text.splitlines()[0] == (
        "You have 22.80 credits left, about 50 minutes at the current 27.20 credits an hour.")
    assert "약 50분" in render(mail("low_balance", "ko"), PAGE).text
    # a tiny burn still suggests the smallest purchase; a huge debt the largest
    assert suggested_purchase(10_000_000, 1, 50, 1_000_000) == 50
    assert suggested_purchase(-10**15, 1, 50, 1_000_000) == 1_000_000


def test_figures_are_rounded_half_up_with_separators() -> None:
    # spent 1250.004 -> 1,250.00; an alert value of 12.345 -> 12.35 (half-up, not to even)
    cap = render(mail("spend_cap_reached"), PAGE).text
    assert "You spent 1,250.00 credits this month and reached your cap of 1,250.00 credits" in cap
    alert = render(mail("alert_triggered"), PAGE).text
    assert "“remaining credits below 15.00 credits” went off: 12.35 credits now." in alert


def test_the_member_limit_mail_names_the_member_by_id_and_address() -> None:
    plain = render(mail("member_limit_reached"), PAGE).text
    assert "u7 spent 20.01 credits this month and reached their limit of 20.00 credits" in plain
    named = render(mail("member_limit_reached", email="mia@example.com"), PAGE)
    assert "u7 (mia@example.com) spent 20.01 credits this month" in named.text
    assert "u7 (mia@example.com) spent" in named.html


def test_an_unknown_locale_falls_back_to_english() -> None:
    assert render(mail("auto_top_up_disabled", "fr"), PAGE).subject == "Auto top-up is off"


# ------------------------------------------------- every kind of mail against "Shown to people"
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "low balance, credits left": ("low_balance", {}),
    "low balance, in debt": ("low_balance", {"remaining": "-2185.388000", "hours_left": 0.0, "buy": 2839}),
    "low balance, a long time left": ("low_balance", {"remaining": "1234567.891234", "hourly_burn": "1234.567891",
                                                      "hours_left": 1000.0001, "buy": 29630}),
    "alert, remaining below": ("alert_triggered", {}),
    "alert, hours left below": ("alert_triggered", {"kind": "hours_left_below", "threshold": "2.500000",
                                                    "value": "1.333333"}),
    "alert, spent this month above": ("alert_triggered", {"kind": "spent_this_month_above",
                                                          "threshold": "1000.000000", "value": "1000.123456"}),
    "spend cap reached": ("spend_cap_reached", {}),
    "auto top-up disabled": ("auto_top_up_disabled", {}),
    "member limit reached": ("member_limit_reached", {}),
}
SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_mail_is_shown_to_people_as_the_rules_say(variant: str, locale: str) -> None:
    """billing-rules.md, "Shown to people", for the mails: one clear sentence of state first, no
    heading repeating the subject, the amount to buy (the low-credit mail), links to the page and
    to the setting that turns the mail off in both parts, figures with at most two decimals."""
    template, data = VARIANTS[variant]
    rendered = render(mail(template, locale, **data), PAGE)
    seen = html_text(rendered.html)
    lines = [line for line in rendered.text.splitlines() if line.strip()]
    state = lines[0]
    assert len(SENTENCE_END.findall(state)) == 1 and SENTENCE_END.search(state[-1]), state  # one sentence
    assert seen.startswith(state), (state, seen)  # the HTML part opens with the same sentence
    assert rendered.subject not in rendered.text and rendered.subject not in seen  # no repeated heading
    for part in (rendered.text, seen):
        assert not re.search(r"\d\.\d{3,}", part), part  # nothing with more than two decimals
        assert not re.search(r"\d\.\d(?!\d)\s*(credits|크레딧)", part), part  # credits with exactly two
        assert not re.search(r"\b[a-z]+_[a-z_]+\b", re.sub(r"https?://\S+", "", part)), part  # no raw code
    catalog = json.loads(resources.files("billing").joinpath(f"mails/{locale}.json").read_text("utf-8"))
    # the mail can be turned off from the mail: the setting's link, labelled, in both parts
    assert f"{catalog['turn_off']}: {PAGE}#credit-mail" in rendered.text
    assert re.search(rf'<a href="{re.escape(PAGE)}#credit-mail"[^>]*>{re.escape(catalog["turn_off"])}</a>',
                     rendered.html)
    if template == "low_balance":  # the amount to buy, said and linked to the page's buy form
        buy = catalog["credits"].format(amount=f"{int(str(data.get('buy', SAMPLES['low_balance']['buy']))):,}")
        assert buy in state or buy in lines[1], lines
        assert f"{PAGE}#buy" in rendered.text and f'href="{PAGE}#buy"' in rendered.html
        assert buy in catalog["low_balance"]["action"].format(buy=buy) and buy in seen


@pytest.mark.parametrize("locale", LOCALES)
def test_a_low_credit_mail_without_an_amount_still_offers_to_buy(locale: str) -> None:
    """An effect recorded without ``buy`` (none is suggested) still ends in a whole action label."""
    rendered = render(mail("low_balance", locale, buy=None), PAGE)
    action = next(line for line in rendered.text.splitlines() if f"{PAGE}#buy" in line).split(": https://")[0]
    assert action.strip() == action and len(action) > 3, action
