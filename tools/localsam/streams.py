"""The template's DynamoDB stream event sources, delivered as Lambda's stream poller would.

DynamoDB Local serves the table's stream (``dynamodbstreams``). For every function with a
``DynamoDB`` event on the table's stream, :meth:`StreamMappings.drain` reads the new records of
every shard, converts them to the Lambda event shape, drops the ones its ``FilterCriteria`` do not
match (as Lambda does: a filtered record counts as processed), and invokes the function in batches
of ``BatchSize``, in order. A failed batch (the handler raised) or a reported item failure
(``ReportBatchItemFailures``) is retried from the first failed record; after
``MaximumRetryAttempts`` retries that record is given up, its batch's metadata goes to the
``OnFailure`` destination (an SQS queue) and the poller moves past it. Retrying from the failed
record alone stands in for ``BisectBatchOnFunctionError``, which converges on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from localsam.aws import AwsStandIns
from localsam.patterns import matches
from localsam.runtime import ACCOUNT, REGION, InvocationError, Resolver, Runtime


@dataclass
class StreamReport:
    invocations: int = 0
    delivered: int = 0  # records handed to a function and not reported failed
    retried: int = 0
    given_up: list[str] = field(default_factory=list)  # sequence numbers sent to OnFailure
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.given_up

    def add(self, other: StreamReport) -> None:
        self.invocations += other.invocations
        self.delivered += other.delivered
        self.retried += other.retried
        self.given_up += other.given_up
        self.errors += other.errors


@dataclass
class _Mapping:
    function: str
    batch_size: int
    max_retries: int
    reports_item_failures: bool
    filters: list[dict[str, Any]]
    on_failure_queue: str | None
    pending: list[dict[str, Any]] = field(default_factory=list)  # records not delivered yet
    attempts: dict[str, int] = field(default_factory=dict)  # sequence number -> failed attempts


class StreamMappings:
    """The DynamoDB stream events of the functions of ``runtime``, on the table's stream."""

    def __init__(self, runtime: Runtime, resolver: Resolver, aws: AwsStandIns) -> None:
        self.runtime = runtime
        self.resolver = resolver
        self.aws = aws
        self.client = aws.client("dynamodbstreams")
        self.stream_arn = aws.stream_arn
        self.mappings = self._read_mappings()
        self._iterators: dict[str, str | None] = {}  # shard id -> next iterator
        self._position = "LATEST" if aws.table_existed else "TRIM_HORIZON"
        # Other readers of the stream than functions (the analytics pipe): each gets every new record.
        self.readers: list[Callable[[list[dict[str, Any]]], None]] = []

    def _read_mappings(self) -> list[_Mapping]:
        out = []
        for spec in self.runtime.functions.values():
            for name, props in spec.events_of_type("DynamoDB").items():
                stream = self.resolver.resolve(props.get("Stream"))
                if stream != self.aws.local_stream_arn_ref:
                    raise ValueError(f"{spec.logical_id}.{name}: a stream of an unknown table: {stream!r}")
                criteria = (props.get("FilterCriteria") or {}).get("Filters", [])
                filters = [json.loads(str(f["Pattern"])) for f in criteria]
                destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
                out.append(
                    _Mapping(
                        function=spec.logical_id,
                        batch_size=int(props.get("BatchSize", 100)),
                        max_retries=int(props.get("MaximumRetryAttempts", -1)),
                        reports_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                        filters=filters,
                        on_failure_queue=self.aws.queue_of_arn(destination, self.resolver) if destination else None,
                    )
                )
        return out

    # ------------------------------------------------------------------ reading the stream
    def _new_records(self) -> list[dict[str, Any]]:
        if not self.stream_arn:
            return []
        shards = self.client.describe_stream(StreamArn=self.stream_arn)["StreamDescription"].get("Shards", [])
        records: list[dict[str, Any]] = []
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self.client.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=self._position
                )["ShardIterator"]
            iterator = self._iterators[shard_id]
            while iterator:
                page = self.client.get_records(ShardIterator=iterator, Limit=1000)
                iterator = page.get("NextShardIterator")
                records.extend(self._lambda_record(r) for r in page.get("Records", []))
                if not page.get("Records"):
                    break
            self._iterators[shard_id] = iterator
        return records

    def _lambda_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(json.dumps(record, default=str))
        # The runner's clock when it read the change (it reads right after every write), not DynamoDB
        # Local's: the JVM keeps the machine's real clock, which a run travelled in time (tests/travel.py)
        # does not move, and the functions compare this time with their own (a replay's batch window).
        out["dynamodb"]["ApproximateCreationDateTime"] = float(int(datetime.now(UTC).timestamp()))
        out["awsRegion"] = REGION
        out["eventSourceARN"] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.aws.table_name}/stream/local"
        return out

    # ------------------------------------------------------------------ delivering
    def drain(self, max_rounds: int = 1000) -> StreamReport:
        """Deliver every new record to every mapping (retrying failures) until all are through."""
        report = StreamReport()
        for _ in range(max_rounds):
            new = self._new_records()
            for reader in self.readers:
                reader(new)
            for mapping in self.mappings:
                mapping.pending.extend(r for r in new if self._wanted(mapping, r))
            busy = False
            for mapping in self.mappings:
                if mapping.pending:
                    busy = True
                    self._deliver_batch(mapping, report)
            if not busy and not new:
                break
        return report

    @staticmethod
    def _wanted(mapping: _Mapping, record: dict[str, Any]) -> bool:
        return not mapping.filters or any(matches(f, record) for f in mapping.filters)

    def _deliver_batch(self, mapping: _Mapping, report: StreamReport) -> None:
        batch = mapping.pending[: mapping.batch_size]
        report.invocations += 1
        try:
            result = self.runtime.invoke(mapping.function, {"Records": batch})
            failed = self._first_failure(mapping, batch, result)
        except InvocationError as exc:
            report.errors.append(f"{mapping.function}: {type(exc.error).__name__}: {exc.error}")
            failed = 0
        done = batch if failed is None else batch[:failed]
        report.delivered += len(done)
        del mapping.pending[: len(done)]
        if failed is None:
            return
        first = mapping.pending[0]
        sequence = first["dynamodb"]["SequenceNumber"]
        mapping.attempts[sequence] = mapping.attempts.get(sequence, 0) + 1
        if mapping.max_retries < 0 or mapping.attempts[sequence] <= mapping.max_retries:
            report.retried += 1
            return
        # retries exhausted: the record's metadata goes to the on-failure destination, as Lambda's
        mapping.pending.pop(0)
        report.given_up.append(sequence)
        if mapping.on_failure_queue:
            self.aws.client("sqs").send_message(
                QueueUrl=self.aws.queue_urls[mapping.on_failure_queue],
                MessageBody=json.dumps(
                    {
                        "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": mapping.function},
                        "DDBStreamBatchInfo": {
                            "shardId": "local",
                            "startSequenceNumber": sequence,
                            "endSequenceNumber": sequence,
                            "batchSize": 1,
                            "streamArn": first["eventSourceARN"],
                            # ISO-8601 UTC, as Lambda writes them: the window a replay redelivers
                            "approximateArrivalOfFirstRecord": _arrival(first),
                            "approximateArrivalOfLastRecord": _arrival(first),
                        },
                    }
                ),
            )

    @staticmethod
    def _first_failure(mapping: _Mapping, batch: list[dict[str, Any]], result: Any) -> int | None:
        """The index of the first record to retry (None: the whole batch went through)."""
        if not mapping.reports_item_failures or not isinstance(result, dict):
            return None
        reported = {str(f.get("itemIdentifier")) for f in result.get("batchItemFailures") or []}
        for index, record in enumerate(batch):
            if record["dynamodb"]["SequenceNumber"] in reported:
                return index
        return None


def _arrival(record: dict[str, Any]) -> str:
    created = record["dynamodb"].get("ApproximateCreationDateTime")
    moment = datetime.fromtimestamp(created, UTC) if isinstance(created, int | float) else datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


__all__ = ["StreamMappings", "StreamReport"]
