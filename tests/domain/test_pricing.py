"""Charge lines priced exactly and rounded once, half-up (billing-rules.md, "Units and exactness")."""

from __future__ import annotations

from decimal import Decimal

from billing.domain import pricing
from billing.domain.amounts import to_micro
from billing.domain.catalog import load_catalog
from billing.domain.model import Container, Run
from tests.domain.accounts import C, t

CATALOG = load_catalog()


def test_a_run_is_cut_at_the_month_boundary_and_each_piece_rounded_on_its_own():
    c = Container(container_id="c1")
    run = Run(run_id="r1", tier="small", code_supporter=True)
    lines = pricing.run_lines(CATALOG, c, run, t("2026-03-31T23:00:00Z"), t("2026-04-01T00:00:20Z"))
    # March: 1 h of small 6.80 and Code Supporter 1.96; April: 20 s of each.
    assert [(ln.month, ln.item, ln.seconds, ln.amount) for ln in lines] == [
        ("2026-03", "small", 3600, 6_800_000),
        ("2026-03", "code_supporter", 3600, 1_960_000),
        ("2026-04", "small", 20, 37_778),  # 6.80 x 20 / 3600 = 0.0377777... -> 37,778 µcr
        ("2026-04", "code_supporter", 20, 10_889),  # 1.96 x 20 / 3600 = 0.0108888... -> 10,889 µcr
    ]


def test_code_supporter_is_free_on_gpu_tiers():
    lines = pricing.run_lines(CATALOG, Container(container_id="g"), Run(run_id="r", tier="gpu-t4", code_supporter=True),
                              t("2026-03-02T10:00:00Z"), t("2026-03-02T11:00:00Z"))
    assert [(ln.item, ln.amount) for ln in lines] == [("gpu-t4", 51_760_000)]


def test_half_up_rounding_of_a_line():
    assert to_micro(Decimal("0.0000005")) == 1
    assert to_micro(Decimal("0.00000049")) == 0


def test_traffic_beyond_the_monthly_allowance():
    free = 10 * 2**30
    assert pricing.billable_traffic(free, 9 * 2**30, 3 * 2**30) == 2 * 2**30
    assert pricing.billable_traffic(free, 11 * 2**30, 2**30) == 2**30
    assert pricing.billable_traffic(free, 0, 2**30) == 0


def test_an_ai_use_is_one_line_at_the_models_prices():
    line = pricing.ai_line(CATALOG, t("2026-03-02T10:00:00Z"), "chat", "claude-sonnet-4.5", 1000, 500, None)
    # 1000 x 0.00024 + 500 x 0.0012 = 0.84 credits
    assert line.amount == 840_000 and line.month == "2026-03"
    assert C == 1_000_000
