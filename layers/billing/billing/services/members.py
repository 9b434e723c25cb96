"""Organizations, the requests: whose account a request acts on and the caller's role in it, the
member list with each member's limit and month's spending, member limits, and the activity log.

The roster lives on the balance item (:class:`~billing.domain.roster.Member`), and so does what
each user's usage deducted this month (``member_spent``, which every settlement updates in the
balance it writes anyway): the role of a caller and the member list are one read, whatever the usage.
Rules are in :mod:`billing.domain.members`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from billing.domain import members, rollover, settle
from billing.domain.account import Account
from billing.domain.amounts import format_credits
from billing.domain.clock import format_time, month_key
from billing.domain.errors import InvalidInput, UnknownAccount
from billing.domain.posting import Book
from billing.domain.roster import Activity, Member, Role
from billing.observability import logger
from billing.services.usage import EARLIEST, parse_bound
from billing.store import keys, queries
from billing.store.cursors import CursorCodec
from billing.store.ledger import Change, Ledger


def role_of(ledger: Ledger, account_id: str, user_id: str) -> Role | None:
    """The user's role in the account, None when the account does not exist or they are not a member."""
    state = ledger.load(account_id)
    if state is None:
        return None
    return members.role_of(state.account_id, state.members, user_id)


def member_view(member: Member, spent: int, month: str) -> dict[str, Any]:
    return {
        "user_id": member.user_id,
        "role": member.role,
        "email": member.email,
        "monthly_limit": None if member.monthly_limit is None else format_credits(member.monthly_limit),
        "spent_this_month": format_credits(spent),
        "limit_reached": member.limit_reached == month,
    }


def list_members(ledger: Ledger, account_id: str, now: datetime) -> list[dict[str, Any]]:
    """Every member (and a personal account's own user, its owner), with what their usage deducted
    this month (from the balance item: one read)."""
    state = ledger.load(account_id)
    if state is None:
        raise UnknownAccount(f"no account {account_id}")
    month = month_key(now)
    roster = sorted(state.members.values(), key=lambda m: m.user_id)
    if not any(m.role == "owner" for m in roster):
        # A personal account: its own user is its owner. (An organisation's owners are the ones the
        # platform named; its id is nobody's, so it is not listed as a person.)
        roster.insert(0, Member(user_id=account_id, role="owner", email=state.email, added_at=state.created_at))
    return [member_view(m, state.spent_by(m.user_id, month), month) for m in roster]


def set_limit(ledger: Ledger, account_id: str, user_id: str, limit: int | None, actor: str,
              now: datetime) -> dict[str, Any]:
    """An owner's or admin's monthly limit for a member; a 404 when the user is not a member."""
    event_id = keys.settings_event_id(uuid.uuid4().hex)

    def action(account: Account | None) -> Change:
        book = Book(settle.require(account, account_id), ledger.catalog, event_id)
        rollover.advance_if_current(book, now)  # the limit applies to the month it is set in
        member = members.set_limit(book, user_id, limit, max(now, book.state.as_of), actor)
        return Change(book, {"user_id": member.user_id})

    applied = ledger.apply(account_id, event_id, action)
    assert applied.state is not None
    member = applied.state.members[user_id]
    logger.info("member limit set", account_id=account_id, limit=limit)
    return member_view(member, applied.state.spent_by(user_id, month_key(now)), month_key(now))


def activity_view(activity: Activity) -> dict[str, Any]:
    return {"at": format_time(activity.at), "actor": activity.actor, "action": activity.action,
            "details": activity.details}


def activity_page(ledger: Ledger, cursors: CursorCodec, account_id: str, from_: str | None, to: str | None,
                  limit: int, cursor: str | None) -> dict[str, Any]:
    """Who changed what in the range, newest first, behind a signed cursor bound to the account."""
    end = parse_bound(to, "to", True) if to else None
    start = parse_bound(from_, "from", False) if from_ else min(EARLIEST, end or EARLIEST)
    if end is not None and end < start:
        raise InvalidInput("from must not be after to")
    if ledger.load(account_id) is None:
        raise UnknownAccount(f"no account {account_id}")
    after = cursors.decode(account_id, cursor)
    found, next_key = queries.activity_page(ledger.models, account_id, start, end, limit, after)
    return {"entries": [activity_view(a) for a in found], "next_cursor": cursors.encode(account_id, next_key)}
