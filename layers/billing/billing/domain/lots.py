"""Credit lots: the burn-down order, payment with debt, grants that repay debt, expiry and refund.

The one writer of lots and of the account's totals. Pure functions over
:class:`~billing.domain.model.AccountState`; every movement keeps the conservation identities
``granted = spent + expired + refunded + available`` and ``charged = spent + debt``.
"""

from __future__ import annotations

from datetime import datetime

from billing.domain.model import AccountState, CreditLot, LotAmount


def burn_order(lot: CreditLot) -> tuple[int, float, float, str]:
    """Free credits first, soonest expiry first (ties: oldest grant); then purchased, oldest first."""
    granted = lot.granted_at.timestamp()
    if lot.is_free:
        expires = lot.expires_at.timestamp() if lot.expires_at else float("inf")
        return (0, expires, granted, lot.lot_id)
    return (1, granted, 0.0, lot.lot_id)


def _reclaimable(lot: CreditLot, as_of: datetime, now: datetime) -> bool:
    """An expired lot still pays for usage that happened before it expired (a late event)."""
    return (
        lot.closed
        and lot.expired > 0
        and lot.expires_at is not None
        and lot.expires_at <= now
        and lot.usable_at(as_of)
    )


def pay(state: AccountState, amount: int, as_of: datetime, now: datetime) -> tuple[list[LotAmount], int]:
    """Spend ``amount`` µcr for usage settled as of ``as_of`` (the account's clock is ``now``).

    Lots usable at ``as_of`` pay first (for a late event this includes the written-off remainder of a
    lot that has expired since); then lots usable now; the rest becomes debt.
    Returns the lots that paid and the part recorded as debt.
    """
    if amount < 0:
        raise ValueError("a charge is never negative")
    state.totals.charged += amount
    left = amount
    paid: list[LotAmount] = []

    def take(lot: CreditLot, from_expired: bool) -> None:
        nonlocal left
        pool = lot.expired if from_expired else lot.remaining
        part = min(pool, left)
        if part <= 0:
            return
        if from_expired:
            lot.expired -= part
            state.totals.expired -= part
        else:
            lot.remaining -= part
        state.totals.spent += part
        left -= part
        paid.append(LotAmount(lot_id=lot.lot_id, amount=part))

    first = sorted(
        (lot for lot in state.lots if (not lot.closed and lot.usable_at(as_of)) or _reclaimable(lot, as_of, now)),
        key=burn_order,
    )
    for lot in first:
        if left == 0:
            break
        take(lot, from_expired=lot.closed)
    if left and now != as_of:
        seen = {lot.lot_id for lot in first}
        for lot in sorted(state.usable_lots(now), key=burn_order):
            if left == 0:
                break
            if lot.lot_id not in seen:
                take(lot, from_expired=False)
    if left:
        state.debt += left
    return paid, left


def give_back(state: AccountState, amount: int, as_of: datetime) -> tuple[list[LotAmount], int, int]:
    """Undo ``amount`` µcr of charges (a correction): debt first, then back to the lots.

    Credits go back in reverse burn order among lots usable at ``as_of`` (what was spent last comes
    back first), each lot at most what was spent from it; a lot that has expired since takes them
    back as written off. Returns (lots credited, debt forgiven, credits written off as expired).
    """
    state.totals.charged -= amount
    forgiven = min(state.debt, amount)
    state.debt -= forgiven
    left = amount - forgiven
    back: list[LotAmount] = []
    written_off = 0
    candidates = sorted(
        (lot for lot in state.lots if lot.usable_at(as_of) and lot.refunded == 0), key=burn_order, reverse=True
    )
    for lot in candidates:
        if left == 0:
            break
        spent_from_lot = lot.granted - lot.remaining - lot.expired - lot.refunded
        part = min(spent_from_lot, left)
        if part <= 0:
            continue
        if lot.closed:
            lot.expired += part
            state.totals.expired += part
            written_off += part
        else:
            lot.remaining += part
        state.totals.spent -= part
        left -= part
        back.append(LotAmount(lot_id=lot.lot_id, amount=part))
    if left:
        # Nothing left to return to (lots long pruned): the credit comes back as a lot of its own.
        lot = CreditLot(
            lot_id=f"correction-{as_of:%Y%m%d%H%M%S}-{len(state.lots)}",
            kind="event",
            granted=left,
            remaining=left,
            granted_at=as_of,
            reason="correction",
        )
        state.lots.append(lot)
        state.totals.spent -= left  # spent falls and available rises by the same: granted is unchanged
        back.append(LotAmount(lot_id=lot.lot_id, amount=left))
    return back, forgiven, written_off


def add_lot(state: AccountState, lot: CreditLot) -> int:
    """Add a granted lot; it repays debt first. Returns the µcr of debt it repaid."""
    state.lots.append(lot)
    state.totals.granted += lot.granted
    repaid = min(state.debt, lot.remaining)
    if repaid:
        lot.remaining -= repaid
        state.debt -= repaid
        state.totals.spent += repaid
    if state.debt == 0:
        state.exhausted = False
    return repaid


def expire_lots(state: AccountState, until: datetime) -> list[CreditLot]:
    """Write off the remainder of every open lot that expires at or before ``until``."""
    expired: list[CreditLot] = []
    due = [lot for lot in state.lots if not lot.closed and lot.expires_at is not None and lot.expires_at <= until]
    for lot in sorted(due, key=burn_order):
        lot.expired = lot.remaining
        state.totals.expired += lot.remaining
        lot.remaining = 0
        lot.closed = True
        expired.append(lot)
    return expired


def refund_lot(state: AccountState, lot: CreditLot, withheld: int = 0) -> int:
    """Take back what remains of a purchased lot but ``withheld`` µcr (kept to pay usage that
    happened and is not settled yet) and close it when nothing is withheld; returns the µcr taken."""
    kept = min(max(withheld, 0), lot.remaining)
    taken = lot.remaining - kept
    lot.refunded += taken
    state.totals.refunded += taken
    lot.remaining = kept
    lot.closed = kept == 0
    return taken


def expire_lot_now(state: AccountState, lot: CreditLot, at: datetime) -> int:
    """Write off what remains of a lot at ``at`` (before its own expiry) and close it."""
    written_off = lot.remaining
    lot.expired += written_off
    state.totals.expired += written_off
    lot.remaining = 0
    lot.closed = True
    lot.expires_at = min(lot.expires_at, at) if lot.expires_at else at
    return written_off
