"""``LocalStack``: the whole template running in this process, for tests, the demo and the CLI.

* DynamoDB: DynamoDB Local (started here, or an endpoint you pass), with the table created from
  ``template.yaml``.
* SQS, EventBridge, SES v2 (and Scheduler): an in-process moto server on a free localhost port.
  The template's queues are created there (RedrivePolicy included), the SES sender identity is
  verified, and a rule on the default bus sends every event the functions publish (source
  ``billing``) to the queue ``local-billing-events``, read by :meth:`LocalStack.published_events`.
* While the stack runs, the process environment points the AWS SDK at those endpoints
  (``AWS_ENDPOINT_URL_DYNAMODB`` / ``_SQS`` / ``_EVENTS`` / ``_SESV2`` / ``_SES`` /
  ``_SCHEDULER``) with dummy credentials and ``us-east-1``; :meth:`stop` restores it.
* Triggers are simulated from the template: :meth:`put_event` (EventBridgeRule patterns),
  :meth:`fire_schedule` (ScheduleV2), :meth:`drain_queues` (SQS event source mappings) and
  :meth:`api_request` / :meth:`serve_api` (HttpApi routes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3

from localsam.api import ApiResponse, HttpApi, make_server
from localsam.dynamodb_local import DynamoDBLocal, free_port
from localsam.patterns import matches
from localsam.runtime import ACCOUNT, REGION, InvocationError, Resolver, Runtime
from localsam.template import create_table, load_template

PUBLISHED_QUEUE = "local-billing-events"
PUBLISHED_RULE = "local-billing-events"
PUBLISHED_SOURCE = "billing"


def _threaded_moto_server() -> Any:
    """moto's ThreadedMotoServer. Its app imports flask_cors (moto[server]) only to add CORS headers,
    which local SDK calls never need; when flask-cors is absent a no-op stand-in is used."""
    import importlib.util
    import sys
    import types
    import warnings

    # sys.modules first: the stand-in from an earlier start has no __spec__ for find_spec to read
    if "flask_cors" not in sys.modules and importlib.util.find_spec("flask_cors") is None:
        stub = types.ModuleType("flask_cors")
        stub.CORS = lambda *args, **kwargs: None  # type: ignore[attr-defined]
        sys.modules["flask_cors"] = stub
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from moto.server import ThreadedMotoServer
    return ThreadedMotoServer


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


@dataclass
class DrainReport:
    invocations: int = 0
    succeeded: list[str] = field(default_factory=list)  # message ids
    failed: list[str] = field(default_factory=list)  # message ids, each time one failed
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class LocalStack:
    """The template's functions and their AWS neighbours, locally. Use as a context manager."""

    _running = 0  # stacks started in this process and not stopped
    _lock = threading.Lock()

    def __init__(
        self,
        dynamodb_endpoint: str | None = None,
        table_name: str | None = None,
        template: dict[str, Any] | None = None,
        parameters: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template or load_template()
        self.dynamodb_endpoint = dynamodb_endpoint
        self.table_name = table_name or f"billing-local-{uuid.uuid4().hex[:8]}"
        self.parameters = dict(parameters or {})
        self.extra_env = dict(env or {})
        self.moto_url = ""
        self.queue_urls: dict[str, str] = {}  # queue logical id (or local name) -> URL
        self.queue_arns: dict[str, str] = {}
        self.runtime: Runtime | None = None
        self.api: HttpApi | None = None
        self._ddb: DynamoDBLocal | None = None
        self._moto: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._published: list[dict[str, Any]] = []
        self._servers: list[Any] = []
        self._counted = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        ThreadedMotoServer = _threaded_moto_server()

        if self.dynamodb_endpoint is None:
            self._ddb = DynamoDBLocal().start()
            self.dynamodb_endpoint = self._ddb.endpoint_url
        port = free_port()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._moto.start()
        self.moto_url = f"http://127.0.0.1:{port}"
        # moto's backends are global to the process: a stack started after another one in the same
        # process (the next test module) must not see its queues' messages, so they start empty
        with LocalStack._lock:
            if LocalStack._running == 0:
                urllib.request.urlopen(
                    urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST"), timeout=30
                ).close()
            LocalStack._running += 1
            self._counted = True
        self._set_env(
            {
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint,
                "AWS_ENDPOINT_URL_SQS": self.moto_url,
                "AWS_ENDPOINT_URL_EVENTS": self.moto_url,
                "AWS_ENDPOINT_URL_EVENTBRIDGE": self.moto_url,
                "AWS_ENDPOINT_URL_SESV2": self.moto_url,
                "AWS_ENDPOINT_URL_SES": self.moto_url,
                "AWS_ENDPOINT_URL_SCHEDULER": self.moto_url,
                "POWERTOOLS_TRACE_DISABLED": os.environ.get("POWERTOOLS_TRACE_DISABLED", "true"),
            }
        )
        for unset in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            if unset in os.environ:
                self._saved_env.setdefault(unset, os.environ[unset])
                del os.environ[unset]

        dynamodb = boto3.client("dynamodb", endpoint_url=self.dynamodb_endpoint)
        if self.table_name not in dynamodb.list_tables().get("TableNames", []):
            create_table(dynamodb, self.table_name, self.template)
        self._create_queues()
        self._verify_sender()
        self._record_published_events()

        resources = self.template.get("Resources") or {}
        refs: dict[str, str] = {}
        attrs: dict[tuple[str, str], str] = {}
        for logical_id, resource in resources.items():
            kind = resource.get("Type")
            if kind == "AWS::DynamoDB::Table":
                refs[logical_id] = self.table_name
                attrs[(logical_id, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.table_name}"
            elif kind == "AWS::SQS::Queue":
                refs[logical_id] = self.queue_urls[logical_id]
                attrs[(logical_id, "Arn")] = self.queue_arns[logical_id]
                attrs[(logical_id, "QueueName")] = logical_id
                attrs[(logical_id, "QueueUrl")] = self.queue_urls[logical_id]
        resolver = Resolver(self.template, self.parameters, refs, attrs)
        self.resolver = resolver
        self.runtime = Runtime(self.template, resolver, env_overrides=self.extra_env)
        self.api = HttpApi(self.template, self.invoke, resolver)

    def stop(self) -> None:
        if self._counted:
            with LocalStack._lock:
                LocalStack._running -= 1
            self._counted = False
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._ddb is not None:
            self._ddb.stop()
            self._ddb = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _set_env(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    # ------------------------------------------------------------------ AWS stand-ins
    def client(self, service: str) -> Any:
        """A boto3 client of the local stand-in for ``service`` (dynamodb, sqs, events, sesv2...)."""
        url = self.dynamodb_endpoint if service == "dynamodb" else self.moto_url
        return boto3.client(service, endpoint_url=url, region_name=REGION)  # type: ignore[call-overload]

    def _create_queues(self) -> None:
        sqs = self.client("sqs")
        queues = {k: v for k, v in (self.template.get("Resources") or {}).items() if v.get("Type") == "AWS::SQS::Queue"}

        def arn_target(props: Mapping[str, Any]) -> str | None:
            target = (props.get("RedrivePolicy") or {}).get("deadLetterTargetArn")
            if isinstance(target, dict) and "Fn::GetAtt" in target:
                att = target["Fn::GetAtt"]
                return str(att[0] if isinstance(att, list) else str(att).split(".")[0])
            return None

        pending = dict(queues)
        while pending:  # dead-letter queues first
            progressed = False
            for logical_id, resource in list(pending.items()):
                props = dict(resource.get("Properties") or {})
                dlq = arn_target(props)
                if dlq and dlq not in self.queue_arns:
                    continue
                attributes: dict[str, str] = {}
                for name in (
                    "VisibilityTimeout",
                    "MessageRetentionPeriod",
                    "DelaySeconds",
                    "MaximumMessageSize",
                ):
                    if name in props:
                        attributes[name] = str(props[name])
                if dlq:
                    attributes["RedrivePolicy"] = json.dumps(
                        {
                            "deadLetterTargetArn": self.queue_arns[dlq],
                            "maxReceiveCount": int(props["RedrivePolicy"].get("maxReceiveCount", 1)),
                        }
                    )
                self._create_queue(sqs, logical_id, attributes)
                del pending[logical_id]
                progressed = True
            if not progressed:
                raise ValueError(f"queues with unresolvable dead-letter targets: {sorted(pending)}")

    def _create_queue(self, sqs: Any, name: str, attributes: dict[str, str] | None = None) -> str:
        url = sqs.create_queue(QueueName=name, Attributes=attributes or {})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.queue_urls[name] = url
        self.queue_arns[name] = arn
        return str(url)

    def _verify_sender(self) -> None:
        resolver = Resolver(self.template, self.parameters)
        sesv2 = self.client("sesv2")
        for resource in (self.template.get("Resources") or {}).values():
            if resource.get("Type") == "AWS::SES::EmailIdentity":
                identity = str(resolver.resolve((resource.get("Properties") or {}).get("EmailIdentity")))
                sesv2.create_email_identity(EmailIdentity=identity)
                self.client("ses").verify_email_identity(EmailAddress=identity)

    def _record_published_events(self) -> None:
        events = self.client("events")
        url = self._create_queue(self.client("sqs"), PUBLISHED_QUEUE)
        events.put_rule(
            Name=PUBLISHED_RULE,
            EventBusName="default",
            EventPattern=json.dumps({"source": [PUBLISHED_SOURCE]}),
            State="ENABLED",
        )
        events.put_targets(
            Rule=PUBLISHED_RULE,
            EventBusName="default",
            Targets=[{"Id": "local-recorder", "Arn": self.queue_arns[PUBLISHED_QUEUE]}],
        )
        self._published_url = url

    def _receive_all(self, url: str, delete: bool) -> list[dict[str, Any]]:
        sqs = self.client("sqs")
        messages: list[dict[str, Any]] = []
        while True:  # hidden while being read, so every receive returns new ones
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=60,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                break
            messages.extend(got)
        for m in messages:
            if delete:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            else:  # left in place: visible again at once
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
        return messages

    def published_events(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        """Every event the functions have put on the default bus with source ``billing``, oldest
        first, as EventBridge envelopes (``detail-type``, ``detail``...)."""
        for message in self._receive_all(self._published_url, delete=True):
            self._published.append(json.loads(message["Body"]))
        self._published.sort(key=lambda e: e.get("time", ""))
        return [e for e in self._published if detail_type is None or e.get("detail-type") == detail_type]

    def queue_messages(self, queue: str) -> list[dict[str, Any]]:
        """The messages waiting in a queue (a logical id of the template, or a local name), left in
        place; bodies that are JSON are parsed. For reading dead-letter queues."""
        out = []
        for message in self._receive_all(self.queue_urls[queue], delete=False):
            body: Any = message["Body"]
            with contextlib.suppress(ValueError):
                body = json.loads(body)
            out.append(
                {
                    "message_id": message["MessageId"],
                    "body": body,
                    "attributes": message.get("MessageAttributes", {}),
                }
            )
        return out

    def sent_emails(self) -> list[dict[str, Any]]:
        """The mails sent through the SES stand-in (moto's in-process backend)."""
        from moto.ses.models import ses_backends

        backend = ses_backends[ACCOUNT][REGION]
        mails = []
        for m in backend.sent_messages:
            mails.append(
                {
                    "source": getattr(m, "source", None),
                    "destinations": getattr(m, "destinations", None),
                    "subject": getattr(m, "subject", None),
                    "body": getattr(m, "body", None) or getattr(m, "raw_data", None),
                }
            )
        return mails

    # ------------------------------------------------------------------ invocations
    def _runtime(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the LocalStack is not started")
        return self.runtime

    def invoke(self, logical_id: str, event: Any, env: Mapping[str, str] | None = None) -> Any:
        """Invoke a function with an event; raises :class:`InvocationError` when the handler raises."""
        return self._runtime().invoke(logical_id, event, env)

    def _queue_of_arn(self, arn: Any) -> str | None:
        resolved = self.resolver.resolve(arn) if arn is not None else None
        for name, queue_arn in self.queue_arns.items():
            if queue_arn == resolved:
                return name
        return None

    def eventbridge_rules(self) -> list[tuple[str, str, dict[str, Any], str | None]]:
        """(function, event name, pattern, dead-letter queue) of every EventBridgeRule."""
        rules = []
        for spec in self._runtime().functions.values():
            for kind in ("EventBridgeRule", "CloudWatchEvent"):
                for name, props in spec.events_of_type(kind).items():
                    bus = self.resolver.resolve(props.get("EventBusName", "default"))
                    if bus not in ("default", None):
                        continue
                    # a handler error ends in the function's DLQ (Lambda's async retries are spent);
                    # the rule's DLQ takes what EventBridge could not deliver at all
                    dlq = self._queue_of_arn(spec.dead_letter_arn) or self._queue_of_arn(
                        (props.get("DeadLetterConfig") or {}).get("Arn")
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
        for function, rule, pattern, dlq in self.eventbridge_rules():
            if not matches(pattern, event):
                continue
            try:
                value = self.invoke(function, event)
                result.deliveries.append(Delivery(function, rule, True, value))
            except InvocationError as exc:
                error = f"{type(exc.error).__name__}: {exc.error}"
                if dlq:
                    self.client("sqs").send_message(
                        QueueUrl=self.queue_urls[dlq],
                        MessageBody=json.dumps(event),
                        MessageAttributes={
                            "RequestID": {"DataType": "String", "StringValue": str(uuid.uuid4())},
                            "ErrorCode": {"DataType": "String", "StringValue": "200"},
                            "ErrorMessage": {"DataType": "String", "StringValue": error[:1000]},
                            "RULE_NAME": {"DataType": "String", "StringValue": rule},
                        },
                    )
                result.deliveries.append(Delivery(function, rule, False, None, error, dlq))
        return result

    def fire_schedule(self, logical_id: str, event_name: str | None = None, at: datetime | None = None) -> Any:
        """Invoke a function as its ScheduleV2 (or Schedule) event ``event_name`` would at ``at``.

        The schedule's ``Input`` (context placeholders filled in) is the event; without one the
        event is a scheduled-event envelope with ``time``. Raises InvocationError on failure."""
        spec = self._runtime().spec(logical_id)
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
            text = str(self.resolver.resolve(raw_input))
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
        return self.invoke(logical_id, event)

    def sqs_mappings(self) -> list[tuple[str, str, int, bool]]:
        """(function, queue name, batch size, reports item failures) of every SQS event."""
        mappings = []
        for spec in self._runtime().functions.values():
            for props in spec.events_of_type("SQS").values():
                queue = self._queue_of_arn(props.get("Queue"))
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

    def drain_queues(self, max_rounds: int = 100) -> DrainReport:
        """Deliver the waiting messages of every queue with an SQS event source until all are empty.

        A failed message (the whole batch when the handler raises, or the ids it reports with
        ReportBatchItemFailures) becomes visible again at once and is retried; the queue's
        RedrivePolicy moves it to the dead-letter queue after maxReceiveCount receives. A queue
        without a RedrivePolicy keeps its failing messages (the drain stops after max_rounds)."""
        report = DrainReport()
        sqs = self.client("sqs")
        for _ in range(max_rounds):
            busy = False
            for function, queue, batch_size, partial in self.sqs_mappings():
                url = self.queue_urls[queue]
                messages = sqs.receive_message(
                    QueueUrl=url,
                    MaxNumberOfMessages=max(1, min(batch_size, 10)),
                    VisibilityTimeout=0,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
                if not messages:
                    continue
                busy = True
                event = {"Records": [self._sqs_record(m, queue) for m in messages]}
                report.invocations += 1
                failed: set[str]
                try:
                    result = self.invoke(function, event)
                    failed = set()
                    if partial and isinstance(result, dict):
                        failed = {str(f.get("itemIdentifier")) for f in result.get("batchItemFailures") or []}
                except InvocationError as exc:
                    report.errors.append(f"{function}: {type(exc.error).__name__}: {exc.error}")
                    failed = {m["MessageId"] for m in messages}
                for m in messages:
                    if m["MessageId"] in failed:
                        report.failed.append(m["MessageId"])
                    else:
                        report.succeeded.append(m["MessageId"])
                        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            if not busy:
                break
        return report

    def _sqs_record(self, message: Mapping[str, Any], queue: str) -> dict[str, Any]:
        attributes = message.get("Attributes", {})
        message_attributes = {}
        for name, value in (message.get("MessageAttributes") or {}).items():
            message_attributes[name] = {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
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
            },
            "messageAttributes": message_attributes,
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arns[queue],
            "awsRegion": REGION,
        }

    # ------------------------------------------------------------------ HTTP API
    def _api(self) -> HttpApi:
        if self.api is None:
            raise RuntimeError("the LocalStack is not started")
        return self.api

    def api_request(
        self,
        method: str,
        path: str,
        sub: str | None = None,
        iam: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> ApiResponse:
        """Call a route in-process as API Gateway would; ``sub`` is the JWT caller's account,
        ``iam`` an IAM principal ARN for operator routes."""
        import urllib.parse

        all_headers = {k.lower(): v for k, v in (headers or {}).items()}
        all_headers.setdefault("host", "localhost")
        if sub is not None:
            all_headers["x-local-sub"] = sub
        if iam is not None:
            all_headers["x-local-iam"] = iam
        raw: bytes | None
        if body is None:
            raw = None
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
            all_headers.setdefault("content-type", "application/json")
        target = path
        if query:
            target += ("&" if "?" in path else "?") + urllib.parse.urlencode(
                {k: v for k, v in query.items() if v is not None}, doseq=True
            )
        return self._api().handle(method, target, all_headers, raw)

    def serve_api(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Serve the HttpApi routes over HTTP in a background thread; returns the base URL."""
        server = make_server(self._api(), port or free_port(), host)
        threading.Thread(target=server.serve_forever, name="localsam-api", daemon=True).start()
        self._servers.append(server)
        actual_port = server.server_address[1]
        return f"http://{host}:{actual_port}"


__all__ = ["Delivery", "DrainReport", "LocalStack", "PutEventResult"]
