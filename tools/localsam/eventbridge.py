"""The template's EventBridge rules: an event put on the default bus reaches every function whose
``EventBridgeRule`` (or ``CloudWatchEvent``) pattern matches it (:mod:`localsam.patterns`).

A handler that raises sends the event to the function's dead-letter queue (else the rule's), with
the attributes Lambda's asynchronous invocation gives it once its retries are spent.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from localsam.aws import AwsStandIns
from localsam.patterns import matches
from localsam.runtime import ACCOUNT, REGION, InvocationError, Resolver, Runtime


def iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Delivery:
    """One function invocation caused by a trigger."""

    function: str
    trigger: str
    ok: bool
    result: Any = None
    error: str | None = None
    dead_letter_queue: str | None = None


@dataclass
class PutEventResult:
    event: dict[str, Any]
    deliveries: list[Delivery] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.deliveries)

    @property
    def failures(self) -> list[Delivery]:
        return [d for d in self.deliveries if not d.ok]

    @property
    def matched(self) -> list[str]:
        return [d.function for d in self.deliveries]


class EventBridgeRules:
    """The default bus with the template's rules, delivering to the functions of ``runtime``."""

    def __init__(self, runtime: Runtime, resolver: Resolver, aws: AwsStandIns) -> None:
        self.runtime = runtime
        self.resolver = resolver
        self.aws = aws

    def rules(self) -> list[tuple[str, str, dict[str, Any], str | None]]:
        """(function, event name, pattern, dead-letter queue) of every EventBridgeRule."""
        rules = []
        for spec in self.runtime.functions.values():
            for kind in ("EventBridgeRule", "CloudWatchEvent"):
                for name, props in spec.events_of_type(kind).items():
                    bus = self.resolver.resolve(props.get("EventBusName", "default"))
                    if bus not in ("default", None):
                        continue
                    # a handler error ends in the function's DLQ (Lambda's async retries are spent);
                    # the rule's DLQ takes what EventBridge could not deliver at all
                    dlq = self.aws.queue_of_arn(spec.dead_letter_arn, self.resolver) or self.aws.queue_of_arn(
                        (props.get("DeadLetterConfig") or {}).get("Arn"), self.resolver
                    )
                    rules.append((spec.logical_id, name, self.resolver.resolve(props.get("Pattern") or {}), dlq))
        return rules

    def put_event(
        self,
        source: str,
        detail_type: str,
        detail: Mapping[str, Any],
        time: datetime | str | None = None,
    ) -> PutEventResult:
        """Put an event on the default bus: every function whose rule matches gets it."""
        at = time if isinstance(time, str) else iso(time or datetime.now(UTC))
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": ACCOUNT,
            "time": at,
            "region": REGION,
            "resources": [],
            "detail": dict(detail),
        }
        return self.deliver_event(event)

    def deliver_event(self, event: dict[str, Any]) -> PutEventResult:
        """Deliver a complete EventBridge envelope to the matching rules' functions."""
        result = PutEventResult(event)
        for function, rule, pattern, dlq in self.rules():
            if not matches(pattern, event):
                continue
            try:
                value = self.runtime.invoke(function, event)
                result.deliveries.append(Delivery(function, rule, True, value))
            except InvocationError as exc:
                error = f"{type(exc.error).__name__}: {exc.error}"
                if dlq:
                    self._dead_letter(dlq, event, rule, error)
                result.deliveries.append(Delivery(function, rule, False, None, error, dlq))
        return result

    def _dead_letter(self, queue: str, event: dict[str, Any], rule: str, error: str) -> None:
        self.aws.client("sqs").send_message(
            QueueUrl=self.aws.queue_urls[queue],
            MessageBody=json.dumps(event),
            MessageAttributes={
                "RequestID": {"DataType": "String", "StringValue": str(uuid.uuid4())},
                "ErrorCode": {"DataType": "String", "StringValue": "200"},
                "ErrorMessage": {"DataType": "String", "StringValue": error[:1000]},
                "RULE_NAME": {"DataType": "String", "StringValue": rule},
            },
        )


__all__ = ["Delivery", "EventBridgeRules", "PutEventResult", "iso"]
