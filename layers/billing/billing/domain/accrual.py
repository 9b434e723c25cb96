"""What containers accrue and how it is settled: run time, Code Supporter, storage and traffic.

Each function adds charge lines (or corrections) to a :class:`~billing.domain.posting.Book` and moves
the container's "billed until" marks; :meth:`Book.flush` then deducts them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from billing.domain import pricing
from billing.domain.clock import month_key
from billing.domain.model import Container, Run
from billing.domain.posting import Book


def container(book: Book, container_id: str, at: datetime) -> Container:
    """The container, known from its first event whatever that event is."""
    c = book.containers.get(container_id)
    c.seen_until = max(c.seen_until or at, at)
    return c


def open_run(c: Container, run_id: str) -> Run | None:
    """The run, created on its first event (start or stop, whichever comes first); None when it was
    settled and closed already."""
    run = c.runs.get(run_id)
    if run is None and run_id not in c.closed_runs:
        run = c.runs[run_id] = Run(run_id=run_id)
    return run


def settle_storage(book: Book, c: Container, until: datetime) -> None:
    """Charge the container's storage from where it was billed to ``until``."""
    if c.created_at is None or not c.sizes:
        return
    start = c.storage_billed_until or c.created_at
    end = min(until, c.deleted_at) if c.deleted_at else until
    if end > start:
        amounts = pricing.storage_amounts(book.catalog, book.state, c, start, end)
        book.charge(
            pricing.storage_line(book.catalog, book.state, c, key, value, span)
            for key, (value, span) in amounts.items()
        )
    if c.storage_billed_until is None or until > c.storage_billed_until:
        c.storage_billed_until = max(until, c.created_at)


def restate_storage(book: Book, c: Container, since: datetime, change: Callable[[], None]) -> None:
    """Apply a storage fact that takes effect at ``since``; storage already billed past it is
    re-priced: the difference is charged, or given back as a correction (both telescoped from the
    same segment starts, so the month's storage stays its exact price rounded once)."""
    restate_storage_of(book, [c], since, change)


def restate_storage_of(
    book: Book, containers: Iterable[Container], since: datetime, change: Callable[[], None]
) -> None:
    """:func:`restate_storage` for one fact shared by several containers (a plan change): every
    container's storage billed past ``since`` is priced before the fact is applied, once, and then
    after it."""
    billed_past: list[tuple[Container, datetime, datetime, dict[pricing.StorageKey, tuple[int, pricing.Interval]]]] = []
    for c in containers:
        billed = c.storage_billed_until
        if billed is None or since >= billed or c.created_at is None:
            continue
        start = max(since, c.created_at)
        billed_past.append((c, start, billed, pricing.storage_amounts(book.catalog, book.state, c, start, billed)))
    change()
    for c, start, billed, before in billed_past:
        after = pricing.storage_amounts(book.catalog, book.state, c, start, billed)
        for key in sorted(set(before) | set(after)):
            old, span = before[key] if key in before else (0, after[key][1])
            new = after[key][0] if key in after else 0
            diff = new - old
            line = pricing.storage_line(book.catalog, book.state, c, key, abs(diff), span)
            if diff > 0:
                book.charge([line])
            elif diff < 0:
                book.correct([line])


def settle_run(book: Book, c: Container, run: Run, until: datetime) -> None:
    """Charge a run's time up to ``until`` (never past its stop) and its reported traffic; a run
    that is complete is closed."""
    if run.started_at is not None and run.tier is not None:
        start = run.billed_until or run.started_at
        end = min(until, run.stopped_at) if run.stopped_at else until
        if end > start:
            book.charge(pricing.run_lines(book.catalog, c, run, start, end))
            run.billed_until = end
    book.charge(pricing.traffic_line(book.catalog, c, run, month, until) for month in sorted(run.pending_traffic))
    run.pending_traffic.clear()
    run.pending_billable.clear()
    if run.is_complete:
        del c.runs[run.run_id]
        assert run.stopped_at is not None
        c.closed_runs[run.run_id] = run.stopped_at


def unbill_run_past(book: Book, c: Container, run: Run, stop: datetime) -> None:
    """A stop older than time already billed (a boundary or final settlement ran first): that time
    is given back as a correction."""
    if run.billed_until is not None and run.billed_until > stop:
        book.correct(pricing.run_lines(book.catalog, c, run, stop, run.billed_until))
        run.billed_until = stop


def settle_container(book: Book, c: Container, until: datetime) -> None:
    for run in list(c.runs.values()):
        settle_run(book, c, run, until)
    settle_storage(book, c, until)


def settle_everything(book: Book, until: datetime) -> None:
    """Settle every container with open accruals that this change can reach (all of them while
    the balance lists them; see :class:`~billing.domain.account.Containers`)."""
    for c in book.containers.reachable(book.state):
        settle_container(book, c, until)


def record_traffic(book: Book, run: Run, at: datetime, traffic_bytes: int) -> None:
    """Count bytes against the allowance of the event's month; only bytes beyond it are billable.
    They are deducted with the run's next settlement."""
    if traffic_bytes <= 0:
        return
    month = month_key(at)
    used = book.state.traffic_used.get(month, 0)
    free = book.catalog.at(at).traffic_free_bytes_per_month
    book.state.traffic_used[month] = used + traffic_bytes
    run.pending_traffic[month] = run.pending_traffic.get(month, 0) + traffic_bytes
    run.pending_billable[month] = run.pending_billable.get(month, 0) + pricing.billable_traffic(
        free, used, traffic_bytes
    )


def running_container_ids(book: Book) -> list[str]:
    return sorted(c.container_id for c in book.containers.reachable(book.state) if c.running_runs)


def storage_billed_container_ids(book: Book, at: datetime) -> list[str]:
    """Containers whose allocated storage is above the free allowance (it is billed)."""
    state = book.state
    return sorted(
        c.container_id
        for c in book.containers.reachable(state)
        if c.deleted_at is None and pricing.billable_gb_at(book.catalog, state, c, max(at, c.created_at or at)) > 0
    )
