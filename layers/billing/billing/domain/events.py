"""Typed models of the incoming EventBridge events of interfaces.md, and their validation.

:func:`parse_platform_event` turns a raw EventBridge event into one of the models below or raises
:class:`~billing.errors.InvalidInput` with the reason; nothing is applied from an invalid event.
The models are msgspec structs: this is the hot path of every settlement (see model.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta, Struct

from billing.domain.clock import require_utc
from billing.domain.errors import EventTimeRefused, InvalidInput
from billing.domain.model import LABEL_KEY

UtcTime = Annotated[datetime, Meta(tz=True)]  # zone-aware on decode; Message makes it UTC
NonEmpty = Annotated[str, Meta(min_length=1, max_length=200)]
Count = Annotated[int, Meta(ge=0, le=10**15)]  # bytes, tokens, GB: far above any real use
# Attribution (billing-rules.md, "Attribution and ranges"): up to 5 pairs.
LabelKey = Annotated[str, Meta(pattern=LABEL_KEY.pattern)]
LabelValue = Annotated[str, Meta(max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]
Labels = Annotated[dict[LabelKey, LabelValue], Meta(max_length=5)]
Email = Annotated[str, Meta(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
# A platform user (the sub of their token): printable ASCII, up to 128 characters.
UserId = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^[\x20-\x7e]+$")]
RoleName = Literal["owner", "admin", "billing", "member"]


_M = TypeVar("_M", bound="Message")


class Message(Struct, frozen=True, kw_only=True):
    """An incoming message (a platform event's detail, a schedule's input, a queue message).

    Unknown fields are ignored; types are strict (a number sent as text is an error). Every time
    must carry a zone and be UTC, and is kept to the second, the rules' resolution.
    """

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime):
                msgspec.structs.force_setattr(self, name, require_utc(value, name))


def parse_message(data: Any, kind: type[_M], what: str) -> _M:
    """Validate ``data`` (already parsed JSON, or JSON text) as ``kind``; InvalidInput names the
    problem and its field."""
    try:
        if isinstance(data, str | bytes):
            return msgspec.json.decode(data, type=kind)
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid {what}: {exc}".replace("`$.", "`")) from None
    except msgspec.DecodeError:
        raise InvalidInput(f"invalid {what}: not JSON") from None


class Detail(Message, frozen=True, kw_only=True):
    """Fields every platform event carries."""

    event_id: NonEmpty
    account_id: NonEmpty
    occurred_at: UtcTime


class AccountCreated(Detail, frozen=True):
    email: Email
    plan: Literal["free", "membership"]


class PlanChanged(Detail, frozen=True):
    plan: Literal["free", "membership"]


class UsageDetail(Detail, frozen=True, kw_only=True):
    """A container or AI event: it may name the user whose usage it is."""

    user_id: UserId | None = None


class MemberAdded(Detail, frozen=True):
    user_id: UserId
    role: RoleName
    email: Email


class MemberRemoved(Detail, frozen=True):
    user_id: UserId


class MemberRoleChanged(Detail, frozen=True):
    user_id: UserId
    role: RoleName


class ContainerCreated(UsageDetail, frozen=True):
    container_id: NonEmpty
    storage_gb: Count
    labels: Labels | None = None


class ContainerStarted(UsageDetail, frozen=True):
    container_id: NonEmpty
    run_id: NonEmpty
    tier: NonEmpty
    code_supporter: bool = False


class ContainerStopped(UsageDetail, frozen=True):
    container_id: NonEmpty
    run_id: NonEmpty
    traffic_bytes: Count = 0


class ContainerTrafficReported(UsageDetail, frozen=True):
    container_id: NonEmpty
    run_id: NonEmpty
    traffic_bytes: Count


class ContainerResized(UsageDetail, frozen=True):
    container_id: NonEmpty
    storage_gb: Count


class ContainerFact(UsageDetail, frozen=True):
    """A container event whose container and time are the whole fact."""

    container_id: NonEmpty


class ContainerInactivated(ContainerFact, frozen=True):
    pass


class ContainerReactivated(ContainerFact, frozen=True):
    pass


class ContainerDeleted(ContainerFact, frozen=True):
    pass


class ContainerLabeled(UsageDetail, frozen=True):
    """The container's labels from ``occurred_at`` on (they replace the labels it had)."""

    container_id: NonEmpty
    labels: Labels


class AiUsageRecorded(UsageDetail, frozen=True):
    feature: Literal["chat", "snap", "ai_supporter"]
    model: NonEmpty
    input_tokens: Count
    output_tokens: Count
    container_id: NonEmpty | None = None
    labels: Labels | None = None


DETAILS: dict[tuple[str, str], type[Detail]] = {
    ("platform.accounts", "Account Created"): AccountCreated,
    ("platform.accounts", "Plan Changed"): PlanChanged,
    ("platform.accounts", "Member Added"): MemberAdded,
    ("platform.accounts", "Member Removed"): MemberRemoved,
    ("platform.accounts", "Member Role Changed"): MemberRoleChanged,
    ("platform.containers", "Container Created"): ContainerCreated,
    ("platform.containers", "Container Started"): ContainerStarted,
    ("platform.containers", "Container Stopped"): ContainerStopped,
    ("platform.containers", "Container Traffic Reported"): ContainerTrafficReported,
    ("platform.containers", "Container Resized"): ContainerResized,
    ("platform.containers", "Container Inactivated"): ContainerInactivated,
    ("platform.containers", "Container Reactivated"): ContainerReactivated,
    ("platform.containers", "Container Deleted"): ContainerDeleted,
    ("platform.containers", "Container Labeled"): ContainerLabeled,
    ("platform.ai", "AI Usage Recorded"): AiUsageRecorded,
}


class PlatformEvent(Struct, frozen=True):
    """An EventBridge event: its source and detail-type choose the model of its detail."""

    source: str
    detail_type: str
    detail: Detail


def parse_platform_event(raw: Any, accepted_sources: tuple[str, ...] | None = None) -> PlatformEvent:
    """Validate a raw EventBridge event. Raises InvalidInput naming the problem (and its field)."""
    if not isinstance(raw, dict):
        raise InvalidInput("event is not a JSON object")
    source, detail_type, detail = raw.get("source"), raw.get("detail-type"), raw.get("detail")
    if not isinstance(source, str) or not isinstance(detail_type, str):
        raise InvalidInput("event has no source or detail-type")
    model = DETAILS.get((source, detail_type))
    if model is None or (accepted_sources is not None and source not in accepted_sources):
        raise InvalidInput(f"unsupported event: {source} / {detail_type}")
    if not isinstance(detail, dict):
        raise InvalidInput("event detail is not a JSON object")
    parsed = parse_message(detail, model, detail_type)
    return PlatformEvent(source=source, detail_type=detail_type, detail=parsed)


FUTURE_TOLERANCE = timedelta(minutes=5)  # a platform clock a little ahead is fine; a typo is not
OLDEST_ACCEPTED = timedelta(days=30)  # older duplicates could no longer be recognised
REPLAY_MARK = "replay"  # an operator's replay of an older event (see the README, "Operating it")


def check_event_time(occurred_at: datetime, now: datetime, replayed: bool = False) -> None:
    """Refuse an event dated more than 5 minutes after ``now`` (never roll an account into the
    future), or more than 30 days before it unless an operator replays it on purpose."""
    if occurred_at > now + FUTURE_TOLERANCE:
        raise EventTimeRefused(
            f"occurred_at {occurred_at.isoformat()} is more than 5 minutes after the time it is processed"
        )
    if occurred_at < now - OLDEST_ACCEPTED and not replayed:
        raise EventTimeRefused(
            f"occurred_at {occurred_at.isoformat()} is more than 30 days before the time it is processed;"
            " an operator replays such events on purpose"
        )
