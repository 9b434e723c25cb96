"""``AwsStandIns``: the AWS services the template's functions talk to, running locally.

* DynamoDB: DynamoDB Local (started here, or an endpoint you pass), with the table created from
  ``template.yaml``.
  Its stream (when the template gives it one) is read by :mod:`localsam.streams`.
* SQS, EventBridge, SES v2, Secrets Manager (and Scheduler): an in-process moto server on a free
  localhost port. The template's queues are created there (RedrivePolicy included), its secrets
  (``SecretString`` resolved, ``GenerateSecretString`` generated), the SES sender identity is
  verified, and a rule on the default bus sends every event the functions publish (source
  ``billing``) to the queue ``local-billing-events``, read by :meth:`AwsStandIns.published_events`.
* Template parameters without a default (the payment provider's secret) take the local values of
  :data:`LOCAL_PARAMETERS` unless given.
* While they run, the process environment points the AWS SDK at those endpoints
  (``AWS_ENDPOINT_URL_DYNAMODB`` / ``_DYNAMODB_STREAMS`` / ``_SQS`` / ``_EVENTS`` / ``_SESV2`` /
  ``_SES`` / ``_SECRETS_MANAGER`` / ``_SCHEDULER``) with dummy credentials and ``us-east-1``;
  :meth:`stop` restores it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any

import boto3

from localsam.dynamodb_local import DynamoDBLocal, free_port
from localsam.runtime import ACCOUNT, REGION, Resolver
from localsam.template import create_table

PUBLISHED_QUEUE = "local-billing-events"
PUBLISHED_RULE = "local-billing-events"
PUBLISHED_SOURCE = "billing"
# Local values of the template's parameters that have no default (a deployment must give them).
LOCAL_PARAMETERS = {"PaymentWebhookSecret": "local-webhook-secret-0123456789"}


def _threaded_moto_server() -> Any:
    """moto's ThreadedMotoServer (moto[server]: flask and flask-cors come with it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from moto.server import ThreadedMotoServer
    return ThreadedMotoServer


class AwsStandIns:
    """DynamoDB Local and moto with the template's table, queues and sender identity."""

    _running = 0  # stand-ins started in this process and not stopped
    _lock = threading.Lock()

    def __init__(
        self,
        template: dict[str, Any],
        table_name: str,
        dynamodb_endpoint: str | None = None,
        parameters: Mapping[str, str] | None = None,
    ) -> None:
        self.template = template
        self.table_name = table_name
        self.dynamodb_endpoint = dynamodb_endpoint
        self.parameters = {**LOCAL_PARAMETERS, **(parameters or {})}
        self.moto_url = ""
        self.stream_arn: str | None = None
        self.table_existed = False
        self.secret_arns: dict[str, str] = {}  # secret logical id -> ARN
        self.queue_urls: dict[str, str] = {}  # queue logical id (or local name) -> URL
        self.queue_arns: dict[str, str] = {}
        self._ddb: DynamoDBLocal | None = None
        self._moto: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._published: list[dict[str, Any]] = []
        self._counted = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the services and create the template's resources; on failure call :meth:`stop`."""
        ThreadedMotoServer = _threaded_moto_server()

        if self.dynamodb_endpoint is None:
            self._ddb = DynamoDBLocal().start()
            self.dynamodb_endpoint = self._ddb.endpoint_url
        port = free_port()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request log lines
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._moto.start()
        self.moto_url = f"http://127.0.0.1:{port}"
        # moto's backends are global to the process: stand-ins started after others in the same
        # process (the next test module) must not see their queues' messages, so they start empty
        with AwsStandIns._lock:
            if AwsStandIns._running == 0:
                urllib.request.urlopen(
                    urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST"), timeout=30
                ).close()
            AwsStandIns._running += 1
            self._counted = True
        self._set_env(
            {
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb_endpoint,
                "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": self.dynamodb_endpoint,
                "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.moto_url,
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
        self.table_existed = self.table_name in dynamodb.list_tables().get("TableNames", [])
        if not self.table_existed:
            create_table(dynamodb, self.table_name, self.template)
        self.stream_arn = dynamodb.describe_table(TableName=self.table_name)["Table"].get("LatestStreamArn")
        _forget_cached_secrets()
        self._create_secrets()
        self._create_queues()
        self._verify_sender()
        self._record_published_events()

    def stop(self) -> None:
        if self._counted:
            with AwsStandIns._lock:
                AwsStandIns._running -= 1
            self._counted = False
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._ddb is not None:
            self._ddb.stop()
            self._ddb = None
        _forget_cached_secrets()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _set_env(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def local_names(self) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
        """What ``!Ref`` and ``!GetAtt`` of the table and the queues resolve to here, as
        (refs, attrs) for :class:`~localsam.runtime.Resolver`."""
        refs: dict[str, str] = {}
        attrs: dict[tuple[str, str], str] = {}
        for logical_id, resource in (self.template.get("Resources") or {}).items():
            kind = resource.get("Type")
            if kind == "AWS::DynamoDB::Table":
                refs[logical_id] = self.table_name
                attrs[(logical_id, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.table_name}"
                attrs[(logical_id, "StreamArn")] = self.local_stream_arn_ref
            elif kind == "AWS::SecretsManager::Secret" and logical_id in self.secret_arns:
                refs[logical_id] = self.secret_arns[logical_id]
            elif kind == "AWS::SQS::Queue":
                refs[logical_id] = self.queue_urls[logical_id]
                attrs[(logical_id, "Arn")] = self.queue_arns[logical_id]
                attrs[(logical_id, "QueueName")] = logical_id
                attrs[(logical_id, "QueueUrl")] = self.queue_urls[logical_id]
        return refs, attrs

    # ------------------------------------------------------------------ clients and resources
    def client(self, service: str) -> Any:
        """A boto3 client of the local stand-in for ``service`` (dynamodb, sqs, events, sesv2...), made
        once per service (the drains ask for one many times a second; clients are thread-safe)."""
        url = self.dynamodb_endpoint if service in ("dynamodb", "dynamodbstreams") else self.moto_url
        key = (service, url)
        if key not in self._clients:
            self._clients[key] = boto3.client(service, endpoint_url=url, region_name=REGION)  # type: ignore[call-overload]
        return self._clients[key]

    def queue_may_have_messages(self, name: str) -> bool:
        """Whether the queue may hold a message to receive now, from moto's in-process backend: the
        drains skip the ReceiveMessage of an empty queue (most of their polls). True when unsure."""
        from moto.sqs.models import sqs_backends

        queue_name = str(self.queue_urls.get(name, "")).rsplit("/", 1)[-1]
        queue = sqs_backends[ACCOUNT][REGION].queues.get(queue_name)
        return queue is None or bool(queue.messages)

    def queue_of_arn(self, arn: Any, resolver: Resolver) -> str | None:
        """The queue (logical id or local name) whose ARN the template value ``arn`` resolves to."""
        resolved = resolver.resolve(arn) if arn is not None else None
        for name, queue_arn in self.queue_arns.items():
            if queue_arn == resolved:
                return name
        return None

    @property
    def local_stream_arn_ref(self) -> str:
        """What ``!GetAtt <table>.StreamArn`` resolves to for the functions here."""
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.table_name}/stream/local"

    def _create_secrets(self) -> None:
        resolver = Resolver(self.template, self.parameters)
        client = self.client("secretsmanager")
        for logical_id, resource in (self.template.get("Resources") or {}).items():
            if resource.get("Type") != "AWS::SecretsManager::Secret" or not resolver.exists(resource):
                continue
            props = resource.get("Properties") or {}
            if "SecretString" in props:
                value = str(resolver.resolve(props["SecretString"]))
            else:
                length = int((props.get("GenerateSecretString") or {}).get("PasswordLength", 32))
                value = secrets.token_urlsafe(length)[:length]
            name = f"{self.table_name}-{logical_id}"
            try:
                arn = client.create_secret(Name=name, SecretString=value)["ARN"]
            except client.exceptions.ResourceExistsException:
                arn = client.describe_secret(SecretId=name)["ARN"]
            self.secret_arns[logical_id] = arn

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
        while pending:  # a RedrivePolicy needs its dead-letter queue's ARN, so those come first
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
                    "FifoQueue",
                    "ContentBasedDeduplication",
                    "DeduplicationScope",
                    "FifoThroughputLimit",
                ):
                    if name in props:
                        value = props[name]
                        attributes[name] = str(value).lower() if isinstance(value, bool) else str(value)
                if dlq:
                    attributes["RedrivePolicy"] = json.dumps(
                        {
                            "deadLetterTargetArn": self.queue_arns[dlq],
                            "maxReceiveCount": int(props["RedrivePolicy"].get("maxReceiveCount", 1)),
                        }
                    )
                self._create_queue(sqs, logical_id, attributes, fifo=bool(props.get("FifoQueue")))
                del pending[logical_id]
                progressed = True
            if not progressed:
                raise ValueError(f"queues with unresolvable dead-letter targets: {sorted(pending)}")

    def _create_queue(self, sqs: Any, name: str, attributes: dict[str, str] | None = None, fifo: bool = False) -> str:
        # a FIFO queue's name ends in .fifo; it is still known here by its logical id
        url = sqs.create_queue(QueueName=name + (".fifo" if fifo else ""), Attributes=attributes or {})["QueueUrl"]
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

    # ------------------------------------------------------------------ reading what the functions did
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


def _forget_cached_secrets() -> None:
    """Powertools Parameters keeps values and clients per process: a new stand-in must not see
    another's (the next test module's moto has another port and other secrets)."""
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()


__all__ = ["LOCAL_PARAMETERS", "PUBLISHED_QUEUE", "PUBLISHED_RULE", "PUBLISHED_SOURCE", "AwsStandIns"]
