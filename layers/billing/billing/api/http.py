"""What every HTTP handler shares: the resolver, the caller's account, and error mapping in one place.

Errors are JSON ``{"error": {"code": "...", "message": "..."}}``. Domain errors carry their own
status (:mod:`billing.errors`); request validation failures are 400; anything unexpected is logged
and answered 500 without detail (no input should ever get there: tests check every bad path).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from billing.domain.errors import BillingError, Forbidden, InvalidInput, Unauthorized
from billing.observability import logger

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 20
MAX_SUB_LENGTH = 255  # OIDC: a sub is at most 255 ASCII characters


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps({"error": {"code": code, "message": message}}),
        headers=headers,
    )


def validation_reasons(errors: Iterable[Mapping[str, Any]]) -> str:
    """pydantic's errors as one message: ``field.path: what is wrong; ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in errors)


def make_resolver() -> APIGatewayHttpResolver:
    """An HTTP API (payload 2.0) resolver with validation and the project's error mapping."""
    app = APIGatewayHttpResolver(enable_validation=True)

    @app.exception_handler(BillingError)
    def _domain(exc: BillingError) -> Response[Any]:
        if exc.http_status >= 500:
            # Nothing the caller did: the table kept throttling, or the deployment lacks a setting.
            logger.warning("request not served", code=exc.code, reason=exc.message)
            retry_after = str(getattr(exc, "retry_after_seconds", 5))
            return error_response(exc.http_status, exc.code, exc.message, {"Retry-After": retry_after})
        logger.info("request refused", code=exc.code, reason=exc.message)
        return error_response(exc.http_status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[Any]:
        reasons = validation_reasons(exc.errors())
        logger.info("request invalid", reason=reasons)
        return error_response(400, InvalidInput.code, reasons or "invalid request")

    @app.not_found
    def _not_found(exc: NotFoundError) -> Response[Any]:
        return error_response(404, "not_found", "no such route")

    return app


def caller_account(app: APIGatewayHttpResolver) -> str:
    """The account is the JWT's ``sub`` claim, set by API Gateway's JWT authorizer."""
    event = app.current_event
    authorizer = (event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("no authenticated account")
    if len(sub) > MAX_SUB_LENGTH or not sub.isprintable():
        raise Unauthorized(f"the token's sub must be 1 to {MAX_SUB_LENGTH} printable characters")
    return sub


def operator_identity(app: APIGatewayHttpResolver) -> str:
    """Operator routes use IAM authorization; API Gateway puts the caller's ARN here."""
    authorizer = (app.current_event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    iam = authorizer.get("iam") or {}
    arn = iam.get("userArn") or iam.get("callerId")
    if not arn:
        raise Forbidden("operator routes need IAM authorization")
    return str(arn)


def header(app: APIGatewayHttpResolver, name: str) -> str | None:
    """A request header, by its lower-case name (HTTP header names are case-insensitive)."""
    for key, value in (app.current_event.headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def raw_body(app: APIGatewayHttpResolver) -> str:
    """The request body as text (at most 64 KiB of UTF-8), or a 400."""
    try:
        raw = app.current_event.decoded_body or ""
    except (ValueError, UnicodeError):
        raise InvalidInput("the body is not UTF-8 text") from None
    if len(raw) > MAX_BODY_BYTES:
        raise InvalidInput(f"the body is larger than {MAX_BODY_BYTES} bytes")
    return raw


def parse_json(raw: str) -> Any:
    """JSON text as a value, refusing nesting deeper than 20 levels before parsing it (a 400)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in raw:  # brackets outside strings give the depth without recursing
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    if deepest > MAX_JSON_DEPTH:
        raise InvalidInput(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        raise InvalidInput("the body is not valid JSON") from None


def json_body(app: APIGatewayHttpResolver) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    raw = raw_body(app)
    if not raw:
        raise InvalidInput("a JSON body is required")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def optional_body(app: APIGatewayHttpResolver) -> Any:
    """A body that a route ignores but that fingerprints the request: its JSON, or its text."""
    raw = raw_body(app)
    if not raw:
        return None
    try:
        return parse_json(raw)
    except InvalidInput:
        return raw
