"""The records of an account's members and of its activity (billing-rules.md, "Organizations").

A member is a platform user (the ``sub`` of their token) with a role; the account's own user (a
personal account's id is its user's ``sub``) is its owner without any record. Roles are ordered:
each has every right of the roles before it in :data:`ROLES`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from msgspec import Struct, field


class Record(Struct, kw_only=True, omit_defaults=True):
    """A stored record (as :class:`billing.domain.model.Record`, which imports this module)."""


Role = Literal["owner", "admin", "billing", "member"]
ROLES: tuple[Role, ...] = ("member", "billing", "admin", "owner")  # each has every right of those before it


class Member(Record, kw_only=True):
    """A member of the account (billing-rules.md, "Organizations"): a platform user with a role, and
    the monthly limit an owner or admin gave them; ``limit_reached``: the month the limit was reached
    in. What their usage deducted is on the balance (``AccountState.member_spent``), by month."""

    user_id: str
    role: Role
    email: str = ""
    added_at: datetime
    monthly_limit: int | None = None  # µcr a calendar month
    limit_reached: str | None = None


class Activity(Record, kw_only=True):
    """A change a person made to the account: who (the token's ``sub``, or ``platform`` for the
    platform's membership events), when, what, and the figures of the change."""

    at: datetime
    actor: str
    action: str
    details: dict[str, object] = field(default_factory=dict)
