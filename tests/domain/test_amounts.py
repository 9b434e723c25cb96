"""Exact amounts (billing-rules.md, "Units and exactness"): integer µcr, integer cents, one half-up
rounding per line, credits shown with 6 decimals, refunds rounded up to the cent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.domain.amounts import (
    GIB,
    MAX_CREDITS,
    MICRO,
    ceil_cents,
    cents_of_micro,
    format_credits,
    hours_left,
    micro_of_credits,
    money,
    to_micro,
)

MICROS = st.integers(min_value=-(10**21), max_value=10**21)


def test_units() -> None:
    assert MICRO == 1_000_000 and GIB == 1_073_741_824 and MAX_CREDITS == 10**15


@pytest.mark.parametrize(("credits", "micro"), [
    ("0.0000005", 1),  # exactly half a µcr: up
    ("0.0000025", 3),  # half-even would give 2
    ("0.00000249999", 2),
    ("0.0000015", 2),
    ("13.6", 13_600_000),
    # 10^20 + 0.499999999999 µcr: 33 digits, below a half; decimal's default 28 digits would make it
    # 10^20 + 0.5000000 and round it up
    ("100000000000000.000000499999999999", 10**20),
])
def test_a_line_is_rounded_once_half_up_to_the_micro_credit(credits: str, micro: int) -> None:
    assert to_micro(Decimal(credits)) == micro


@given(MICROS)
def test_whole_micro_credits_are_kept_as_they_are(micro: int) -> None:
    assert to_micro(Decimal(micro) / MICRO) == micro
    assert micro_of_credits(format_credits(micro)) == micro  # the API's text parses back to the same µcr


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=999_999))
def test_half_up_within_a_micro_credit(whole: int, frac: int) -> None:
    """whole µcr + frac millionths of one: below a half down, from a half up."""
    value = (Decimal(whole) + Decimal(frac) / 10**6) / MICRO
    assert to_micro(value) == whole + (1 if frac >= 500_000 else 0)


@pytest.mark.parametrize(("text", "micro"), [
    ("13.6", 13_600_000), ("0.000001", 1), ("-2.5", -2_500_000), ("5", 5_000_000),
    ("1000000000000000", 10**21), ("0000000000000001", MICRO),  # 16 digits
    ("0.100000000000000000", 100_000),  # 18 decimals
    (5, 5_000_000), (-3, -3_000_000), (Decimal("0.25"), 250_000), (10**15, 10**21), (-(10**15), -(10**21)),
    (Decimal(10**15), 10**21),
])
def test_credit_amounts_exact_to_the_micro_credit(text: str | int | Decimal, micro: int) -> None:
    assert micro_of_credits(text) == micro


@pytest.mark.parametrize("bad", [
    True, False, "", "1e3", "1.", ".5", "+1", " 1", "1 ", "0x10", "00000000000000001",  # 17 digits
    "1.0000000000000000000",  # 19 decimals
    "0.0000001", Decimal("0.0000001"), "1.2345678",  # finer than one µcr
    10**15 + 1, -(10**15) - 1, Decimal(10**15 + 1), Decimal("-1000000000000001"),
    Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"),
])
def test_anything_else_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        micro_of_credits(bad)  # type: ignore[arg-type]


def test_a_long_text_is_refused_with_a_bounded_message() -> None:
    with pytest.raises(ValueError) as refused:
        micro_of_credits("9" * 1000)
    assert len(str(refused.value)) < 100


@pytest.mark.parametrize(("bad", "message"), [
    (True, "not a credit amount: True"),
    ("x" * 50, "not a credit amount: '" + "x" * 40 + "'"),  # the text's first 40 characters only
    ("1.2.3", "not a credit amount: '1.2.3'"),
    (10**15 + 1, "credit amount out of range"),
    (-(10**15) - 1, "credit amount out of range"),
    (Decimal("NaN"), "not a credit amount: Decimal('NaN')"),
    (Decimal(10**15 + 1), "not a credit amount: Decimal('1000000000000001')"),
    ("0.0000001", "credit amount finer than one micro-credit: '0.0000001'"),
    (Decimal("1.2345678"), "credit amount finer than one micro-credit: Decimal('1.2345678')"),
])
def test_a_refused_credit_amount_says_why(bad: object, message: str) -> None:
    """The 400's message names the reason and the value as sent (bounded): API clients read it."""
    with pytest.raises(ValueError) as refused:
        micro_of_credits(bad)  # type: ignore[arg-type]
    assert str(refused.value) == message


@pytest.mark.parametrize(("micro", "text"), [
    (13_600_000, "13.600000"), (0, "0.000000"), (1, "0.000001"), (-1, "-0.000001"),
    (-4_508_000, "-4.508000"), (1_000_000_000_000, "1000000.000000"), (999_999, "0.999999"),
])
def test_credits_as_the_api_shows_them(micro: int, text: str) -> None:
    assert format_credits(micro) == text


@pytest.mark.parametrize(("micro", "price", "cents"), [
    (100 * MICRO, "0.02", 200),  # 100 credits at $0.02
    (250_000, "0.02", 1),  # 0.25 x 0.02 = $0.005 = 0.5 cents: half up
    (249_999, "0.02", 0),  # 0.49999 cents
    (750_000, "0.02", 2),  # 1.5 cents: up (half-even would give 2 too) ...
    (1_250_000, "0.02", 3),  # ... 2.5 cents: up (half-even would give 2)
    (13_600_000, "0.015", 20),  # 13.6 x 0.015 = $0.204
    (-250_000, "0.02", -1),  # a correction shown in dollars: away from zero
])
def test_credits_in_dollars_rounded_once_half_up_to_the_cent(micro: int, price: str, cents: int) -> None:
    assert cents_of_micro(micro, Decimal(price)) == cents


def test_cents_of_micro_keeps_every_digit() -> None:
    # 1 credit at $0.00499...9 (30 nines) is 0.499...9 cents: 0. A 28-digit context would round the
    # price to $0.005 first and give 1.
    assert cents_of_micro(MICRO, Decimal("0.004" + "9" * 30)) == 0


@pytest.mark.parametrize(("value", "cents"), [
    (Decimal("66.000001"), 67), (Decimal("66"), 66), (Decimal("0.0001"), 1), (Decimal("-1.5"), -1),
])
def test_refund_money_rounds_up_to_the_cent(value: Decimal, cents: int) -> None:
    assert ceil_cents(value) == cents


def test_money_as_the_api_shows_it() -> None:
    assert money(200) == {"currency": "USD", "amount_minor": 200, "cents": 200}
    assert money(5, "EUR") == {"currency": "EUR", "amount_minor": 5}
    assert money(2800, "KRW") == {"currency": "KRW", "amount_minor": 2800}  # no minor unit: whole won


@pytest.mark.parametrize(("remaining", "burn", "hours"), [
    (50 * MICRO, 27_200_000, 1.84),  # 50 / 27.2 = 1.838...
    (5_000, 1_000_000, 0.01),  # 0.005 h: half up (half-even would give 0.0)
    (4_999, 1_000_000, 0.0),
    (15_000, 1_000_000, 0.02),  # 0.015: up
    (0, 1_000_000, 0.0), (0, 100, 0.0),
    (-5 * MICRO, 1_000_000, 0.0),  # nothing remains: 0, never negative
    (1_000_000, 1, 1_000_000.0), (3, 2, 1.5),  # a burn of 1 or 2 µcr an hour is a burn
])
def test_hours_left_to_the_hundredth(remaining: int, burn: int, hours: float) -> None:
    assert hours_left(remaining, burn) == hours


@pytest.mark.parametrize("burn", [0, -1])
def test_no_hours_left_without_a_burn(burn: int) -> None:
    assert hours_left(10 * MICRO, burn) is None
