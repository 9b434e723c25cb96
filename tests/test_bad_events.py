"""Every malformed event is rejected with its reason logged, writes nothing, and fails the
invocation (so EventBridge/Lambda put it in the function's dead-letter queue)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest

from billing.domain.errors import BillingError, InvalidInput, UnknownAccount, UnknownPriceItem
from billing.observability import logger
from tests.helpers import Platform


@contextmanager
def capture_logs() -> Iterator[list[logging.LogRecord]]:
    """The structured log records of the billing logger (constant message, keyword context)."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect()
    target = logging.getLogger(logger.name)
    target.addHandler(handler)
    try:
        yield records
    finally:
        target.removeHandler(handler)


def table_items(table_name: str) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=table_name, ConsistentRead=True)["Items"]


def base(p: Platform) -> None:
    p.send("Account Created", "2026-03-01T00:00:00Z", email="dev@example.com", plan="free")
    p.send("Container Created", "2026-03-02T00:00:00Z", container_id="c1", storage_gb=20)
    p.send("Container Started", "2026-03-02T01:00:00Z", container_id="c1", run_id="r1", tier="small",
           code_supporter=False)


def started(**overrides: Any) -> dict[str, Any]:
    detail = {"event_id": "bad-1", "account_id": "acct-1", "occurred_at": "2026-03-02T05:00:00Z",
              "container_id": "c1", "run_id": "r2", "tier": "small", "code_supporter": False}
    detail.update(overrides)
    return {"source": "platform.containers", "detail-type": "Container Started",
            "detail": {k: v for k, v in detail.items() if v is not None}}


def stopped(**overrides: Any) -> dict[str, Any]:
    detail = {"event_id": "bad-2", "account_id": "acct-1", "occurred_at": "2026-03-02T05:00:00Z",
              "container_id": "c1", "run_id": "r1", "traffic_bytes": 0}
    detail.update(overrides)
    return {"source": "platform.containers", "detail-type": "Container Stopped", "detail": detail}


CASES = [
    ("missing container_id", started(container_id=None), InvalidInput, "missing required field `container_id`"),
    ("missing event_id", started(event_id=None), InvalidInput, "missing required field `event_id`"),
    ("unknown tier", started(tier="huge"), UnknownPriceItem, "unknown container tier: huge"),
    ("negative bytes", stopped(traffic_bytes=-1), InvalidInput, "traffic_bytes"),
    ("bytes as text", stopped(traffic_bytes="12"), InvalidInput, "traffic_bytes"),
    ("unparseable time", stopped(occurred_at="yesterday"), InvalidInput, "occurred_at"),
    ("time without zone", stopped(occurred_at="2026-03-02T05:00:00"), InvalidInput, "occurred_at"),
    ("code_supporter not a bool", started(code_supporter="yes"), InvalidInput, "code_supporter"),
    ("unknown account", stopped(account_id="nobody"), UnknownAccount, "no account nobody"),
    ("unknown detail-type", {"source": "platform.containers", "detail-type": "Container Exploded",
                             "detail": {}}, InvalidInput, "unsupported event"),
    ("detail not an object", {"source": "platform.containers", "detail-type": "Container Stopped",
                              "detail": "x"}, InvalidInput, "not a JSON object"),
    ("unknown source", {"source": "platform.billing", "detail-type": "AI Usage Recorded",
                        "detail": {}}, InvalidInput, "unsupported event"),
]


@pytest.mark.parametrize(("name", "event", "error", "reason"), CASES, ids=[c[0] for c in CASES])
def test_malformed_event_is_rejected_and_writes_nothing(ledger, table_name, name, event, error, reason):
    p = Platform(ledger)
    base(p)
    before = table_items(table_name)
    with capture_logs() as records, pytest.raises(error):
        p.deliver(event)  # the intake refuses it, or the settlement of the queued event does
    assert table_items(table_name) == before
    rejected = [r for r in records if r.getMessage() == "event rejected"]
    assert rejected and reason in rejected[0].reason


def test_lambda_handler_fails_the_invocation(ledger, table_name):
    """Through the real entry point (as EventBridge invokes it): the error propagates to Lambda."""
    p = Platform(ledger)
    base(p)

    class Context:
        function_name = "ContainerSettlementFunction"
        memory_limit_in_mb = 512
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:x"
        aws_request_id = "req-1"

    event = started(tier="gpu-a100")
    p.advance_clock(event)
    with pytest.raises(UnknownPriceItem):
        p.handler.lambda_handler(event, Context())


def member_event(detail_type: str, account_id: str = "acct-1", **fields: Any) -> dict[str, Any]:
    detail = {"event_id": "bad-m", "account_id": account_id, "occurred_at": "2026-03-02T05:00:00Z", **fields}
    return {"source": "platform.accounts", "detail-type": detail_type, "detail": detail}


MEMBER_CASES = [
    ("a role that does not exist", member_event("Member Added", user_id="eve", role="root", email="e@example.com"),
     "role"),
    ("a role change to no role", member_event("Member Role Changed", user_id="olivia", role="superuser"), "role"),
    ("removing the last owner", member_event("Member Removed", user_id="olivia"), "last owner"),
    ("demoting the last owner", member_event("Member Role Changed", user_id="olivia", role="billing"), "last owner"),
    ("an unknown account", member_event("Member Added", "nobody", user_id="a", role="member", email="a@example.com"),
     "no account nobody"),
    ("another account's member", member_event("Member Removed", user_id="zed"), "not a member"),
    ("a user_id too long", member_event("Member Added", user_id="u" * 129, role="member", email="u@example.com"),
     "user_id"),
]


@pytest.mark.parametrize(("name", "event", "reason"), MEMBER_CASES, ids=[c[0] for c in MEMBER_CASES])
def test_a_refused_membership_event_is_dead_lettered_with_its_reason_and_writes_nothing(ledger, table_name, name,
                                                                                        event, reason):
    p = Platform(ledger)
    base(p)
    p.send("Member Added", "2026-03-02T02:00:00Z", user_id="olivia", role="owner", email="o@example.com")
    other = Platform(ledger, "acct-2")
    other.send("Account Created", "2026-03-01T00:00:00Z", email="two@example.com", plan="free")
    other.send("Member Added", "2026-03-02T02:00:00Z", user_id="zed", role="member", email="z@example.com")
    before = table_items(table_name)
    with capture_logs() as records, pytest.raises(BillingError):
        p.deliver(event)  # the intake refuses it, or the settlement of the queued event does
    assert table_items(table_name) == before
    rejected = [r for r in records if r.getMessage() == "event rejected"]
    assert rejected and reason in rejected[0].reason, [r.__dict__.get("reason") for r in records]
