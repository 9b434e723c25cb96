"""The template's SQS event source mappings: the waiting messages of a queue are delivered to its
function in batches, as Lambda's poller would, with partial batch failures and the queue's
RedrivePolicy.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from localsam.aws import AwsStandIns
from localsam.runtime import REGION, InvocationError, Resolver, Runtime


@dataclass
class DrainReport:
    invocations: int = 0
    succeeded: list[str] = field(default_factory=list)  # message ids
    failed: list[str] = field(default_factory=list)  # message ids, each time one failed
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def add(self, other: DrainReport) -> None:
        self.invocations += other.invocations
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.errors += other.errors


class SqsMappings:
    """The SQS events of the functions of ``runtime``, on the queues of ``aws``."""

    def __init__(self, runtime: Runtime, resolver: Resolver, aws: AwsStandIns) -> None:
        self.runtime = runtime
        self.resolver = resolver
        self.aws = aws

    def mappings(self) -> list[tuple[str, str, int, bool]]:
        """(function, queue name, batch size, reports item failures) of every SQS event."""
        mappings = []
        for spec in self.runtime.functions.values():
            for props in spec.events_of_type("SQS").values():
                queue = self.aws.queue_of_arn(props.get("Queue"), self.resolver)
                if queue is None:
                    raise ValueError(f"{spec.logical_id}: SQS event on an unknown queue {props.get('Queue')!r}")
                mappings.append(
                    (
                        spec.logical_id,
                        queue,
                        int(props.get("BatchSize", 10)),
                        "ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    )
                )
        return mappings

    def drain(self, max_rounds: int = 100) -> DrainReport:
        """Deliver the waiting messages of every queue with an SQS event source until all are empty.

        A failed message (the whole batch when the handler raises, or the ids it reports with
        ReportBatchItemFailures) becomes visible again at once and is retried; the queue's
        RedrivePolicy moves it to the dead-letter queue after maxReceiveCount receives. A queue
        without a RedrivePolicy keeps its failing messages (the drain stops after max_rounds).
        Messages are received with a visibility timeout (released at once when they fail), so that a
        FIFO queue keeps a message group's later messages hidden while an earlier one is in flight."""
        report = DrainReport()
        sqs = self.aws.client("sqs")
        for _ in range(max_rounds):
            busy = False
            for function, queue, batch_size, partial in self.mappings():
                if not self.aws.queue_may_have_messages(queue):
                    continue
                url = self.aws.queue_urls[queue]
                messages = sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=max(1, min(batch_size, 10)),
                    VisibilityTimeout=60,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    continue
                busy = True
                event = {"Records": [_sqs_record(m, self.aws.queue_arns[queue]) for m in messages]}
                report.invocations += 1
                failed: set[str]
                try:
                    result = self.runtime.invoke(function, event)
                    failed = set()
                    if partial and isinstance(result, dict):
                        failed = {str(f.get("itemIdentifier")) for f in result.get("batchItemFailures") or []}
                except InvocationError as exc:
                    report.errors.append(f"{function}: {type(exc.error).__name__}: {exc.error}")
                    failed = {m["MessageId"] for m in messages}
                for m in messages:
                    if m["MessageId"] in failed:  # visible again at once: received again next round
                        report.failed.append(m["MessageId"])
                        sqs.change_message_visibility(
                            QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                        )
                    else:
                        report.succeeded.append(m["MessageId"])
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            if not busy:
                break
        return report


FIFO_ATTRIBUTES = ("MessageGroupId", "SequenceNumber", "MessageDeduplicationId")


def _sqs_record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """The Lambda event record of a message received from the queue ``queue_arn``."""
    attributes = message.get("Attributes", {})
    message_attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        # As Lambda hands them over: the value under its kind's key only (no null for the other).
        kind = {"stringValue": value["StringValue"]} if "StringValue" in value else {}
        if "BinaryValue" in value:
            kind["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
        message_attributes[name] = {
            **kind,
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType"),
        }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", "0"),
            "SenderId": attributes.get("SenderId", "local"),
            "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "0"),
            # a FIFO queue's message: its group, sequence and deduplication id
            **{k: v for k, v in attributes.items() if k in FIFO_ATTRIBUTES},
        },
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


__all__ = ["DrainReport", "SqsMappings"]
