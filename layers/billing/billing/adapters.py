"""Adapters to AWS services other than DynamoDB: EventBridge (events out), SES (mail), SQS.

boto3 is imported lazily: most invocations publish nothing, and a cold start should not pay for
a client it does not use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from billing.domain.model import OutboundEvent
from billing.observability import logger

SOURCE = "billing"
_CLIENT_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")


def aws_client(service: str) -> Any:
    """A boto3 client, made once per service and environment (creating one costs tens of ms, too
    much to pay for every settlement that publishes an event or queues a mail check)."""
    suffix = service.upper().replace("-", "_")
    key = tuple(os.environ.get(name) for name in (*_CLIENT_ENV, f"AWS_ENDPOINT_URL_{suffix}"))
    return _client_for(service, key)


@lru_cache(maxsize=16)
def _client_for(service: str, _env: tuple[str | None, ...]) -> Any:
    import boto3

    return boto3.client(service)  # type: ignore[call-overload]  # the service name is a plain str here


class EventPublisher:
    """Publishes outbound events to EventBridge with source ``billing``."""

    def __init__(self, bus_name: str = "default", client: Any | None = None) -> None:
        self.bus_name = bus_name
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws_client("events")

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        for start in range(0, len(events), 10):  # PutEvents takes at most 10 entries
            batch = events[start : start + 10]
            response = self.client.put_events(
                Entries=[
                    {
                        "Source": SOURCE,
                        "DetailType": e.detail_type,
                        "Detail": json.dumps(e.detail, default=str),
                        "EventBusName": self.bus_name,
                    }
                    for e in batch
                ]
            )
            if response.get("FailedEntryCount"):
                logger.error("events not published", failed=response["FailedEntryCount"])
                raise RuntimeError("EventBridge rejected some events")
            logger.info("events published", detail_types=[e.detail_type for e in batch])


class MailSender:
    """Sends mail through SES (v2 API) from the configured sender address: plain text, and HTML as
    the alternative part when given (a multipart/alternative message); with the configuration set
    (when one is configured) that publishes bounces and complaints to CloudWatch."""

    def __init__(self, sender: str, client: Any | None = None, configuration_set: str | None = None) -> None:
        self.sender = sender
        self._client = client
        self.configuration_set = configuration_set

    @property
    def client(self) -> Any:
        return self._client or aws_client("sesv2")

    def send(self, to: str, subject: str, body: str, html: str | None = None) -> str:
        parts: dict[str, Any] = {"Text": {"Data": body, "Charset": "UTF-8"}}
        if html is not None:
            parts["Html"] = {"Data": html, "Charset": "UTF-8"}
        extra = {"ConfigurationSetName": self.configuration_set} if self.configuration_set else {}
        response = self.client.send_email(
            FromEmailAddress=self.sender,
            Destination={"ToAddresses": [to]},
            Content={"Simple": {"Subject": {"Data": subject, "Charset": "UTF-8"}, "Body": parts}},
            **extra,
        )
        return str(response.get("MessageId", ""))


class MessageQueue:
    """An SQS queue that messages are sent to in batches of at most 10."""

    def __init__(self, queue_url: str | None, client: Any | None = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws_client("sqs")

    def send(
        self, body: str, attributes: dict[str, str] | None = None, group: str | None = None, dedup: str | None = None
    ) -> None:
        """One message (``group`` and ``dedup``: a FIFO queue's message group and deduplication ids)."""
        if not self.queue_url:
            raise RuntimeError("no queue URL is configured")
        kwargs: dict[str, Any] = {"QueueUrl": self.queue_url, "MessageBody": body}
        if attributes:
            kwargs["MessageAttributes"] = {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}
        if group:
            kwargs["MessageGroupId"] = group
        if dedup:
            kwargs["MessageDeduplicationId"] = dedup
        self.client.send_message(**kwargs)

    def send_batch(self, bodies: Sequence[str]) -> None:
        if not self.queue_url:
            raise RuntimeError("no queue URL is configured")
        for start in range(0, len(bodies), 10):
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])]
            response = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if response.get("Failed"):
                raise RuntimeError(f"{len(response['Failed'])} messages were not queued")


class FunctionInvoker:
    """Invokes a Lambda function asynchronously (InvocationType ``Event``) with a JSON payload: how a
    long job hands the rest of its work to a fresh invocation of itself."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws_client("lambda")

    def invoke_async(self, function_arn: str, payload: dict[str, Any]) -> None:
        self.client.invoke(FunctionName=function_arn, InvocationType="Event", Payload=json.dumps(payload).encode())
