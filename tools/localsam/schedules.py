"""The template's ``ScheduleV2`` (EventBridge Scheduler) and ``Schedule`` events, fired on demand."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from localsam.eventbridge import iso
from localsam.runtime import ACCOUNT, REGION, Resolver, Runtime


def fire_schedule(
    runtime: Runtime,
    resolver: Resolver,
    logical_id: str,
    event_name: str | None = None,
    at: datetime | None = None,
) -> Any:
    """Invoke a function as its ScheduleV2 (or Schedule) event ``event_name`` would at ``at``.

    The schedule's ``Input`` (context placeholders filled in) is the event; without one the
    event is a scheduled-event envelope with ``time``. Raises InvocationError on failure."""
    spec = runtime.spec(logical_id)
    schedules = {**spec.events_of_type("Schedule"), **spec.events_of_type("ScheduleV2")}
    if not schedules:
        raise KeyError(f"{logical_id} has no schedule")
    if event_name is None:
        event_name = next(iter(schedules))
    props = schedules[event_name]
    when = iso(at or datetime.now(UTC))
    schedule_arn = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/{logical_id}{event_name}"
    raw_input = props.get("Input")
    if raw_input is not None:
        text = str(resolver.resolve(raw_input))
        for placeholder, value in {
            "<aws.scheduler.scheduled-time>": when,
            "<aws.scheduler.execution-id>": str(uuid.uuid4()),
            "<aws.scheduler.schedule-arn>": schedule_arn,
            "<aws.scheduler.attempt-number>": "1",
        }.items():
            text = text.replace(placeholder, value)
        event: Any = json.loads(text)
    else:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler" if "ScheduleV2" in str(spec.events[event_name].get("Type")) else "aws.events",
            "account": ACCOUNT,
            "time": when,
            "region": REGION,
            "resources": [schedule_arn],
            "detail": {},
        }
    return runtime.invoke(logical_id, event)


__all__ = ["fire_schedule"]
