"""One function per platform event: what the event changes in the account and what it deducts.

Every function follows the same shape (:func:`settling`): roll the account to the event's time
unless the event is late, apply the fact, deduct what it settled, and end the credits if that
deduction ran into debt. Decisions where the rules are silent are in the README ("Decisions").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from billing.domain import accrual, attribution, low_balance, members, overuse, pricing, rollover
from billing.domain.account import Account
from billing.domain.errors import EventTimeRefused, UnknownAccount
from billing.domain.model import ChargeLine, Container, Plan, Run
from billing.domain.posting import Book


def require(account: Account | None, account_id: str) -> Account:
    if account is None:
        raise UnknownAccount(f"no account {account_id}: no Account Created event was received")
    return account


def require_existing_at(account: Account | None, account_id: str, at: datetime) -> Account:
    """The account, which must exist at ``at``: usage from before its creation is refused."""
    account = require(account, account_id)
    if at < account.state.created_at:
        raise EventTimeRefused(
            f"the event is dated before the account was created ({account.state.created_at.isoformat()})"
        )
    return account


@contextmanager
def settling(book: Book, at: datetime, reason: str) -> Iterator[None]:
    """The frame of every event: roll to its time (unless late), apply it, deduct what it settled,
    and check the low-credit mail after a deduction."""
    debt_before = book.state.debt
    rollover.advance_if_current(book, at)
    yield
    overuse.flush_event(book, at, reason, debt_before)
    if low_balance.deducted(book):
        low_balance.check(book, at)


def plan_changed(book: Book, at: datetime, plan: Plan) -> None:
    """Everything accrued is settled at once; the new allowance applies from the change, and
    storage billed past a late change is re-priced."""
    with settling(book, at, "plan_change"):
        accrual.settle_everything(book, at)
        state = book.state

        def insert() -> None:
            # The plan is one fact shared by all containers: each is priced before it and after it.
            state.plans = sorted([*state.plans, (at, plan)], key=lambda p: p[0])

        accrual.restate_storage_of(book, book.containers.reachable(state), at, insert)


def container_created(
    book: Book, at: datetime, container_id: str, storage_gb: int, labels: dict[str, str] | None = None,
    user_id: str | None = None,
) -> None:
    with settling(book, at, "container_created"):
        c = accrual.container(book, container_id, at)
        if c.created_at is not None:
            return  # already known: another delivery of the same fact
        c.created_at, c.user_id = at, user_id  # its storage is its creator's usage
        c.sizes = sorted([*c.sizes, (at, storage_gb)], key=lambda s: s[0])
        if labels:
            c.labels = sorted([*c.labels, (at, dict(labels))], key=lambda s: s[0])
        # Storage accrues from creation, also when this event arrives after the container was used.
        assert c.seen_until is not None
        accrual.settle_storage(book, c, c.seen_until)


def container_started(
    book: Book, at: datetime, container_id: str, run_id: str, tier: str, code_supporter: bool,
    user_id: str | None = None,
) -> None:
    book.catalog.at(at).tier(tier)  # an unknown tier is an error, never a free run
    with settling(book, at, "container_started"):
        c = accrual.container(book, container_id, at)
        run = accrual.open_run(c, run_id)
        if run is None or run.started_at is not None:
            return  # another delivery of a run already known
        run.started_at, run.tier, run.code_supporter, run.billed_until = at, tier, code_supporter, at
        run.user_id = user_id or run.user_id  # (a stop that came first may have named the user)
        if run.stopped_at is not None:  # the stop came first: the whole run is settled now
            accrual.settle_run(book, c, run, run.stopped_at)
        accrual.settle_storage(book, c, at)
    if run.is_running:
        overuse.ask_to_stop_again(book, container_id, at)
        members.stop_if_reached(book, container_id, run.user_id, at)
    low_balance.check(book, at)  # at every container start


def container_stopped(
    book: Book, at: datetime, container_id: str, run_id: str, traffic_bytes: int, user_id: str | None = None
) -> None:
    with settling(book, at, "container_stopped"):
        c = accrual.container(book, container_id, at)
        run = accrual.open_run(c, run_id)
        if run is None or run.stopped_at is not None:
            return  # another delivery of a run already known
        run.user_id = run.user_id or user_id  # the start's user stands; a stop first names it
        accrual.record_traffic(book, run, at, traffic_bytes)
        run.stopped_at = at
        accrual.unbill_run_past(book, c, run, at)
        accrual.settle_run(book, c, run, at)
        accrual.settle_storage(book, c, at)


def traffic_reported(
    book: Book, at: datetime, container_id: str, run_id: str, traffic_bytes: int, user_id: str | None = None
) -> None:
    """Traffic is counted now and deducted with the run's next settlement; late traffic of a run
    settled already is deducted at once."""
    with settling(book, at, "late_traffic"):
        c = accrual.container(book, container_id, at)
        run = c.runs.get(run_id)
        if run is None and run_id in c.closed_runs:
            late = c.runs[run_id] = Run(run_id=run_id, user_id=user_id)
            accrual.record_traffic(book, late, at, traffic_bytes)
            accrual.settle_run(book, c, late, at)
            c.runs.pop(run_id, None)
            return
        if run is None:
            run = c.runs[run_id] = Run(run_id=run_id, user_id=user_id)
        accrual.record_traffic(book, run, at, traffic_bytes)


@contextmanager
def _storage_fact(book: Book, at: datetime, container_id: str, reason: str) -> Iterator[Container]:
    """Resize, inactivation, reactivation, deletion: storage is settled up to the fact, which then
    applies from its own time (re-pricing whatever was billed past it)."""
    with settling(book, at, reason):
        c = accrual.container(book, container_id, at)
        accrual.settle_storage(book, c, at)
        yield c


def container_resized(book: Book, at: datetime, container_id: str, storage_gb: int) -> None:
    with _storage_fact(book, at, container_id, "container_resized") as c:

        def resize() -> None:
            c.sizes = sorted([*c.sizes, (at, storage_gb)], key=lambda s: s[0])

        accrual.restate_storage(book, c, at, resize)


def container_active(book: Book, at: datetime, container_id: str, active: bool) -> None:
    """Inactivated (``active`` False) or reactivated: storage accrues only while active."""
    with _storage_fact(book, at, container_id, "container_reactivated" if active else "container_inactivated") as c:

        def toggle() -> None:
            c.activity = sorted([*c.activity, (at, active)], key=lambda s: s[0])

        accrual.restate_storage(book, c, at, toggle)


def container_deleted(book: Book, at: datetime, container_id: str) -> None:
    """Storage ends with the deletion, and so does a run still open (a deleted container runs no more)."""
    with _storage_fact(book, at, container_id, "container_deleted") as c:

        def delete() -> None:
            c.deleted_at = min(c.deleted_at or at, at)

        accrual.restate_storage(book, c, at, delete)
        for run in list(c.runs.values()):
            if run.is_running and run.started_at is not None and run.started_at <= at:
                run.stopped_at = at
            accrual.settle_run(book, c, run, at)


def container_labeled(book: Book, at: datetime, container_id: str, labels: dict[str, str]) -> None:
    """The container's labels from ``at`` on: what accrued before is settled under the old ones
    (the amounts telescope, so this settlement changes no total: see :mod:`~billing.domain.pricing`).
    A late Container Labeled does not relabel lines deducted already."""
    with settling(book, at, "container_labeled"):
        c = accrual.container(book, container_id, at)
        accrual.settle_container(book, c, at)
        c.labels = sorted([*[entry for entry in c.labels if entry[0] != at], (at, dict(labels))], key=lambda s: s[0])
        attribution.prune_labels(c, at)


def ai_used(
    book: Book, at: datetime, feature: str, model: str, input_tokens: int, output_tokens: int,
    container_id: str | None, labels: dict[str, str] | None = None, user_id: str | None = None,
) -> ChargeLine:
    """One AI use, deducted when reported."""
    line = pricing.ai_line(book.catalog, at, feature, model, input_tokens, output_tokens, container_id, labels,
                           user_id)
    with settling(book, at, "ai_usage"):
        book.charge([line])
    return line


def sweep(book: Book, at: datetime) -> None:
    """The monthly job and the periodic check: roll to ``at`` (month boundary: settle, expire,
    grant), then end the credits when running usage has reached the available balance."""
    rollover.advance_if_current(book, at)
    overuse.check(book, at)
    if book.state.accrual.running:  # the aggregate: also when the containers are more than are listed
        low_balance.check(book, at)
