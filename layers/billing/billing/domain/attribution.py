"""Attribution never blocks a charge (billing-rules.md, "Where features meet").

An account keeps at most :data:`MAX_COMBINATIONS` distinct label combinations per UTC day in its
usage aggregates; usage of a further combination keeps its keys, each with the value ``_other``.
Those ``_other`` combinations are bounded too (:data:`MAX_OTHER`); past them usage goes to the one
combination ``other=_other``. The days' combinations are known by short hashes on the balance
(:class:`~billing.domain.model.LabelDays`; an earlier day's while they are few, then its count),
A line's member (``user_id``) is one more attribution: it counts in the combination with the labels,
and past the bound is attributed to ``_other`` too (``attributed_user``; ``user_id`` is kept for the
member's limit). A combination without a member hashes as it always did.
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


def combination(labels: dict[str, str], user: str | None = None) -> str:
    """A short, stable hash of a label combination and member (length-prefixed pairs, sorted)."""
    text = "|".join(f"{len(k)}:{k}={len(v)}:{v}" for k, v in sorted(labels.items()))
    if user is not None:  # "@" is no label key's first character: no combination of labels alone meets it
        text += f"|@user={len(user)}:{user}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _admit(days: LabelDays, day: str, labels: dict[str, str], limit: int, user: str | None = None) -> bool:
    """Whether ``labels`` may be kept in ``day``'s aggregates (and count it there). A day whose
    combinations are known admits each once; a day that only kept its count (a late event's day,
    when earlier days' combinations were too many to keep) counts every admission as a new one."""
    if day in days.counted:
        if days.counted[day] >= limit:
            return False
        days.counted[day] += 1
        return True
    known = days.combinations if day == days.day else days.past.setdefault(day, [])
    key = combination(labels, user)
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
    return bounded_attribution(state, at, labels, None)[0]


def bounded_attribution(
    state: AccountState, at: datetime, labels: dict[str, str], user: str | None
) -> tuple[dict[str, str], str | None]:
    """The labels and member usage deducted at ``at`` is attributed to in the aggregates: as given
    while the day has room, else ``_other`` values (and member ``_other``), else ``other=_other``."""
    days = state.label_days
    day = at.date().isoformat()
    if day > days.day:
        _roll(days, day)
    if _admit(days, day, labels, MAX_COMBINATIONS, user):
        return labels, user
    other_user = OTHER if user is not None else None
    other = dict.fromkeys(labels, OTHER)
    if _admit(days, day, other, MAX_COMBINATIONS + MAX_OTHER, other_user):
        return other, other_user
    # always room: one slot is kept for it (with or without a member: two, both counted in MAX_OTHER's margin)
    _admit(days, day, CATCH_ALL, MAX_COMBINATIONS + MAX_OTHER + 2, other_user)
    return dict(CATCH_ALL), other_user


def bounded_lines(state: AccountState, at: datetime, lines: Iterable[ChargeLine]) -> list[ChargeLine]:
    """The lines of an entry at ``at`` with their labels bounded; lines that overflowed into one
    ``_other`` combination are merged (same item, run, month and labels), so the entry stays bounded."""
    out: list[ChargeLine] = []
    merged: dict[tuple[object, ...], int] = {}
    for line in lines:
        if not line.labels and line.user_id is None:
            out.append(line)
            continue
        labels, user = bounded_attribution(state, at, line.labels or {}, line.user_id)
        if labels == (line.labels or {}) and user == line.user_id:
            out.append(line)
            continue
        # user_id stays in the key: a member's limit counts their own lines, whatever the aggregates say
        key = (line.resource, line.item, line.month, line.container_id, line.run_id, line.user_id,
               tuple(sorted(labels.items())))
        if key not in merged:
            merged[key] = len(out)
            attributed = user if user != line.user_id else None
            out.append(replace(line, labels=labels or None, attributed_user=attributed))
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
