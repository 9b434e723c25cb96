"""Every DynamoDB key of the single table, in one place.

Items of an account share the partition ``ACCOUNT#<id>``:

==========================  ===================================================================
sort key                    item
==========================  ===================================================================
``STATE``                   the account's balance item (JSON) and its ``version``
``LABELS``                  the label combinations the usage aggregates keep, by day (written when they change)
``CONTAINER#<container>``   one container's facts, runs and open accruals
``EVENT#<event_id>``        the idempotency record of an applied event or request
``LEDGER#<at>#<entry>``     one ledger entry; AI entries are also in GSI1 under ``…#AI``
``USAGE#D#<YYYY-MM-DD>``    the day's usage aggregate: µcr per hour and attribution (cell)
``USAGE#C#<c>#<YYYY-MM-DD>`` the same for one container
``SENT#<effect_id>``        an effect of the outbox delivered, or refused for good (a redelivery repeats neither)
``ACTIVITY#<at>#<v>#<n>``   a change a person made (actor, action, details), written with the change
==========================  ===================================================================

Other partitions: ``PURCHASE#<id>`` (a purchase; GSI1 ``ACCOUNT#<id>#PURCHASES`` lists an
account's), ``COUPON#<code>`` (a coupon), ``IDEM#<event id>`` (the idempotency record of an operator
request that belongs to no account). The sparse ``active`` index lists accounts whose containers
use resources, spread over ``ACTIVE#<n>`` shards; the sparse ``due`` index lists accounts by the time
their forecast says they next need a check, spread over ``DUE#<n>`` shards.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime

from billing.domain.clock import format_time

STATE = "STATE"
LABELS = "LABELS"  # the account's label combinations of recent days (kept apart from the balance)
PURCHASE = "PURCHASE"
COUPON = "COUPON"
IDEM = "IDEM"
LEDGER = "LEDGER#"
LEDGER_END = "LEDGER#~"  # sorts after every ledger entry
CONTAINER = "CONTAINER#"
SHARDS = 16  # of the active and due indexes: keeps each index partition's traffic moderate


def account_pk(account_id: str) -> str:
    return f"ACCOUNT#{account_id}"


def account_of(pk: str) -> str:
    return pk.removeprefix("ACCOUNT#")


def is_account_pk(pk: str) -> bool:
    """Whether a partition key is an account's (not a purchase's, a coupon's or an index's)."""
    return pk.startswith("ACCOUNT#")


def event_sk(event_id: str) -> str:
    return f"EVENT#{event_id}"


def sent_sk(effect_id: str) -> str:
    return f"SENT#{effect_id}"


def ledger_sk(at: datetime, entry_id: str) -> str:
    return f"{LEDGER}{format_time(at)}#{entry_id}"


def ledger_bound(at: datetime, end: bool = False) -> str:
    """A sort-key bound of the ledger entries at ``at`` (``end``: after every entry of that second)."""
    return f"{LEDGER}{format_time(at)}" + ("~" if end else "")


def ai_index_pk(account_id: str) -> str:
    return f"{account_pk(account_id)}#AI"


ACTIVITY = "ACTIVITY#"
ACTIVITY_END = "ACTIVITY#~"


def activity_sk(at: datetime, version: int, number: int) -> str:
    """By time, then by the balance's version the change wrote (the order changes committed in)."""
    return f"{ACTIVITY}{format_time(at)}#{version:012d}#{number:03d}"


def activity_bound(at: datetime, end: bool = False) -> str:
    """A sort-key bound of the activity at ``at`` (``end``: after every item of that second)."""
    return f"{ACTIVITY}{format_time(at)}" + ("~" if end else "")


USAGE = "USAGE#"
USAGE_END = "USAGE#~"


def usage_day_sk(day: date) -> str:
    return f"USAGE#D#{day.isoformat()}"


def container_usage_day_sk(container_id: str, day: date) -> str:
    return f"USAGE#C#{container_id}#{day.isoformat()}"


def usage_day_of(sk: str) -> tuple[date, str | None]:
    """(day, container or None) of a usage day item's sort key."""
    day = date.fromisoformat(sk[-10:])
    return day, (sk.removeprefix("USAGE#C#")[:-11] if sk.startswith("USAGE#C#") else None)


def audit_sk(moment: datetime, event_id: str, nonce: str) -> str:
    """An operator's audit item (the old-event path of a replay): time to the µs, event, a nonce."""
    return f"{AUDIT}{moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{len(event_id)}:{event_id}#{nonce}"


AUDIT = "AUDIT#"


def purchase_pk(purchase_id: str) -> str:
    return f"PURCHASE#{purchase_id}"


def payment_reference_pk(payment_intent_id: str) -> str:
    return f"PAYREF#{payment_intent_id}"


def purchases_index_pk(account_id: str) -> str:
    return f"{account_pk(account_id)}#PURCHASES"


def coupon_pk(code: str) -> str:
    return f"COUPON#{code}"


def operator_request_pk(event_id: str) -> str:
    return f"IDEM#{event_id}"


def container_sk(container_id: str) -> str:
    return f"{CONTAINER}{container_id}"


def _shard(account_id: str) -> int:
    return int(hashlib.sha256(account_id.encode()).hexdigest(), 16) % SHARDS


def active_shard(account_id: str) -> str:
    return f"ACTIVE#{_shard(account_id)}"


def due_shard(account_id: str) -> str:
    return f"DUE#{_shard(account_id)}"


def shards(index: str) -> list[str]:
    """Every shard key of the ``active`` or ``due`` index."""
    prefix = {"active": "ACTIVE#", "due": "DUE#"}[index]
    return [f"{prefix}{n}" for n in range(SHARDS)]


# Ids of the events the billing stack makes itself (their records are ``EVENT#<id>`` items).


def request_event_id(scope: str, idempotency_key: str) -> str:
    """The event id of a keyed request: its parts length-prefixed and hashed, so that no two
    (scope, key) pairs share one (``a:k1`` + ``k2`` is not ``a`` + ``k1:k2``)."""
    parts = f"{len(scope)}:{scope}|{len(idempotency_key)}:{idempotency_key}"
    return "idem:" + hashlib.sha256(parts.encode()).hexdigest()


def unkeyed_request_event_id(nonce: str) -> str:
    return f"req:{nonce}"


def roll_event_id(month: str) -> str:
    return f"roll:{month}"


def month_sweep_event_id(month: str) -> str:
    return f"sweep:month:{month}"


def check_sweep_event_id(at: datetime) -> str:
    return f"sweep:check:{format_time(at)}"


def container_work_event_id(kind: str, at: datetime, first_container: str, user_id: str | None = None) -> str:
    """A chunk of account-wide container work: its kind, its time, where the chunk starts, and the
    member it is about (a member limit; two members may reach theirs at one time)."""
    about = f":{len(user_id)}:{user_id}" if user_id is not None else ""
    return f"work:{kind}:{format_time(at)}:{len(first_container)}:{first_container}{about}"


def settings_event_id(nonce: str) -> str:
    return f"settings:{nonce}"


def payment_event_id(notice_id: str, notice_type: str) -> str:
    """A payment notice is identified by its id and its type (a ``payment.failed`` and a later
    ``payment.succeeded`` of one payment are two notices); the type is one of a fixed few without
    ``:``, so no two (type, id) pairs share one."""
    return f"{notice_type}:{notice_id}"
