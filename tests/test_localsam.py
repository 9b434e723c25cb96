"""The local runner (tools/localsam): every sample in events/ through the template's functions, the
HTTP API over a real socket, the triggers of StackRunner, and the ``python -m localsam`` CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from localsam import samples
from localsam.aws import LOCAL_PARAMETERS
from localsam.http_api import LOCAL_STATIC, HttpApi, make_jwt, to_response
from localsam.runner import StackRunner
from localsam.runtime import InvocationError

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
SAMPLE_ACCOUNT = "acct-sample"
SAMPLE_ACCOUNT_CREATED = "2026-11-01T00:00:00Z"


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def has_function(directory: str) -> bool:
    return (ROOT / "functions" / directory / "app.py").is_file()


def needs_function(directory: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not has_function(directory), reason=f"functions/{directory}/app.py not written yet")


def create_account(stack: StackRunner, account_id: str, at: str | None = None, plan: str = "free") -> None:
    result = stack.put_event(
        "platform.accounts",
        "Account Created",
        {
            "event_id": f"created-{account_id}",
            "account_id": account_id,
            "occurred_at": at or now_iso(),
            "email": f"{account_id}@example.com",
            "plan": plan,
        },
    )
    assert result.ok and result.matched == ["PlatformEventsFunction"], result
    _, streams = stack.drain()  # the settlement queue, the outbox
    assert streams.ok


# ---------------------------------------------------------------------------------------- samples
def story_time(path: Path) -> str:
    """When a sample happens in the samples' story (events/README.md); HTTP samples go last."""
    event = json.loads(path.read_text())
    if isinstance(event, dict):
        detail = event.get("detail")
        if isinstance(detail, dict) and detail.get("occurred_at"):
            return str(detail["occurred_at"])
        if event.get("version") == "2.0" and "routeKey" in event:
            return "~http"
        if event.get("time"):
            return str(event["time"])
        if event.get("scheduled_time"):
            return str(event["scheduled_time"])
        records = event.get("Records")
        if records:
            first = records[0]
            if "dynamodb" in first:  # a stream record: the time of its change
                return str(first["dynamodb"].get("ApproximateCreationDateTime", ""))
            try:
                body = json.loads(first["body"])
                return str(body.get("at") or body.get("detail", {}).get("occurred_at", ""))
            except (ValueError, KeyError, AttributeError):
                return ""
    return ""


def resign_webhook(event: Any, secret: str) -> Any:
    """A payment-webhook sample signed now (a signature older than 5 minutes is refused), as
    events/README.md describes; other events are returned unchanged."""
    headers = event.get("headers") if isinstance(event, dict) else None
    if not isinstance(headers, dict) or "billing-signature" not in headers:
        return event
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    t = str(int(time.time()))
    digest = hmac.new(secret.encode(), t.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return {**event, "headers": {**headers, "billing-signature": f"t={t},v1={digest}"}}


SAMPLES = sorted(EVENTS.glob("**/*.json"), key=lambda p: (story_time(p), str(p)))


SHIFT = samples.shift_to_now()  # the samples' times, moved so that the story ends now


class Story:
    """Runs the samples against one stack, in story order, each at most once, moved to the present."""

    def __init__(self, stack: StackRunner) -> None:
        self.stack = stack
        self.done: dict[Path, Any] = {}
        self.by_dir = {spec.code_uri.name: lid for lid, spec in stack.runtime.functions.items()}  # type: ignore[union-attr]

    def function(self, sample: Path) -> str:
        directory = sample.relative_to(EVENTS).parts[0]
        assert directory in self.by_dir, f"{sample}: no function has CodeUri functions/{directory}/"
        return self.by_dir[directory]

    def run(self, sample: Path) -> tuple[bool, Any]:
        """(succeeded, result or error) of invoking the sample, then of what it queued (a platform
        event refused by its account's settlement ends in the platform events' dead-letter queue)."""
        event = samples.redate(json.loads(sample.read_text()), SHIFT)
        function = self.function(sample)
        if "invalid-signature" not in sample.name:
            event = resign_webhook(event, LOCAL_PARAMETERS["PaymentWebhookSecret"])
        try:
            result = self.stack.invoke(function, event)
        except InvocationError as exc:
            return False, exc.error
        if isinstance(event, dict) and event.get("version") == "2.0":
            response = to_response(result)
            assert response.status < 500, f"{sample}: {response.status} {response.body}"
            return response.status < 400, response
        if isinstance(result, dict) and result.get("batchItemFailures"):
            return False, result
        before = len(self.stack.queue_messages("PlatformEventsDLQ"))
        self.stack.drain()
        refused = self.stack.queue_messages("PlatformEventsDLQ")[before:]
        if refused:
            return False, refused
        return True, result

    def replay_before(self, sample: Path) -> None:
        """Earlier valid samples first, so any one sample can also run alone (pytest -k)."""
        for earlier in SAMPLES[: SAMPLES.index(sample)]:
            if (
                earlier not in self.done
                and "invalid" not in earlier.name
                and has_function(earlier.relative_to(EVENTS).parts[0])
            ):
                self.done[earlier] = self.run(earlier)


@pytest.fixture(scope="module")
def story(local_stack: StackRunner) -> Story:
    create_account(local_stack, SAMPLE_ACCOUNT, samples.redate(SAMPLE_ACCOUNT_CREATED, SHIFT))
    return Story(local_stack)


def table_items(stack: StackRunner) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb", endpoint_url=stack.dynamodb_endpoint)
    items: list[dict[str, Any]] = []
    for page in client.get_paginator("scan").paginate(TableName=stack.table_name, ConsistentRead=True):
        items.extend(page["Items"])
    return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))


@pytest.mark.parametrize("sample", SAMPLES, ids=[str(p.relative_to(EVENTS)) for p in SAMPLES])
def test_sample_event(story: Story, sample: Path) -> None:
    directory = sample.relative_to(EVENTS).parts[0]
    if not has_function(directory):
        pytest.skip(f"functions/{directory}/app.py not written yet")
    story.replay_before(sample)
    if "invalid" in sample.name:
        before = table_items(story.stack)
        ok, outcome = story.run(sample)
        story.done[sample] = (ok, outcome)
        assert not ok, f"{sample.name} should be rejected but gave {outcome!r}"
        assert table_items(story.stack) == before, f"{sample.name} changed the table"
    else:
        ok, outcome = story.done.get(sample) or story.run(sample)
        story.done[sample] = (ok, outcome)
        assert ok, f"{sample.name} failed: {outcome!r}"


def test_there_are_samples() -> None:
    assert SAMPLES, "events/ has no samples"


# ---------------------------------------------------------------------------------------- HTTP API
@pytest.fixture(scope="module")
def api_url(local_stack: StackRunner) -> str:
    return local_stack.serve_api(0)


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    text = raw.decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def test_api_unknown_route_is_404(api_url: str) -> None:
    status, body = http("GET", f"{api_url}/v1/nothing-here", headers={"X-Local-Sub": "acct-x"})
    assert (status, body) == (404, {"message": "Not Found"})


def test_api_jwt_route_without_identity_is_401(api_url: str) -> None:
    assert http("GET", f"{api_url}/v1/balance") == (401, {"message": "Unauthorized"})
    assert http("GET", f"{api_url}/v1/balance", headers={"Authorization": "Bearer not-a-jwt"})[0] == 401


def test_api_iam_route_without_principal_is_403(api_url: str) -> None:
    status, _ = http("POST", f"{api_url}/v1/admin/grants", body={}, headers={"X-Local-Sub": "acct-x"})
    assert status == 403


@needs_function("usage_api")
def test_api_balance_of_a_new_free_account(local_stack: StackRunner, api_url: str) -> None:
    account = f"acct-api-{uuid.uuid4().hex[:8]}"
    create_account(local_stack, account)
    status, body = http(
        "GET", f"{api_url}/v1/balance", headers={"Authorization": f"Bearer {make_jwt({'sub': account})}"}
    )
    assert status == 200, body
    assert body["account_id"] == account
    assert body["available"] == "50.000000"
    status, again = http("GET", f"{api_url}/v1/balance", headers={"X-Local-Sub": account})
    assert status == 200 and again["available"] == "50.000000"


@needs_function("account_api")
def test_api_purchase_is_pending_with_its_price(local_stack: StackRunner, api_url: str) -> None:
    account = f"acct-api-{uuid.uuid4().hex[:8]}"
    create_account(local_stack, account)
    status, body = http("POST", f"{api_url}/v1/purchases", body={"credits": 100}, headers={"X-Local-Sub": account})
    assert status == 201, body
    assert body["price"] == {"currency": "USD", "amount_minor": 200, "cents": 200}
    assert body["status"] == "pending"
    assert body["purchase_id"]


def test_api_event_shape(local_stack: StackRunner) -> None:
    """The payload 2.0 event the routed function gets (captured with a stand-in invoke)."""
    assert local_stack.api is not None
    seen: list[Any] = []
    api = type(local_stack.api)(local_stack.template, lambda fn, ev: seen.append((fn, ev)) or {"ok": True})
    response = api.handle(
        "POST",
        "/v1/purchases/p-1/refund?x=1&x=2&y=",
        {"X-Local-Sub": "acct-9", "Content-Type": "application/json", "Cookie": "a=1; b=2"},
        b'{"k": 1}',
    )
    assert response.status == 200 and response.json() == {"ok": True}
    function, event = seen[0]
    assert function == "AccountApiFunction"
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v1/purchases/{purchase_id}/refund"
    assert event["rawPath"] == "/v1/purchases/p-1/refund"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["pathParameters"] == {"purchase_id": "p-1"}
    assert event["headers"]["content-type"] == "application/json"
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "acct-9"

    api.handle("POST", "/v1/admin/coupons", {"X-Local-Iam": "arn:aws:iam::123456789012:role/ops"}, b"{}")
    assert seen[1][1]["requestContext"]["authorizer"]["iam"]["userArn"] == "arn:aws:iam::123456789012:role/ops"
    api.handle("POST", "/v1/webhooks/payments", {}, b"{}")  # Authorizer: NONE
    assert seen[2][0] == "PaymentWebhookFunction" and "authorizer" not in seen[2][1]["requestContext"]


def test_docs_are_a_local_static_mount(tmp_path: Path) -> None:
    """/docs/ serves a directory (Swagger UI, web/dist/swagger) before any route: LOCAL ONLY."""
    (tmp_path / "index.html").write_text("<html>docs</html>")
    (tmp_path / "app.js").write_text("// js")
    (tmp_path.parent / "secret.txt").write_text("no")
    api = HttpApi({"Resources": {}}, lambda *_: pytest.fail("no function runs"), static={"/docs": tmp_path})
    redirect = api.handle("GET", "/docs", {}, None)
    assert (redirect.status, redirect.headers["location"]) == (301, "/docs/")
    index = api.handle("GET", "/docs/", {}, None)
    assert (index.status, index.raw()) == (200, b"<html>docs</html>")
    assert index.headers["content-type"].startswith("text/html")
    assert api.handle("GET", "/docs/app.js", {}, None).raw() == b"// js"
    assert api.handle("GET", "/docs/../secret.txt", {}, None).status == 404
    assert api.handle("GET", "/docs/%2e%2e/secret.txt", {}, None).status == 404
    assert api.handle("GET", "/docs/nope.css", {}, None).status == 404
    assert api.handle("POST", "/docs/", {}, None).status == 405
    assert api.handle("GET", "/docsx", {}, None).status == 404  # not under the mount: no route either
    assert LOCAL_STATIC["/docs"] == Path(__file__).resolve().parents[1] / "web" / "dist" / "swagger"


def test_swagger_ui_is_served_at_docs(api_url: str) -> None:
    if not (LOCAL_STATIC["/docs"] / "index.html").is_file():
        pytest.skip("web/dist/swagger is not built (make web)")
    status, page = http("GET", f"{api_url}/docs/")
    assert status == 200 and "swagger-ui-bundle.js" in page
    status, script = http("GET", f"{api_url}/docs/swagger-initializer.js")
    assert status == 200 and '"/v1/openapi.json"' in script
    assert http("GET", f"{api_url}/docs/swagger-ui-bundle.js")[0] == 200
    status, document = http("GET", f"{api_url}/v1/openapi.json")
    assert status == 200 and document["openapi"] == "3.1.0"


def test_payload_2_response_rules() -> None:
    assert to_response({"statusCode": 201, "headers": {"X-A": "1"}, "body": "{}"}).status == 201
    plain = to_response({"balance": "1.000000"})
    assert plain.status == 200 and plain.json() == {"balance": "1.000000"}
    assert plain.headers["content-type"] == "application/json"


# ---------------------------------------------------------------------------------------- triggers
def test_failed_event_goes_to_the_dead_letter_queue(local_stack: StackRunner) -> None:
    event_id = f"bad-{uuid.uuid4().hex[:8]}"
    result = local_stack.put_event(
        "platform.containers",
        "Container Created",
        {
            "event_id": event_id,
            "account_id": "acct-never-created",
            "occurred_at": now_iso(),
            "container_id": "c-1",
            "storage_gb": 10,
        },
    )
    # Well formed: the intake queues it; the account's settlement refuses it (no such account).
    assert result.ok and result.matched == ["PlatformEventsFunction"]
    local_stack.drain()
    dead = local_stack.queue_messages("PlatformEventsDLQ")
    [refused] = [m for m in dead if m["body"]["detail"]["event_id"] == event_id]
    assert refused["attributes"]["ErrorCode"]["StringValue"] == "unknown_account"
    # Dated two days ahead: the intake itself refuses it, and Lambda's dead-letter queue gets it.
    ahead = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = local_stack.put_event("platform.containers", "Container Created", {
        "event_id": event_id + "-ahead", "account_id": "acct-never-created", "occurred_at": ahead,
        "container_id": "c-1", "storage_gb": 10})
    [failure] = result.failures
    assert (failure.function, failure.dead_letter_queue) == ("PlatformEventsFunction", "PlatformEventsDLQ")
    assert "more than 5 minutes after" in str(failure.error)


def test_unmatched_event_reaches_no_function(local_stack: StackRunner) -> None:
    result = local_stack.put_event("platform.other", "Something", {"event_id": "x"})
    assert result.deliveries == []


def test_drain_retries_then_dead_letters_a_failing_message(local_stack: StackRunner) -> None:
    account = f"acct-sweep-{uuid.uuid4().hex[:8]}"
    create_account(local_stack, account)
    sqs = local_stack.client("sqs")
    queue = local_stack.queue_urls["WorkQueue"]
    good = sqs.send_message(
        QueueUrl=queue,
        MessageBody=json.dumps({"work": "account", "account_id": account, "at": now_iso(), "sweep": "periodic_check"}),
    )["MessageId"]
    bad = sqs.send_message(QueueUrl=queue, MessageBody="not json")["MessageId"]
    report = local_stack.drain_queues()
    assert good in report.succeeded
    assert report.failed.count(bad) == 5  # RedrivePolicy maxReceiveCount
    assert [m["message_id"] for m in local_stack.queue_messages("WorkDLQ")] == [bad]
    assert local_stack.drain_queues().invocations == 0


def test_schedule_enqueues_sweeps_that_drain(local_stack: StackRunner) -> None:
    account = f"acct-sched-{uuid.uuid4().hex[:8]}"
    create_account(local_stack, account)
    for detail_type, extra in (
        ("Container Created", {"storage_gb": 10}),
        ("Container Started", {"run_id": "r-1", "tier": "small", "code_supporter": False}),
    ):
        done = local_stack.put_event(
            "platform.containers",
            detail_type,
            {
                "event_id": f"{account}-{detail_type}",
                "account_id": account,
                "occurred_at": now_iso(),
                "container_id": "c-1",
                **extra,
            },
        )
        assert done.ok, done.failures
    local_stack.drain()
    result = local_stack.fire_schedule("MonthlyBillingFunction", "MonthBoundary", datetime.now(UTC))
    assert result == {"sweep": "month_boundary", "shards": 16}
    report, _ = local_stack.drain()
    assert report.ok and report.invocations >= 2  # the shard pages, then the account's sweep


def test_published_events_are_recorded(local_stack: StackRunner) -> None:
    marker = uuid.uuid4().hex
    local_stack.client("events").put_events(
        Entries=[
            {
                "Source": "billing",
                "DetailType": "Credits Exhausted",
                "EventBusName": "default",
                "Detail": json.dumps({"account_id": marker, "debt": "1.000000"}),
            }
        ]
    )
    local_stack.client("events").put_events(
        Entries=[
            {
                "Source": "elsewhere",
                "DetailType": "Credits Exhausted",
                "Detail": json.dumps({"account_id": marker}),
            }
        ]
    )
    mine = [e for e in local_stack.published_events("Credits Exhausted") if e["detail"]["account_id"] == marker]
    assert len(mine) == 1 and mine[0]["source"] == "billing"


def test_mail_goes_through_the_ses_stand_in(local_stack: StackRunner) -> None:
    subject = f"Low credits {uuid.uuid4().hex}"
    local_stack.client("sesv2").send_email(
        FromEmailAddress="billing@example.com",  # the template's SenderAddress, verified at start
        Destination={"ToAddresses": ["user@example.com"]},
        Content={"Simple": {"Subject": {"Data": subject}, "Body": {"Text": {"Data": "Buy credits"}}}},
    )
    assert [m["destinations"] for m in local_stack.sent_emails() if m["subject"] == subject] == [
        {"ToAddresses": ["user@example.com"]}
    ]


def test_function_environment_comes_from_the_template(local_stack: StackRunner) -> None:
    assert local_stack.runtime is not None
    env = local_stack.runtime.environment("MonthlyBillingFunction")
    assert env["TABLE_NAME"] == local_stack.table_name
    assert env["WORK_QUEUE_URL"] == local_stack.queue_urls["WorkQueue"]
    assert env["SENDER_ADDRESS"] == "billing@example.com"
    assert env["POWERTOOLS_SERVICE_NAME"] == "credit-billing"
    assert "WORK_QUEUE_URL" not in local_stack.runtime.environment("PlatformEventsFunction")


# ---------------------------------------------------------------------------------------- CLI
def cli(*args: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "localsam",
            *args,
            "--dynamodb-endpoint",
            endpoint,
            "--table",
            f"billing-cli-{uuid.uuid4().hex[:8]}",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )


def test_cli_invoke(dynamodb_endpoint: str, tmp_path: Path) -> None:
    started = EVENTS / "platform_events" / "container-started.json"
    created = EVENTS / "platform_events" / "container-created.json"
    bad_tier = EVENTS / "platform_events" / "invalid-unknown-tier.json"
    account = tmp_path / "account.json"
    account.write_text(
        json.dumps(
            {
                "source": "platform.accounts",
                "detail-type": "Account Created",
                "detail": {
                    "event_id": "cli-account",
                    "account_id": SAMPLE_ACCOUNT,
                    "occurred_at": SAMPLE_ACCOUNT_CREATED,
                    "email": "sample@example.com",
                    "plan": "free",
                },
            }
        )
    )

    done = cli(
        "invoke",
        "--redate",
        "PlatformEventsFunction",
        "-e",
        str(started),
        "--before",
        str(account),
        "--before",
        str(created),
        endpoint=dynamodb_endpoint,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["event_id"] == "sample-container-started"

    failed = cli(
        "invoke",
        "--redate",
        "PlatformEventsFunction",
        "-e",
        str(bad_tier),
        "--before",
        str(account),
        "--before",
        str(created),
        endpoint=dynamodb_endpoint,
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorType"]
