"""The sample events of ``events/``, moved to the present.

The samples tell one story dated November 2026 (events/README.md). Platform events older than 30
days are refused, so a run later than that shifts every time in the samples by the same amount,
keeping their order and spacing: the story's latest platform event then happens a minute ago.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from localsam.template import ROOT

EVENTS = ROOT / "events"
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def latest_platform_event(root: Path = EVENTS) -> datetime:
    """The latest ``occurred_at`` among the platform-event samples."""
    times = []
    for path in root.glob("**/*.json"):
        event = json.loads(path.read_text())
        detail = event.get("detail") if isinstance(event, dict) else None
        occurred = detail.get("occurred_at") if isinstance(detail, dict) else None
        if isinstance(occurred, str) and _TIME.fullmatch(occurred):
            times.append(_parse(occurred))
    return max(times)


def shift_to_now(now: datetime | None = None, root: Path = EVENTS) -> timedelta:
    """How far the samples move so that the story's latest platform event happens a minute before now."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    return now - timedelta(minutes=1) - latest_platform_event(root)


def redate(value: Any, shift: timedelta) -> Any:
    """``value`` (a sample, or any JSON) with every ``YYYY-MM-DDTHH:MM:SSZ`` time moved by ``shift``,
    inside strings too (an SQS body, an HTTP body)."""
    if isinstance(value, dict):
        return {k: redate(v, shift) for k, v in value.items()}
    if isinstance(value, list):
        return [redate(v, shift) for v in value]
    if isinstance(value, str):
        return _TIME.sub(lambda m: (_parse(m.group()) + shift).strftime("%Y-%m-%dT%H:%M:%SZ"), value)
    return value
