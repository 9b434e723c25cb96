"""Exact amounts: integer micro-credits (µcr) and integer cents, decimal math, half-up rounding.

Every charge line is computed as a :class:`~decimal.Decimal` in credits and converted to µcr with
:func:`to_micro`, which is the one place a line is rounded (half-up, to a whole µcr).
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, localcontext

MICRO = 1_000_000  # µcr per credit
GIB = 2**30  # bytes in one traffic GB


def to_micro(credits: Decimal) -> int:
    """Round an exact credit amount once, half-up, to whole micro-credits."""
    with localcontext() as ctx:
        ctx.prec = 60
        return int((credits * MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


MAX_CREDITS = 10**15  # far above any real amount; keeps parsing bounded
_CREDITS_TEXT = re.compile(r"-?[0-9]{1,16}(\.[0-9]{1,18})?")


def micro_of_credits(value: str | int | Decimal) -> int:
    """Parse a credit amount that must be exact to the µcr ("13.6", 5, "0.000001").

    Text must be a plain decimal (no exponent) of bounded length, so no input can make the parse
    expensive; amounts beyond 10^15 credits are refused."""
    if isinstance(value, bool):
        raise ValueError(f"not a credit amount: {value!r}")
    if isinstance(value, str):
        if not _CREDITS_TEXT.fullmatch(value):
            raise ValueError(f"not a credit amount: {value[:40]!r}")
        d = Decimal(value)
    elif isinstance(value, int):
        if abs(value) > MAX_CREDITS:
            raise ValueError("credit amount out of range")
        d = Decimal(value)
    else:
        d = value
    if not d.is_finite() or abs(d) > MAX_CREDITS:
        raise ValueError(f"not a credit amount: {value!r}")
    micro = d * MICRO
    if micro != micro.to_integral_value():
        raise ValueError(f"credit amount finer than one micro-credit: {value!r}")
    return int(micro)


def format_credits(micro: int) -> str:
    """µcr as the API's credit string with 6 decimals: 13600000 -> "13.600000"."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}.{frac:06d}"


def cents_of_micro(micro: int, credit_price_usd: Decimal) -> int:
    """Credits shown in dollars at a price per credit: rounded once, half-up, to a whole cent."""
    with localcontext() as ctx:
        ctx.prec = 60
        cents = Decimal(micro) / MICRO * credit_price_usd * 100
        return int(cents.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def ceil_cents(value: Decimal) -> int:
    """Round a money amount in cents up to a whole cent (refunds round in the user's favour)."""
    return int(value.to_integral_value(rounding=ROUND_CEILING))


# Digits of each sold currency's minor unit (ISO 4217): KRW has none, so its minor unit is the won.
MINOR_UNIT_DIGITS = {"USD": 2, "EUR": 2, "KRW": 0}
CURRENCIES = tuple(MINOR_UNIT_DIGITS)


def money(amount_minor: int, currency: str = "USD") -> dict[str, object]:
    """Money as the API shows it: ``{"currency", "amount_minor"}``, and ``cents`` as well for USD
    (the original shape, kept for clients that read it)."""
    if currency == "USD":
        return {"currency": currency, "amount_minor": amount_minor, "cents": amount_minor}
    return {"currency": currency, "amount_minor": amount_minor}


def price_minor(credits: int, unit_price: Decimal, currency: str) -> int:
    """``credits`` whole credits at ``unit_price`` (major units per credit) in the currency's minor
    unit, exact and rounded up to it (billing-rules.md: every rounding up to the minor unit)."""
    with localcontext() as ctx:
        ctx.prec = 60
        value = Decimal(credits) * unit_price * (10 ** MINOR_UNIT_DIGITS[currency])
        return int(value.to_integral_value(rounding=ROUND_CEILING))


def hours_left(remaining: int, burn: int) -> float | None:
    """How long ``remaining`` µcr last at ``burn`` µcr per hour, to the hundredth of an hour (half-up);
    0 when nothing remains, None without a burn. A display figure, never an amount."""
    if burn <= 0:
        return None
    hours = Decimal(max(remaining, 0)) / Decimal(burn)
    return float(hours.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
