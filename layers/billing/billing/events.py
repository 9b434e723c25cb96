"""Typed models of the incoming EventBridge events of interfaces.md, and their validation.

:func:`parse_platform_event` turns a raw EventBridge event into one of the models below or raises
:class:`~billing.errors.InvalidInput` with every reason; nothing is applied from an invalid event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, TypeAdapter, ValidationError, field_validator

from billing.clock import parse_time
from billing.errors import InvalidInput

NonEmpty = Annotated[str, Field(min_length=1, max_length=200)]
Count = Annotated[StrictInt, Field(ge=0)]


class Detail(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: NonEmpty
    account_id: NonEmpty
    occurred_at: datetime

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _utc_time(cls, value: Any) -> datetime:
        if not isinstance(value, str):
            raise ValueError("occurred_at must be an ISO-8601 UTC string")
        return parse_time(value)


class AccountCreated(Detail):
    email: Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
    plan: Literal["free", "membership"]


class PlanChanged(Detail):
    plan: Literal["free", "membership"]


class ContainerCreated(Detail):
    container_id: NonEmpty
    storage_gb: Count


class ContainerStarted(Detail):
    container_id: NonEmpty
    run_id: NonEmpty
    tier: NonEmpty
    code_supporter: StrictBool = False


class ContainerStopped(Detail):
    container_id: NonEmpty
    run_id: NonEmpty
    traffic_bytes: Count = 0


class ContainerTrafficReported(Detail):
    container_id: NonEmpty
    run_id: NonEmpty
    traffic_bytes: Count


class ContainerResized(Detail):
    container_id: NonEmpty
    storage_gb: Count


class ContainerFact(Detail):
    """Inactivated, Reactivated, Deleted: the container and the time are the whole fact."""

    container_id: NonEmpty


class AiUsageRecorded(Detail):
    feature: Literal["chat", "snap", "ai_supporter"]
    model: NonEmpty
    input_tokens: Count
    output_tokens: Count
    container_id: NonEmpty | None = None


DETAILS: dict[tuple[str, str], type[Detail]] = {
    ("platform.accounts", "Account Created"): AccountCreated,
    ("platform.accounts", "Plan Changed"): PlanChanged,
    ("platform.containers", "Container Created"): ContainerCreated,
    ("platform.containers", "Container Started"): ContainerStarted,
    ("platform.containers", "Container Stopped"): ContainerStopped,
    ("platform.containers", "Container Traffic Reported"): ContainerTrafficReported,
    ("platform.containers", "Container Resized"): ContainerResized,
    ("platform.containers", "Container Inactivated"): ContainerFact,
    ("platform.containers", "Container Reactivated"): ContainerFact,
    ("platform.containers", "Container Deleted"): ContainerFact,
    ("platform.ai", "AI Usage Recorded"): AiUsageRecorded,
}


class PlatformEvent(BaseModel):
    """An EventBridge event: its source and detail-type choose the model of its detail."""

    model_config = ConfigDict(frozen=True)

    source: str
    detail_type: str
    detail: Detail


_adapters: dict[type[Detail], TypeAdapter[Any]] = {}


def _reasons(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'detail'}: {err['msg']}" for err in exc.errors()
    )


def parse_platform_event(raw: Any, accepted_sources: tuple[str, ...] | None = None) -> PlatformEvent:
    """Validate a raw EventBridge event. Raises InvalidInput naming every problem."""
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
    try:
        parsed = model.model_validate(detail)
    except ValidationError as exc:
        raise InvalidInput(f"invalid {detail_type}: {_reasons(exc)}") from None
    return PlatformEvent(source=source, detail_type=detail_type, detail=parsed)
