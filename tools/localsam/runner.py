"""``StackRunner``: the whole template running in this process, for tests, the demo and the CLI.

It composes these pieces, keeping the methods callers use in one place:

* :mod:`localsam.aws`: DynamoDB Local and an in-process moto (SQS, EventBridge, SES), the
  template's table and queues, and the process environment pointing the AWS SDK at them;
  :meth:`StackRunner.stop` restores it.
* :mod:`localsam.runtime`: the functions, each with its environment from the template.
* :mod:`localsam.eventbridge` (:meth:`put_event`), :mod:`localsam.schedules`
  (:meth:`fire_schedule`), :mod:`localsam.sqs` and :mod:`localsam.streams` (:meth:`drain`: queue
  messages and the table's stream records) and :mod:`localsam.http_api` (:meth:`api_request`,
  :meth:`serve_api`) simulate the triggers.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from localsam import schedules
from localsam.analytics import AnalyticsExport
from localsam.aws import AwsStandIns
from localsam.dynamodb_local import free_port
from localsam.eventbridge import Delivery, EventBridgeRules, PutEventResult
from localsam.http_api import ApiResponse, HttpApi, make_server
from localsam.runtime import Resolver, Runtime
from localsam.sqs import DrainReport, SqsMappings
from localsam.streams import StreamMappings, StreamReport
from localsam.stripe_local import SECRET_KEY, WEBHOOK_SECRET, LocalStripe
from localsam.template import load_template

NOT_STARTED = "the StackRunner is not started"


class StackRunner:
    """The template's functions and their AWS neighbours, locally. Use as a context manager."""

    def __init__(
        self,
        dynamodb_endpoint: str | None = None,
        table_name: str | None = None,
        template: dict[str, Any] | None = None,
        parameters: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
        analytics_dir: Path | None = None,
        stripe: bool = False,
    ) -> None:
        self.template = template or load_template()
        # AnalyticsExport=true: the pipe and Firehose write their Parquet files here (localsam.analytics)
        self.analytics_dir = analytics_dir or Path.cwd() / "out" / "analytics"
        self.analytics: AnalyticsExport | None = None
        self.clock = clock  # the functions' clock, when not the real one (see Runtime)
        self.parameters = dict(parameters or {})
        # stripe=True: payments through Stripe, answered by the local stand-in (never the real Stripe)
        self.stripe: LocalStripe | None = LocalStripe() if stripe else None
        if self.stripe is not None:
            self.parameters = {"StripeSecretKey": SECRET_KEY, "StripeWebhookSecret": WEBHOOK_SECRET,
                               "StripeApiBase": self.stripe.url, **self.parameters}
        self.extra_env = dict(env or {})
        self.aws = AwsStandIns(
            self.template,
            table_name or f"billing-local-{uuid.uuid4().hex[:8]}",
            dynamodb_endpoint,
            self.parameters,
        )
        self.resolver: Resolver | None = None
        self.runtime: Runtime | None = None
        self.api: HttpApi | None = None
        self._events: EventBridgeRules | None = None
        self._sqs: SqsMappings | None = None
        self._streams: StreamMappings | None = None
        self._servers: list[Any] = []

    # the stand-ins' names, read as attributes by tests and the CLI; aws owns them
    @property
    def dynamodb_endpoint(self) -> str | None:
        return self.aws.dynamodb_endpoint

    @property
    def table_name(self) -> str:
        return self.aws.table_name

    @property
    def moto_url(self) -> str:
        return self.aws.moto_url

    @property
    def queue_urls(self) -> dict[str, str]:
        """Queue logical id (or local name) -> URL."""
        return self.aws.queue_urls

    @property
    def queue_arns(self) -> dict[str, str]:
        return self.aws.queue_arns

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> StackRunner:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        if self.stripe is not None:
            self.stripe.start()
        self.aws.start()
        # the functions see the local table and queues where the template names them
        refs, attrs = self.aws.local_names()
        resolver = Resolver(self.template, self.parameters, refs, attrs)
        self.resolver = resolver
        self.runtime = Runtime(self.template, resolver, env_overrides=self.extra_env, clock=self.clock)
        self.api = HttpApi(self.template, self.invoke, resolver)
        self._events = EventBridgeRules(self.runtime, resolver, self.aws)
        self._sqs = SqsMappings(self.runtime, resolver, self.aws)
        self._streams = StreamMappings(self.runtime, resolver, self.aws)
        if AnalyticsExport.enabled(resolver.parameters):
            self.analytics = AnalyticsExport(self.template, self.analytics_dir)
            self._streams.readers.append(self.analytics.export)

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
        self.aws.stop()
        if self.stripe is not None:
            self.stripe.stop()

    def __enter__(self) -> StackRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _started(self) -> tuple[Runtime, Resolver]:
        if self.runtime is None or self.resolver is None:
            raise RuntimeError(NOT_STARTED)
        return self.runtime, self.resolver

    # ------------------------------------------------------------------ AWS stand-ins
    def client(self, service: str) -> Any:
        """A boto3 client of the local stand-in for ``service`` (dynamodb, sqs, events, sesv2...)."""
        return self.aws.client(service)

    def published_events(self, detail_type: str | None = None) -> list[dict[str, Any]]:
        """Every event the functions have put on the default bus with source ``billing``, oldest
        first, as EventBridge envelopes (``detail-type``, ``detail``...)."""
        return self.aws.published_events(detail_type)

    def queue_messages(self, queue: str) -> list[dict[str, Any]]:
        """The messages waiting in a queue (a logical id of the template, or a local name), left in
        place; bodies that are JSON are parsed. For reading dead-letter queues."""
        return self.aws.queue_messages(queue)

    def sent_emails(self) -> list[dict[str, Any]]:
        """The mails sent through the SES stand-in (moto's in-process backend)."""
        return self.aws.sent_emails()

    # ------------------------------------------------------------------ invocations and triggers
    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment a function runs with here (the template's variables, resolved)."""
        runtime, _ = self._started()
        return runtime.environment(logical_id)

    def invoke(self, logical_id: str, event: Any, env: Mapping[str, str] | None = None) -> Any:
        """Invoke a function with an event; raises :class:`InvocationError` when the handler raises."""
        runtime, _ = self._started()
        return runtime.invoke(logical_id, event, env)

    def _eventbridge(self) -> EventBridgeRules:
        if self._events is None:
            raise RuntimeError(NOT_STARTED)
        return self._events

    def _sqs_mappings(self) -> SqsMappings:
        if self._sqs is None:
            raise RuntimeError(NOT_STARTED)
        return self._sqs

    def eventbridge_rules(self) -> list[tuple[str, str, dict[str, Any], str | None]]:
        """(function, event name, pattern, dead-letter queue) of every EventBridgeRule."""
        return self._eventbridge().rules()

    def put_event(
        self,
        source: str,
        detail_type: str,
        detail: Mapping[str, Any],
        time: datetime | str | None = None,
    ) -> PutEventResult:
        """Put an event on the default bus: every function whose rule matches gets it."""
        return self._eventbridge().put_event(source, detail_type, detail, time)

    def deliver_event(self, event: dict[str, Any]) -> PutEventResult:
        """Deliver a complete EventBridge envelope to the matching rules' functions."""
        return self._eventbridge().deliver_event(event)

    def fire_schedule(self, logical_id: str, event_name: str | None = None, at: datetime | None = None) -> Any:
        """Invoke a function as its ScheduleV2 (or Schedule) event ``event_name`` would at ``at``
        (see :func:`localsam.schedules.fire_schedule`). Raises InvocationError on failure."""
        runtime, resolver = self._started()
        return schedules.fire_schedule(runtime, resolver, logical_id, event_name, at)

    def sqs_mappings(self) -> list[tuple[str, str, int, bool]]:
        """(function, queue name, batch size, reports item failures) of every SQS event."""
        return self._sqs_mappings().mappings()

    def drain_queues(self, max_rounds: int = 100) -> DrainReport:
        """Deliver the waiting messages of every queue with an SQS event source until all are empty,
        retrying failures and dead-lettering them by the queues' RedrivePolicy
        (see :meth:`localsam.sqs.SqsMappings.drain`)."""
        return self._sqs_mappings().drain(max_rounds)

    def drain_streams(self) -> StreamReport:
        """Deliver the table's new stream records to the functions with DynamoDB stream events
        (see :meth:`localsam.streams.StreamMappings.drain`)."""
        if self._streams is None:
            raise RuntimeError(NOT_STARTED)
        return self._streams.drain()

    def drain(self, max_rounds: int = 100) -> tuple[DrainReport, StreamReport]:
        """Run every asynchronous trigger until nothing is left: the table's stream (the outbox) and
        the queues, in turn, since each may feed the other. Returns what was delivered."""
        queues, streams = DrainReport(), StreamReport()
        for _ in range(max_rounds):
            s, q = self.drain_streams(), self.drain_queues()
            streams.add(s)
            queues.add(q)
            if not s.invocations and not q.invocations:
                break
        return queues, streams

    # ------------------------------------------------------------------ HTTP API
    def _api(self) -> HttpApi:
        if self.api is None:
            raise RuntimeError(NOT_STARTED)
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
        url = f"http://{host}:{actual_port}"
        if self.stripe is not None:  # the stand-in sends its events to the Stripe route, as Stripe would
            self.stripe.register_webhook("billing", f"{url}/v1/webhooks/stripe")
        return url


__all__ = ["Delivery", "DrainReport", "PutEventResult", "StackRunner"]
