"""Attribution never blocks a charge (billing-rules.md, "Where features meet").

An account keeps at most :data:`MAX_COMBINATIONS` distinct label combinations per UTC day in its
usage aggregates; usage of a further combination keeps its keys, each with the value ``_other``.
Those ``_other`` combinations are bounded too (:data:`MAX_OTHER`); past them usage goes to the one
combination ``other=_other``. The days' combinations are known by short hashes on the balance
(:class:`~billing.domain.model.LabelDays`; an earlier day's while they are few, then its count),
so the mapping is decided when the ledger entry is written and the aggregates, the ledger and the
reconciliation all see the same labels. Amounts are never touched. A container's label history is
pruned to what still-unbilled usage can need.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta

from msgspec.structs import replace

from billing.domain.model import AccountState, ChargeLine, Container, LabelDays

MAX_COMBINATIONS = 200  # distinct label combinations a day, as given
MAX_OTHER = 16  # combinations of ``_other`` values a day (one per key set that overflowed)
OTHER = "_other"
CATCH_ALL = {"other": OTHER}
MAX_LABEL_HISTORY = 64  # label changes a container keeps (older ones serve late usage only)
_KEPT_DAYS = 32  # earlier days remembered (older usage is refused at the intake)
PAST_BUDGET = 256  # hashes of earlier days' combinations kept on the balance (about 3.5 KB)


def combination(labels: dict[str, str]) -> str:
    """A short, stable hash of a label combination (length-prefixed pairs, sorted)."""
    text = "|".join(f"{len(k)}:{k}={len(v)}:{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _admit(days: LabelDays, day: str, labels: dict[str, str], limit: int) -> bool:
    """Whether ``labels`` may be kept in ``day``'s aggregates (and count it there). A day whose
    combinations are known admits each once; a day that only kept its count (a late event's day,
    when earlier days' combinations were too many to keep) counts every admission as a new one."""
    if day in days.counted:
        if days.counted[day] >= limit:
            return False
        days.counted[day] += 1
        return True
    known = days.combinations if day == days.day else days.past.setdefault(day, [])
    key = combination(labels)
    if key in known:
        return True
    if len(known) >= limit:
        return False
    known.append(key)
    _trim(days)
    return True


def _trim(days: LabelDays) -> None:
    """Earlier days keep their combinations within :data:`PAST_BUDGET` hashes, the oldest first
    giving them up for their count."""
    while sum(len(known) for known in days.past.values()) > PAST_BUDGET:
        oldest = min(days.past)
        days.counted[oldest] = len(days.past.pop(oldest))


def _roll(days: LabelDays, day: str) -> None:
    """A new latest day: the one before becomes an earlier day."""
    if days.day:
        days.past[days.day] = days.combinations
    days.day, days.combinations = day, []
    oldest = (datetime.fromisoformat(day) - timedelta(days=_KEPT_DAYS)).date().isoformat()
    days.past = {d: known for d, known in days.past.items() if d >= oldest}
    days.counted = {d: n for d, n in days.counted.items() if d >= oldest}
    _trim(days)


def bounded(state: AccountState, at: datetime, labels: dict[str, str]) -> dict[str, str]:
    """The labels usage deducted at ``at`` is attributed to in the aggregates."""
    days = state.label_days
    day = at.date().isoformat()
    if day > days.day:
        _roll(days, day)
    if _admit(days, day, labels, MAX_COMBINATIONS):
        return labels
    other = dict.fromkeys(labels, OTHER)
    if _admit(days, day, other, MAX_COMBINATIONS + MAX_OTHER):
        return other
    _admit(days, day, CATCH_ALL, MAX_COMBINATIONS + MAX_OTHER + 1)  # always room: one slot is kept for it
    return dict(CATCH_ALL)


def bounded_lines(state: AccountState, at: datetime, lines: Iterable[ChargeLine]) -> list[ChargeLine]:
    """The lines of an entry at ``at`` with their labels bounded; lines that overflowed into one
    ``_other`` combination are merged (same item, run, month and labels), so the entry stays bounded."""
    out: list[ChargeLine] = []
    merged: dict[tuple[object, ...], int] = {}
    for line in lines:
        if not line.labels:
            out.append(line)
            continue
        labels = bounded(state, at, line.labels)
        if labels == line.labels:
            out.append(line)
            continue
        key = (line.resource, line.item, line.month, line.container_id, line.run_id, line.user_id,
               tuple(sorted(labels.items())))
        if key not in merged:
            merged[key] = len(out)
            out.append(replace(line, labels=labels))
            continue
        first = out[merged[key]]
        out[merged[key]] = replace(
            first, amount=first.amount + line.amount, end=line.end or first.end,
            seconds=(first.seconds or 0) + (line.seconds or 0) if first.seconds is not None else None,
            traffic_bytes=(first.traffic_bytes or 0) + (line.traffic_bytes or 0)
            if first.traffic_bytes is not None else None,
        )
    return out


def prune_labels(c: Container, at: datetime) -> None:
    """Keep the label changes still-unbilled usage may need: those after the earliest time the
    container's runs or storage are billed to (and the one in effect then), at most
    :data:`MAX_LABEL_HISTORY` of them."""
    billed = [r.billed_until or r.started_at for r in c.runs.values() if r.started_at is not None]
    if c.storage_billed_until is not None:
        billed.append(c.storage_billed_until)
    floor = min((t for t in billed if t is not None), default=at)
    first = 0
    for index, (since, _) in enumerate(c.labels):
        if since <= floor:
            first = index
    c.labels = c.labels[first:][-MAX_LABEL_HISTORY:]
