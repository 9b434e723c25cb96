"""The reconciliation's checks (billing-rules.md, "Credit lots": conservation at every moment): an
account driven through the rules reconciles; each stored figure changed by one µcr is named."""

from __future__ import annotations

from datetime import date

import pytest
from msgspec.structs import replace

from billing.domain import credits, reconciliation, settle
from billing.domain.model import SCHEMA, ChargeLine, LedgerEntry, LotAmount
from billing.domain.reconciliation import AccountItems, check_account, check_books, ledger_figures, ledger_usage
from billing.domain.usage import Cell
from tests.domain.accounts import GIB, Account, C, t


def busy() -> Account:
    """A month of everything: storage, runs (one into debt), a grant that repays it, a coupon that
    expires unspent, a purchase and its refund, a late stop corrected after the boundary, the new
    month's grant."""
    a = Account("2026-03-01T00:00:00Z")
    a.create("2026-03-02T10:00:00Z", "c1", 8)
    a.start("2026-03-02T10:00:00Z", "c1", "r1", "large")
    a.stop("2026-03-02T12:00:00Z", "c1", "r1", traffic=11 * GIB)  # 54.4 + 0.108 + 8: into debt
    a.do(credits.grant, "2026-03-03T00:00:00Z", "event", 100 * C, None, "support")
    a.do(credits.grant, "2026-03-03T00:00:00Z", "coupon", 5 * C, t("2026-03-20T00:00:00Z"), "coupon:X")
    a.do(credits.purchased, "2026-03-04T00:00:00Z", "pur_1", 100)
    refund = a.book()
    credits.refund(refund, "pur_1", t("2026-03-05T00:00:00Z"))
    a.commit(refund)
    a.start("2026-03-31T22:00:00Z", "c1", "r2", "small")
    a.do(settle.sweep, "2026-04-01T00:00:00Z")
    a.stop("2026-03-31T23:00:00Z", "c1", "r2")  # late: 1 h of small given back
    return a


def items(a: Account) -> AccountItems:
    return AccountItems(state=a.state, containers=list(a.containers.values()), entries=a.entries,
                        usage=ledger_usage(a.entries))


def test_an_account_driven_through_the_rules_reconciles() -> None:
    a = busy()
    assert {e.type for e in a.entries} == {"grant", "deduction", "debt", "refund", "expiry", "correction"}
    assert check_account(items(a), a.catalog) == []
    f = ledger_figures(a.entries)
    assert (f.granted, f.refunded, f.debt, f.charged, f.problems) == (
        a.state.totals.granted, a.state.totals.refunded, a.state.debt, a.state.totals.charged, [])
    assert f.charged == f.charged_by_amounts


@pytest.mark.parametrize(("figure", "reason"), [
    ("granted", "granted: stored"), ("spent", "spent: stored"), ("expired", "expired: stored"),
    ("refunded", "refunded: stored"), ("charged", "charged: stored"),
])
def test_a_total_off_by_one_is_named(figure: str, reason: str) -> None:
    a = busy()
    setattr(a.state.totals, figure, getattr(a.state.totals, figure) + 1)
    reasons = check_books(a.state, ledger_figures(a.entries))
    assert any(r.startswith(reason) for r in reasons), reasons
    assert any(r.startswith("balance not conserved") for r in reasons), reasons


def test_debt_and_lots_off_by_one_are_named() -> None:
    a = busy()
    a.state.debt += 1
    reasons = check_books(a.state, ledger_figures(a.entries))
    assert "debt: stored 1 != ledger 0" in reasons and any("charged" in r for r in reasons)
    a = busy()
    lot = next(x for x in a.state.lots if not x.closed)
    lot.remaining += 1
    reasons = check_books(a.state, ledger_figures(a.entries))
    assert any(r.startswith(f"lot {lot.lot_id}: remaining") for r in reasons), reasons
    assert any(r.startswith("available: stored") for r in reasons), reasons
    a = busy()
    lot = a.state.lots[-1]
    lot.granted += 1
    assert f"lot {lot.lot_id}: granted {lot.granted} != ledger {lot.granted - 1}" in check_books(
        a.state, ledger_figures(a.entries))
    a = busy()
    refunded = next(x for x in a.state.lots if x.refunded)
    refunded.refunded -= 1
    assert any(r.startswith(f"lot {refunded.lot_id}: refunded") for r in check_books(a.state,
                                                                                      ledger_figures(a.entries)))


def test_a_lot_the_ledger_never_granted_and_a_lot_open_past_its_expiry_are_named() -> None:
    a = busy()
    a.state.lots.append(replace(a.state.lots[-1], lot_id="ghost"))
    assert "lot ghost: no grant in the ledger" in check_books(a.state, ledger_figures(a.entries))
    a = busy()
    lot = next(x for x in a.state.lots if not x.closed)
    lot.expires_at = a.state.as_of
    assert f"lot {lot.lot_id}: open after its expiry 2026-04-01T00:00:00Z" in check_books(
        a.state, ledger_figures(a.entries))
    a = busy()
    closed = next(x for x in a.state.lots if x.closed and x.expired)  # the coupon, 5 written off
    closed.closed = False
    reasons = check_books(a.state, ledger_figures(a.entries))
    assert any(r.startswith(f"lot {closed.lot_id}: remaining") and "closed False" in r for r in reasons), reasons


def test_the_months_charges_are_checked_for_this_and_last_month() -> None:
    a = busy()
    a.state.month_charged["2026-03"] += 1
    reasons = check_books(a.state, ledger_figures(a.entries))
    assert [r for r in reasons if r.startswith("month")] == [
        f"month 2026-03 charged: stored {a.state.month_charged['2026-03']} != ledger "
        f"{a.state.month_charged['2026-03'] - 1}"]
    a.state.month_charged["2026-03"] -= 1
    a.state.month_charged["2026-04"] = 1
    assert "month 2026-04 charged: stored 1 != ledger 0" in check_books(a.state, ledger_figures(a.entries))


def test_negative_debt_is_named() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.state.debt = -1
    assert "debt -1 is negative" in check_books(a.state, ledger_figures(a.entries))


def entry(type_: str, amount: int, *, paid: int | None = None, lines: int | None = None, reason: str = "r",
          lot_id: str | None = None) -> LedgerEntry:
    return LedgerEntry(
        entry_id=f"e:{type_}", type=type_, amount=amount, at=t("2026-03-02T00:00:00Z"), reason=reason,  # type: ignore[arg-type]
        event_id="e", lot_id=lot_id,
        lines=[] if lines is None else [ChargeLine(resource="ai", item="chat", amount=lines, month="2026-03")],
        paid_by=[] if paid is None else [LotAmount(lot_id="l", amount=paid)])


def test_ledger_entries_that_do_not_add_up_are_named() -> None:
    f = ledger_figures([entry("deduction", 5, paid=4, lines=5)])
    assert f.problems == ["entry e:deduction: deduction of 5 paid by lots 4"]
    assert "entry e:debt: debt repaid 5 by lots 3" in ledger_figures(
        [entry("debt", 5, paid=3, reason="debt_repaid")]).problems
    assert "entry e:correction: correction of 5 with lines of 4" in ledger_figures(
        [entry("correction", 5, paid=0, lines=4)]).problems
    assert "entry e:correction: correction of 5 gave back 6" in ledger_figures(
        [entry("correction", 5, paid=6, lines=5)]).problems
    assert ledger_figures([entry("debt", 5, lines=None)]).problems == ["charge lines 0 != deductions and debt 5"]


def test_the_ledgers_figures_by_hand() -> None:
    """grant 10 to lot g; deduction 7 (lines 7) paid by g; debt 3 (lines counted with the deduction's);
    debt repaid 2 by g; correction 4 (lines 4) of which 1 back to g and 3 forgiven; refund 1 of lot g."""
    entries = [
        entry("grant", 10 * C, lot_id="g"),
        LedgerEntry(entry_id="d", type="deduction", amount=7 * C, at=t("2026-03-02T00:00:00Z"), reason="r",
                    event_id="e", lines=[ChargeLine(resource="ai", item="chat", amount=10 * C, month="2026-03")],
                    paid_by=[LotAmount(lot_id="g", amount=7 * C)]),
        entry("debt", 3 * C, reason="insufficient_credits"),
        LedgerEntry(entry_id="r", type="debt", amount=2 * C, at=t("2026-03-02T00:00:00Z"), reason="debt_repaid",
                    event_id="e", paid_by=[LotAmount(lot_id="g", amount=2 * C)]),
        LedgerEntry(entry_id="c", type="correction", amount=4 * C, at=t("2026-03-03T00:00:00Z"), reason="r",
                    event_id="e", lines=[ChargeLine(resource="ai", item="chat", amount=4 * C, month="2026-03")],
                    paid_by=[LotAmount(lot_id="g", amount=1 * C)]),
        LedgerEntry(entry_id="f", type="refund", amount=1 * C, at=t("2026-03-03T00:00:00Z"), reason="r",
                    event_id="e", lot_id="g"),
    ]
    f = ledger_figures(entries)
    assert (f.granted, f.spent, f.refunded, f.debt, f.charged, f.charged_by_amounts, f.problems) == (
        10 * C, 7 * C + 2 * C - 1 * C, 1 * C, 3 * C - 2 * C - 3 * C, 6 * C, 6 * C, [])
    g = f.lots["g"]
    assert (g.granted, g.used, g.refunded, g.has_grant, g.unspent) == (10 * C, 8 * C, 1 * C, True, 1 * C)
    assert dict(f.month_charged) == {"2026-03": 6 * C}


# ---------------------------------------------------------------- containers and usage


def test_the_container_aggregates_are_checked_against_the_container_items() -> None:
    a = Account("2026-03-01T00:00:00Z")
    a.create("2026-03-02T10:00:00Z", "c1", 8)
    a.create("2026-03-02T10:00:00Z", "c2", 1)
    a.start("2026-03-02T10:00:00Z", "c1", "r1", "small")
    containers = list(a.containers.values())
    assert reconciliation.check_containers(a.state, containers, a.catalog) == []
    c1 = a.containers["c1"]
    assert reconciliation.check_containers(a.state, [replace(c1, counted=False), a.containers["c2"]],
                                           a.catalog)[:1] == ["container c1: counted False, should be True"]
    reasons = reconciliation.check_containers(a.state, [c1], a.catalog)
    assert "containers_count: stored 2 != 1 container items" in reasons
    assert "container_ids: stored ['c1', 'c2'] != ['c1']" in reasons
    a.state.accrual = replace(a.state.accrual)
    tampered = replace(c1, runs={})
    reasons = reconciliation.check_containers(a.state, [tampered, a.containers["c2"]], a.catalog)
    assert "container c1: stored accrual differs from its runs and storage" in reasons
    assert "open accruals: the balance's sum differs from the container items'" in reasons
    a.state.container_ids = None  # more than are listed: not compared
    assert reconciliation.check_containers(a.state, containers, a.catalog) == []


def test_usage_days_are_checked_cell_by_cell() -> None:
    a = busy()
    derived = ledger_usage(a.entries)
    assert reconciliation.check_usage(derived, derived) == []
    day = date(2026, 3, 2)
    stored = {k: dict(v) for k, v in derived.items()}
    cell = next(iter(stored[(day, "c1")]))
    stored[(day, "c1")][cell] += 1
    stored[(date(2026, 3, 9), None)] = {(1, Cell("ai")): 5}
    total = sum(derived[(day, "c1")].values())
    assert reconciliation.check_usage(stored, derived) == [
        f"usage 2026-03-02 (container c1): 1 cells differ, stored {total + 1} != ledger {total}",
        "usage 2026-03-09 (account): 1 cells differ, stored 5 != ledger 0"]
    # only cells with an amount are kept
    assert all(amount for cells in derived.values() for amount in cells.values())


def test_an_old_balance_item_is_sent_to_the_migration() -> None:
    a = busy()
    a.state.schema = SCHEMA - 1
    assert check_account(items(a), a.catalog) == [
        f"schema {SCHEMA - 1} balance item: run python -m billing.store.migration"]
