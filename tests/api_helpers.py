"""Test helpers for the HTTP handlers: API Gateway HTTP API (payload 2.0) events, a Lambda context,
and a counter of the DynamoDB requests the PynamoDB models make."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from billing.store.tables import TableModels


def api_event(
    path: str,
    query: dict[str, str] | None = None,
    sub: str | None = "acct-1",
    method: str = "GET",
    body: str | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload-2.0 event, with the JWT authorizer's claims when ``sub`` is set."""
    query = query or {}
    request_context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "testapi",
        "domainName": "api.example.com",
        "domainPrefix": "api",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.1",
                 "userAgent": "pytest"},
        "requestId": "req-1",
        "routeKey": f"{method} {path}",
        "stage": "$default",
        "time": "20/Mar/2026:12:00:00 +0000",
        "timeEpoch": 1774008000000,
    }
    if sub is not None:
        request_context["authorizer"] = {"jwt": {"claims": {"sub": sub}, "scopes": []}}
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": urllib.parse.urlencode(query),
        "headers": {"accept": "application/json", "host": "api.example.com"},
        "requestContext": request_context,
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if body is not None:
        event["body"] = body
    return event


@dataclass
class FakeContext:
    function_name: str = "usage-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:usage-api"
    aws_request_id: str = "00000000-0000-0000-0000-000000000001"
    log_group_name: str = "/aws/lambda/usage-api"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def call(handler: Any, event: dict[str, Any]) -> tuple[int, Any, dict[str, Any]]:
    """Invoke a handler; returns the status, the body (JSON decoded when JSON) and the headers."""
    response = handler.lambda_handler(event, FakeContext())
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    body = response.get("body") or ""
    if headers.get("content-type", "").startswith("application/json") and body:
        body = json.loads(body)
    return response["statusCode"], body, headers


class RequestCounter:
    """Counts DynamoDB requests of the PynamoDB models through botocore's ``before-call`` events."""

    def __init__(self, models: TableModels) -> None:
        self.calls: list[str] = []
        seen: set[int] = set()
        classes: Iterable[Any] = (models.Account, models.EventRecord, models.Entry, models.Usage, models.Item)
        clients = [model._get_connection().connection.client for model in classes] + [models.connection.client]
        for client in clients:
            if id(client) in seen:
                continue
            seen.add(id(client))
            client.meta.events.register("before-call.dynamodb.*", self._count)

    def _count(self, model: Any = None, **_: Any) -> None:
        self.calls.append(getattr(model, "name", "?"))

    def reset(self) -> None:
        self.calls.clear()
