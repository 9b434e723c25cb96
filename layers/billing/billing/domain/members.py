"""Organizations (billing-rules.md): members and their roles, what each role may do, what each
member's usage deducted this month, and member limits. Pure: no I/O.

The account's own user (a personal account's id is its user's ``sub``) is its owner without a
record; everyone else is a :class:`~billing.domain.roster.Member` that the platform's membership
events add, change and remove. The last-owner rule protects the owners those events named: an
organisation's account is nobody's personal account, so the last of them cannot be removed or
demoted (the account's own id keeps answering as its owner, and is never named by those events).

A member limit works like the spend cap, for one member: once what the member's usage deducted in
the month (after corrections) reaches it, that member's running containers are settled and asked to
stop (``member_limit``), ``Member Limit Reached`` is published and the member and the account's
billing people get one mail each; the pool and the other members go on. It ends with the month or a
higher or removed limit; usage still arriving is charged (it happened). What a user's usage deducted
counts for the whole month, a member leaving and joining again in it included (the member list shows
the same figure).
"""

from __future__ import annotations

from datetime import datetime

from billing.domain import accrual, forecast, overuse
from billing.domain.amounts import format_credits
from billing.domain.clock import month_key
from billing.domain.errors import Conflict, Forbidden, NotFound, RuleViolation
from billing.domain.posting import Book
from billing.domain.roster import ROLES, Member, Role

MAX_MEMBERS = 500  # members an account keeps (the balance item holds them; about 150 bytes each)
PLATFORM = "platform"  # the actor of the platform's membership events
MEMBER_LIMIT = "member_limit"
BILLING_PEOPLE: tuple[Role, ...] = ("owner", "admin", "billing")  # told when a member's limit is reached


def role_of(account_id: str, members: dict[str, Member], user_id: str) -> Role | None:
    """The user's role in the account: owner for the account's own user, else their membership's."""
    if user_id == account_id:
        return "owner"
    member = members.get(user_id)
    return member.role if member else None


def allows(role: Role, needed: Role) -> bool:
    return ROLES.index(role) >= ROLES.index(needed)


def require_role(role: Role, needed: Role) -> None:
    if not allows(role, needed):
        raise Forbidden(f"this needs the role {needed} (or higher); your role is {role}")


# ------------------------------------------------------------------ membership events


def _named(book: Book, user_id: str) -> None:
    if user_id == book.state.account_id:
        raise RuleViolation("the account's own user is always its owner; membership events cannot name it")


def _last_owner(book: Book, user_id: str) -> bool:
    owners = [m.user_id for m in book.state.members.values() if m.role == "owner"]
    return owners == [user_id]


def member_added(book: Book, at: datetime, user_id: str, role: Role, email: str) -> None:
    _named(book, user_id)
    members = book.state.members
    if user_id in members:
        raise Conflict(f"{user_id} is a member already (Member Role Changed changes a role)")
    if len(members) >= MAX_MEMBERS:
        raise RuleViolation(f"an account keeps at most {MAX_MEMBERS} members")
    members[user_id] = Member(user_id=user_id, role=role, email=email, added_at=at)
    book.note(PLATFORM, "member_added", at, user_id=user_id, role=role, email=email)


def _member(book: Book, user_id: str) -> Member:
    member = book.state.members.get(user_id)
    if member is None:
        raise NotFound(f"{user_id} is not a member of the account")
    return member


def member_removed(book: Book, at: datetime, user_id: str) -> None:
    """The member leaves; what their containers ran is still charged (to the pool) when it settles."""
    _named(book, user_id)
    member = _member(book, user_id)
    if member.role == "owner" and _last_owner(book, user_id):
        raise RuleViolation(f"{user_id} is the account's last owner: add another owner first")
    del book.state.members[user_id]
    book.note(PLATFORM, "member_removed", at, user_id=user_id, role=member.role)


def member_role_changed(book: Book, at: datetime, user_id: str, role: Role) -> None:
    _named(book, user_id)
    member = _member(book, user_id)
    if member.role == "owner" and role != "owner" and _last_owner(book, user_id):
        raise RuleViolation(f"{user_id} is the account's last owner: add another owner first")
    before, member.role = member.role, role
    book.note(PLATFORM, "member_role_changed", at, user_id=user_id, role=role, previous_role=before)


# ------------------------------------------------------------------ what members spend


def set_limit(book: Book, user_id: str, limit: int | None, at: datetime, actor: str) -> Member:
    """An owner's or admin's monthly limit for a member (None: none). A higher or removed limit ends
    one reached this month; a limit at or below what was spent is reached at the change's end."""
    member = book.state.members.get(user_id)
    if member is None:
        raise NotFound(f"{user_id[:128]} is not a member of the account")
    before, member.monthly_limit = member.monthly_limit, limit
    if member.limit_reached and (limit is None or limit > book.state.spent_by(user_id, member.limit_reached)):
        member.limit_reached = None
    book.note(actor, "member_limit_changed", at, user_id=user_id,
              monthly_limit=None if limit is None else format_credits(limit),
              previous_limit=None if before is None else format_credits(before))
    return member


# ------------------------------------------------------------------ member limits


def _running_of(book: Book, user_id: str) -> list[str]:
    return sorted(
        c.container_id for c in book.containers.reachable(book.state)
        if any(run.user_id == user_id for run in c.running_runs)
    )


def evaluate(book: Book, at: datetime) -> None:
    """Every member limit after a change, as of ``at`` (only members with a limit are looked at)."""
    month = month_key(at)
    limited = [m for m in book.state.members.values() if m.monthly_limit is not None or m.limit_reached]
    if limited:
        book.sync()
    for member in limited:
        # What the member's usage deducted, and what their running containers accrued and not
        # deducted yet (on a large account, those the member-limit work has not settled yet).
        accrued = forecast.member_accrued(book.state, book.catalog, member.user_id, at)
        if member.limit_reached and (member.limit_reached != month or member.monthly_limit is None
                                     or book.state.spent_by(member.user_id, month) + accrued < member.monthly_limit):
            member.limit_reached = None  # a new month, no limit, or corrections brought it back under
        if member.monthly_limit is None or member.limit_reached == month:
            continue
        if book.state.spent_by(member.user_id, month) + accrued < member.monthly_limit:
            continue
        _reach(book, member, at, month)


def _reach(book: Book, member: Member, at: datetime, month: str) -> None:
    """The member's running usage is deducted now, so their month's figure is what it is at the limit.
    An account with more containers than one change reaches (``Containers.complete``) has the rest of
    the member's running containers settled and asked to stop by the work queue (:func:`finish_limit`
    on each chunk); until then their part is counted from the aggregates (what they accrued)."""
    assert member.monthly_limit is not None
    debt_before = book.state.debt
    reached = _settle_runs_of(book, member.user_id, at)
    overuse.flush_event(book, at, "member_limit_settlement", debt_before)
    book.sync()  # the aggregates now hold only the member's runs this change did not reach
    used = (book.state.spent_by(member.user_id, month)
            + forecast.member_accrued(book.state, book.catalog, member.user_id, at))
    if used < member.monthly_limit:
        return
    member.limit_reached = month
    limit, shown = format_credits(member.monthly_limit), format_credits(used)
    running = _running_of(book, member.user_id)
    if running:
        book.emit("Stop Containers Requested", container_ids=running, reason=MEMBER_LIMIT, user_id=member.user_id)
    if not book.containers.complete(book.state):
        book.work("member_limit", at, skip=reached, user_id=member.user_id)
    book.emit("Member Limit Reached", user_id=member.user_id, limit=limit, spent=shown)
    for to in recipients(book, member):
        book.mail("member_limit_reached", to=to, user_id=member.user_id, email=member.email, limit=limit,
                  spent=shown)


def _settle_runs_of(book: Book, user_id: str, at: datetime) -> list[str]:
    """Settle the member's running runs this change reaches up to ``at``; returns their containers."""
    settled = set()
    for c in book.containers.reachable(book.state):
        for run in list(c.runs.values()):
            if run.is_running and run.user_id == user_id:
                accrual.settle_run(book, c, run, at)
                settled.add(c.container_id)
    return sorted(settled)


def finish_limit(book: Book, user_id: str, at: datetime, skip: frozenset[str] = frozenset()) -> None:
    """One chunk of a member limit reached on a large account: the member's runs in the loaded
    containers are settled up to ``at`` and, while the limit is still reached, the running ones are
    asked to stop (but those in ``skip``, which the change that reached it asked about already)."""
    debt_before = book.state.debt
    _settle_runs_of(book, user_id, at)
    overuse.flush_event(book, at, "member_limit_settlement", debt_before)
    member = book.state.members.get(user_id)
    if member is None or member.limit_reached != month_key(at):
        return  # removed, or the limit was raised or removed since: settled, nothing to stop
    running = [cid for cid in _running_of(book, user_id) if cid not in skip]
    if running:
        book.emit("Stop Containers Requested", container_ids=running, reason=MEMBER_LIMIT, user_id=user_id)


def recipients(book: Book, member: Member) -> list[str]:
    """The member and the account's billing people (its address, owners, admins, billing), once each."""
    state = book.state
    people = [member.email, state.email,
              *(m.email for m in state.members.values() if m.role in BILLING_PEOPLE)]
    return list(dict.fromkeys(address for address in people if address))


def stop_if_reached(book: Book, container_id: str, user_id: str | None, at: datetime) -> None:
    """A container a member starts while their limit is reached is asked to stop (once per event)."""
    member = book.state.members.get(user_id) if user_id else None
    if member is None or member.limit_reached != month_key(at) or book.emitted("Stop Containers Requested"):
        return
    book.emit("Stop Containers Requested", container_ids=[container_id], reason=MEMBER_LIMIT, user_id=member.user_id)
