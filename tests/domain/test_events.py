"""Incoming events (interfaces.md; billing-rules.md, "Event times that are refused", "Attribution"):
what is accepted, what is refused and why, and the time bounds at their edges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing.domain import events
from billing.domain.errors import EventTimeRefused, InvalidInput
from tests.domain.accounts import t

NOW = t("2026-03-10T12:00:00Z")


def raw(detail_type: str = "Container Started", source: str = "platform.containers", **detail: Any) -> dict:
    base = {"event_id": "e1", "account_id": "a1", "occurred_at": "2026-03-10T11:00:00Z"}
    return {"source": source, "detail-type": detail_type, "detail": {**base, **detail}}


def started(**detail: Any) -> dict:
    return raw(**{"container_id": "c1", "run_id": "r1", "tier": "small", **detail})


def test_a_valid_event_is_parsed_into_its_model_with_utc_times_to_the_second() -> None:
    event = events.parse_platform_event(started(occurred_at="2026-03-10T11:00:00.750+00:00"))
    assert (event.source, event.detail_type) == ("platform.containers", "Container Started")
    detail = event.detail
    assert isinstance(detail, events.ContainerStarted)
    assert (detail.event_id, detail.account_id, detail.container_id, detail.run_id, detail.tier,
            detail.code_supporter) == ("e1", "a1", "c1", "r1", "small", False)
    assert detail.occurred_at == datetime(2026, 3, 10, 11, 0, 0, tzinfo=UTC)
    assert detail.occurred_at.tzinfo is UTC


@pytest.mark.parametrize(("source", "detail_type", "fields", "model"), [
    ("platform.accounts", "Account Created", {"email": "a@b.c", "plan": "free"}, events.AccountCreated),
    ("platform.accounts", "Plan Changed", {"plan": "membership"}, events.PlanChanged),
    ("platform.containers", "Container Created", {"container_id": "c", "storage_gb": 10}, events.ContainerCreated),
    ("platform.containers", "Container Stopped", {"container_id": "c", "run_id": "r"}, events.ContainerStopped),
    ("platform.containers", "Container Traffic Reported",
     {"container_id": "c", "run_id": "r", "traffic_bytes": 5}, events.ContainerTrafficReported),
    ("platform.containers", "Container Resized", {"container_id": "c", "storage_gb": 0}, events.ContainerResized),
    ("platform.containers", "Container Inactivated", {"container_id": "c"}, events.ContainerInactivated),
    ("platform.containers", "Container Reactivated", {"container_id": "c"}, events.ContainerReactivated),
    ("platform.containers", "Container Deleted", {"container_id": "c"}, events.ContainerDeleted),
    ("platform.containers", "Container Labeled", {"container_id": "c", "labels": {"team": "x"}},
     events.ContainerLabeled),
    ("platform.ai", "AI Usage Recorded",
     {"feature": "chat", "model": "gpt-5-nano", "input_tokens": 1, "output_tokens": 2}, events.AiUsageRecorded),
])
def test_every_event_of_the_contract_has_its_model(source: str, detail_type: str, fields: dict, model: type) -> None:
    event = events.parse_platform_event(raw(detail_type, source, **fields))
    assert type(event.detail) is model
    for name, value in fields.items():
        assert getattr(event.detail, name) == value


def test_defaults_of_optional_fields() -> None:
    stopped = events.parse_platform_event(raw("Container Stopped", container_id="c", run_id="r")).detail
    assert stopped.traffic_bytes == 0  # type: ignore[attr-defined]
    ai = events.parse_platform_event(raw("AI Usage Recorded", "platform.ai", feature="snap", model="m",
                                         input_tokens=0, output_tokens=0)).detail
    assert (ai.container_id, ai.labels) == (None, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("event", "reason"), [
    ("not an object", "event is not a JSON object"),
    ({"detail-type": "Container Started", "detail": {}}, "event has no source or detail-type"),
    ({"source": "platform.containers", "detail": {}}, "event has no source or detail-type"),
    ({"source": 1, "detail-type": "Container Started"}, "event has no source or detail-type"),
    (raw("Container Exploded"), "unsupported event: platform.containers / Container Exploded"),
    (raw(source="platform.ai"), "unsupported event: platform.ai / Container Started"),
    ({"source": "platform.containers", "detail-type": "Container Started", "detail": "x"},
     "event detail is not a JSON object"),
])
def test_malformed_events_are_refused_with_their_reason(event: Any, reason: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        events.parse_platform_event(event)
    assert str(refused.value) == reason


def test_a_source_not_accepted_here_is_refused() -> None:
    with pytest.raises(InvalidInput, match=r"unsupported event: platform\.containers / Container Started"):
        events.parse_platform_event(started(), accepted_sources=("platform.ai",))
    assert events.parse_platform_event(started(), accepted_sources=("platform.containers",)).source == (
        "platform.containers")


@pytest.mark.parametrize(("change", "field"), [
    ({"occurred_at": "2026-03-10T11:00:00"}, "occurred_at"),  # no zone
    ({"occurred_at": "2026-03-10T11:00:00+01:00"}, "occurred_at"),  # not UTC
    ({"event_id": ""}, "event_id"),
    ({"account_id": "x" * 201}, "account_id"),
    ({"tier": 5}, "tier"),
    ({"code_supporter": "yes"}, "code_supporter"),
])
def test_a_bad_field_is_named(change: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        events.parse_platform_event(started(**change))
    text = str(refused.value)
    assert text.startswith("invalid Container Started: ") and field in text and "$." not in text


def test_the_longest_accepted_values() -> None:
    event = events.parse_platform_event(started(account_id="x" * 200, container_id="c"))
    assert event.detail.account_id == "x" * 200
    created = events.parse_platform_event(raw("Container Created", container_id="c", storage_gb=10**15)).detail
    assert created.storage_gb == 10**15  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput):
        events.parse_platform_event(raw("Container Created", container_id="c", storage_gb=10**15 + 1))
    with pytest.raises(InvalidInput):
        events.parse_platform_event(raw("Container Created", container_id="c", storage_gb=-1))


@pytest.mark.parametrize("labels", [
    {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6"},  # 6 pairs
    {"Team": "x"}, {"1team": "x"}, {"t" * 33: "x"}, {"": "x"},
    {"team": "x" * 65}, {"team": "a\nb"}, {"team": "a\x7fb"}, {"team": 5},
])
def test_labels_beyond_the_rules_are_refused(labels: dict) -> None:
    with pytest.raises(InvalidInput):
        events.parse_platform_event(raw("Container Labeled", container_id="c", labels=labels))


def test_labels_within_the_rules_are_kept() -> None:
    labels = {"a": "1", "b": "", "t" * 32: "x" * 64, "z9_": "=SUM(A1) é", "e": "5"}
    event = events.parse_platform_event(raw("Container Labeled", container_id="c", labels=labels))
    assert event.detail.labels == labels  # type: ignore[attr-defined]


def test_emails_and_plans() -> None:
    ok = events.parse_platform_event(raw("Account Created", "platform.accounts", email="a@b", plan="free"))
    assert ok.detail.email == "a@b"  # type: ignore[attr-defined]
    for bad in ({"email": "ab", "plan": "free"}, {"email": "a b@c", "plan": "free"}, {"email": "a@b", "plan": "gold"},
                {"email": "@b.c", "plan": "free"}, {"email": "a@" + "b" * 320, "plan": "free"}):
        with pytest.raises(InvalidInput):
            events.parse_platform_event(raw("Account Created", "platform.accounts", **bad))


def test_a_message_as_json_text_and_as_bytes() -> None:
    text = '{"event_id": "e", "account_id": "a", "occurred_at": "2026-03-10T11:00:00Z", "plan": "free"}'
    for data in (text, text.encode()):
        parsed = events.parse_message(data, events.PlanChanged, "plan change")
        assert (parsed.plan, parsed.occurred_at) == ("free", t("2026-03-10T11:00:00Z"))
    with pytest.raises(InvalidInput) as refused:
        events.parse_message("{not json", events.PlanChanged, "plan change")
    assert str(refused.value) == "invalid plan change: not JSON"
    with pytest.raises(InvalidInput) as refused:
        events.parse_message({"event_id": "e"}, events.PlanChanged, "plan change")
    assert str(refused.value).startswith("invalid plan change: Object missing required field")


# ---------------------------------------------------------------- the time bounds


def test_five_minutes_ahead_is_accepted_and_one_second_more_refused() -> None:
    tolerance, oldest = events.FUTURE_TOLERANCE, events.OLDEST_ACCEPTED
    assert (tolerance, oldest) == (timedelta(minutes=5), timedelta(days=30))
    events.check_event_time(NOW + timedelta(minutes=5), NOW)
    with pytest.raises(EventTimeRefused) as refused:
        events.check_event_time(NOW + timedelta(minutes=5, seconds=1), NOW)
    assert str(refused.value) == (
        "occurred_at 2026-03-10T12:05:01+00:00 is more than 5 minutes after the time it is processed")
    with pytest.raises(EventTimeRefused):  # an operator's replay is not a licence for the future
        events.check_event_time(NOW + timedelta(minutes=5, seconds=1), NOW, replayed=True)


def test_thirty_days_old_is_accepted_one_second_more_only_when_an_operator_replays_it() -> None:
    events.check_event_time(NOW - timedelta(days=30), NOW)
    with pytest.raises(EventTimeRefused) as refused:
        events.check_event_time(NOW - timedelta(days=30, seconds=1), NOW)
    assert str(refused.value) == ("occurred_at 2026-02-08T11:59:59+00:00 is more than 30 days before the time it"
                                  " is processed; an operator replays such events on purpose")
    events.check_event_time(NOW - timedelta(days=300), NOW, replayed=True)
    assert events.REPLAY_MARK == "replay"
