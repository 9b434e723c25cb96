"""Posting (billing-rules.md, "When credits are deducted", "Effects of a settlement"): one deduction
per month paid as of that month, debt recorded beside it, corrections given back first, stable ids
for entries and effects so a retried event writes the very same ones."""

from __future__ import annotations

from billing.domain import rollover
from billing.domain.catalog import load_catalog
from billing.domain.model import ChargeLine, Mail, OutboundEvent, Work
from billing.domain.posting import Book, effect_id
from tests.domain.accounts import C, assert_conserved, t

CATALOG = load_catalog()


def book(at: str = "2026-03-01T00:00:00Z", event_id: str = "ev") -> Book:
    """A Free account opened at ``at`` (50 credits, monthly lot ``monthly-YYYY-MM``)."""
    opened = rollover.open_account("acct", "a@example.com", "free", t(at), CATALOG, "open")
    return Book(opened.state, CATALOG, event_id)


def line(amount: int, month: str = "2026-03", resource: str = "container", item: str = "small") -> ChargeLine:
    return ChargeLine(resource=resource, item=item, amount=amount, month=month)  # type: ignore[arg-type]


def test_one_deduction_per_month_each_paid_as_of_that_month() -> None:
    b = book()
    rollover.advance_to(b, t("2026-04-01T00:00:00Z"))  # April's lot granted, March's (50) expired
    b.entries.clear()
    b.charge([line(3 * C, "2026-04"), line(2 * C, "2026-03"), line(1 * C, "2026-04", "storage", "storage")])
    assert b.pending == 6 * C
    b.flush(t("2026-04-02T10:00:00Z"), "container_stopped")
    assert b.pending == 0
    march, april = b.entries
    # March's part as of March's last second, from March's (written-off) lot; April's at the time given
    assert (march.entry_id, march.type, march.amount, march.at, march.reason) == (
        "ev:001", "deduction", 2 * C, t("2026-03-31T23:59:59Z"), "container_stopped")
    assert [(p.lot_id, p.amount) for p in march.paid_by] == [("monthly-2026-03", 2 * C)]
    assert (april.entry_id, april.amount, april.at) == ("ev:002", 4 * C, t("2026-04-02T10:00:00Z"))
    assert [ln.amount for ln in april.lines] == [3 * C, 1 * C]
    assert b.state.month_charged == {"2026-03": 2 * C, "2026-04": 4 * C}
    assert_conserved(b.state)


def test_a_deduction_beyond_the_balance_records_the_debt_beside_it() -> None:
    b = book()
    b.charge([line(56_500_000)])
    b.flush(t("2026-03-05T00:00:00Z"), "container_stopped")
    deduction, debt = b.entries
    assert (deduction.type, deduction.amount) == ("deduction", 50 * C)
    assert (debt.type, debt.amount, debt.reason, debt.at, debt.entry_id) == (
        "debt", 6_500_000, "insufficient_credits", t("2026-03-05T00:00:00Z"), "ev:002")
    assert b.state.debt == 6_500_000 and b.state.month_charged["2026-03"] == 56_500_000
    assert_conserved(b.state)


def test_lines_of_nothing_write_nothing_unless_they_are_container_time() -> None:
    b = book()
    b.charge([line(0, resource="storage", item="storage"), line(0, resource="traffic", item="traffic")])
    b.flush(t("2026-03-05T00:00:00Z"), "container_stopped")
    assert b.entries == []
    # a month with nothing to deduct does not stop the months after it from being deducted
    b.charge([line(0, "2026-02", "storage", "storage"), line(2 * C, "2026-03")])
    b.flush(t("2026-03-05T00:00:00Z"), "container_stopped")
    [later] = b.entries
    assert (later.amount, later.at, later.event_id) == (2 * C, t("2026-03-05T00:00:00Z"), "ev")
    b.entries.clear()
    b.charge([line(0)])  # a run of 0 s still shows in the container log
    b.flush(t("2026-03-05T00:00:00Z"), "container_stopped")
    [entry] = b.entries
    assert (entry.type, entry.amount, len(entry.lines)) == ("deduction", 0, 1)


def test_a_correction_is_given_back_before_the_new_charges() -> None:
    b = book()
    b.charge([line(10 * C)])
    b.flush(t("2026-03-05T00:00:00Z"), "first")
    b.correct([line(4 * C)])
    b.charge([line(1 * C)])
    assert b.pending == -3 * C
    b.flush(t("2026-03-06T00:00:00Z"), "late_stop")
    _, correction, deduction = b.entries
    assert (correction.type, correction.amount, correction.at, correction.reason) == (
        "correction", 4 * C, t("2026-03-06T00:00:00Z"), "late_stop")
    assert [(p.lot_id, p.amount) for p in correction.paid_by] == [("monthly-2026-03", 4 * C)]
    assert (deduction.type, deduction.amount) == ("deduction", 1 * C)
    assert b.state.available() == 50 * C - 7 * C and b.state.totals.charged == 7 * C
    assert_conserved(b.state)
    b.flush(t("2026-03-07T00:00:00Z"), "again")  # nothing collected: nothing written
    assert len(b.entries) == 3


def test_a_correction_to_a_lot_expired_since_records_what_is_written_off() -> None:
    b = book()
    b.charge([line(10 * C)])
    b.flush(t("2026-03-05T00:00:00Z"), "first")
    rollover.advance_to(b, t("2026-04-01T00:00:00Z"))
    b.entries.clear()
    b.correct([line(4 * C)])
    b.flush(t("2026-03-05T00:00:00Z"), "late_stop")
    correction, expiry = b.entries
    assert (correction.type, correction.amount) == ("correction", 4 * C)
    assert (expiry.type, expiry.amount, expiry.reason, expiry.at) == (
        "expiry", 4 * C, "corrected_credits_of_expired_lots", t("2026-03-05T00:00:00Z"))
    assert_conserved(b.state)


def test_a_grant_repays_debt_and_says_so() -> None:
    b = book()
    b.charge([line(60 * C)])
    b.flush(t("2026-03-05T00:00:00Z"), "stop")
    b.entries.clear()
    lot = b.grant("event", 25 * C, t("2026-03-06T00:00:00Z"), None, "support")
    assert (lot.lot_id, lot.kind, lot.granted, lot.remaining, lot.reason, lot.purchase_id) == (
        "event-ev", "event", 25 * C, 15 * C, "support", None)
    grant, repaid = b.entries
    assert (grant.type, grant.amount, grant.lot_id, grant.reason) == ("grant", 25 * C, "event-ev", "support")
    assert (repaid.type, repaid.amount, repaid.reason, repaid.at) == (
        "debt", 10 * C, "debt_repaid", t("2026-03-06T00:00:00Z"))
    assert [(p.lot_id, p.amount) for p in repaid.paid_by] == [("event-ev", 10 * C)]
    other = b.grant("purchased", 5 * C, t("2026-03-06T00:00:00Z"), None, "bought", lot_id="mine", purchase_id="p1")
    assert (other.lot_id, other.purchase_id, len(b.entries)) == ("mine", "p1", 3)  # no debt: no debt entry
    assert_conserved(b.state)


def test_entry_and_effect_ids_are_derived_from_the_event_so_a_retry_writes_the_same() -> None:
    first, retry = book(event_id="e-1"), book(event_id="e-1")
    for b in (first, retry):
        b.charge([line(1 * C)])
        b.flush(t("2026-03-05T00:00:00Z"), "stop")
        b.emit("Credits Exhausted", debt="0.000000")
        b.mail("low_balance", remaining="1.000000")
        b.work("month_close", t("2026-04-01T00:00:00Z"), skip=["b", "a"])
    assert [e.entry_id for e in first.entries] == [e.entry_id for e in retry.entries] == ["e-1:001"]
    assert first.effects == retry.effects
    event, mail, work = first.effects
    assert isinstance(event, OutboundEvent) and isinstance(mail, Mail) and isinstance(work, Work)
    assert event.detail == {"account_id": "acct", "debt": "0.000000", "effect_id": effect_id("acct", "e-1", 1)}
    assert (mail.effect_id, mail.template, mail.to, mail.data) == (
        effect_id("acct", "e-1", 2), "low_balance", "a@example.com", {"remaining": "1.000000"})
    assert (work.effect_id, work.kind, work.account_id, work.at, work.skip) == (
        effect_id("acct", "e-1", 3), "month_close", "acct", t("2026-04-01T00:00:00Z"), ["a", "b"])
    assert first.outbox == [event] and first.emitted("Credits Exhausted") and not first.emitted("Mail")
    assert len({effect_id("acct", "e-1", 1), effect_id("acct", "e-1", 2), effect_id("acct", "e-2", 1),
                effect_id("acct1", "e-1", 1), effect_id("acct", "1|e-1", 1)}) == 5
    assert len(effect_id("acct", "e-1", 1)) == 32
    # the parts are length-prefixed: ("a|1", "b") and ("a", "1|b") are different events
    assert effect_id("a|1", "b", 1) != effect_id("a", "1|b", 1)
    assert book().work("month_close", t("2026-04-01T00:00:00Z")) is None


def test_a_purchase_created_with_the_change_is_kept_for_the_ledger() -> None:
    from billing.domain.model import Purchase

    b = book()
    p = Purchase(purchase_id="p", account_id="acct", credits=100, price_cents=200, created_at=t("2026-03-02T00:00:00Z"))
    b.create_purchase(p)
    assert b.purchases == [p]
