"""What every HTTP handler shares: the resolver, the route binding, the caller's identity, request
parsing, and error mapping in one place.

Routes come from the route table (:mod:`billing.api.routes`): ``@app.serves("GET /v1/balance")``
binds a handler to its entry, which decides the caller's identity (the JWT's ``sub`` as
``account_id``, the IAM principal as ``operator``), validates the query string and the JSON body
with their msgspec structs (``query=``, ``body=``) and sends the result with the route's status.

Errors are JSON ``{"error": {"code": "...", "message": "..."}}``. Domain errors carry their own
status (:mod:`billing.domain.errors`); a query or body that does not validate is a 400 whose message
is ``<field>: <reason>``; anything unexpected is logged and answered 500 without detail (no input
should ever get there: tests check every bad path).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec
from botocore.exceptions import ClientError
from pynamodb.exceptions import PynamoDBException

from billing.api.compression import compress_response
from billing.api.powertools import APIGatewayHttpResolver, NotFoundError, Response
from billing.api.requests import NoQuery, parse_query, parse_request, split_labels
from billing.api.routes import BY_KEY, Route
from billing.domain.errors import BillingError, Forbidden, InvalidInput, NotFound, ServiceBusy, Unauthorized
from billing.domain.members import require_role
from billing.domain.roster import Role
from billing.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_DEPTH = 20
MAX_SUB_LENGTH = 255  # OIDC: a sub is at most 255 ASCII characters
_JSON_KEY = "billing_request_json"  # the parsed body, in the resolver's per-request context

Handler = Callable[..., Any]
RoleOf = Callable[[str, str], Role | None]  # (account, user) -> the user's role there, None: not a member
ACCOUNT_HEADER = "billing-account"


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps({"error": {"code": code, "message": message}}),
        headers=headers,
    )


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[Any]:
    """A struct, dict or list as a JSON response."""
    return Response(
        status_code=status, content_type="application/json", body=msgspec.json.encode(value).decode(), headers=headers
    )


class Resolver(APIGatewayHttpResolver):
    """Powertools' HTTP API (payload 2.0) resolver, without its pydantic validation: routes are bound
    from the route table with :meth:`serves`, which validates with msgspec."""

    def __init__(self, role_of: RoleOf | None = None) -> None:
        super().__init__()
        self.bound: dict[str, Route] = {}
        self.role_of = role_of

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        """The answer, gzipped when the client takes it and it is worth it (:mod:`billing.api.compression`)."""
        return compress_response(super().resolve(event, context), event.get("headers"))

    def serves(self, key: str, guard: Callable[[], None] | None = None) -> Callable[[Handler], Handler]:
        """Bind a handler to the route ``key`` ("METHOD /path" of :data:`billing.api.routes.ROUTES`).

        The handler is called with the path parameters, ``account_id`` (JWT routes) or ``operator``
        (IAM routes), ``query`` (when the route has query parameters), ``labels`` (the route's
        ``label.<key>`` parameters, when it takes them) and ``body`` (when it has a
        body), in that order of checks: identity, ``guard()`` (e.g. a signature over the raw body),
        query, body. A struct or dict it returns is sent as JSON with the route's status; a
        :class:`Response` as it is."""
        spec = BY_KEY[key]
        wants_query = spec.query is not None and spec.query is not NoQuery

        def register(func: Handler) -> Handler:
            wants_caller = "caller" in inspect.signature(func).parameters

            def endpoint(**path_parameters: str) -> Response[Any]:
                kwargs: dict[str, Any] = dict(path_parameters)
                if spec.auth == "jwt":
                    user = caller_account(self)
                    kwargs["account_id"], role = self.acting_account(user, spec)
                    if wants_caller:
                        kwargs["caller"] = Caller(user, role)
                elif spec.auth == "iam":
                    kwargs["operator"] = operator_identity(self)
                if guard is not None:
                    guard()
                if spec.query is not None:
                    params = dict(self.current_event.query_string_parameters or {})
                    if spec.label_filters:
                        params, kwargs["labels"] = split_labels(params)
                    query = parse_query(spec.query, params)
                    if wants_query:
                        kwargs["query"] = query
                if spec.body is not None:
                    data = json_body(self)
                    self.append_context(**{_JSON_KEY: data})
                    kwargs["body"] = parse_request(spec.body, data)
                result = func(**kwargs)
                return result if isinstance(result, Response) else json_response(result, spec.status)

            endpoint.__name__ = endpoint.__qualname__ = func.__name__
            endpoint.__doc__ = func.__doc__
            self.route(spec.rule, spec.method)(endpoint)
            self.bound[key] = spec
            return func

        return register

    def acting_account(self, user: str, spec: Route) -> tuple[str, Role]:
        """The account a user route acts on and the caller's role there: their own account (its
        owner), or the one ``Billing-Account`` names when they are its member. Not a member, or no
        such account: the same 404; a role below the route's: a 403 naming the role needed."""
        named = header(self, ACCOUNT_HEADER)
        if named is None or named == user:
            return user, "owner"
        if not named or len(named) > MAX_SUB_LENGTH or not (named.isascii() and named.isprintable()):
            raise InvalidInput(f"Billing-Account must be 1 to {MAX_SUB_LENGTH} printable ASCII characters")
        role = self.role_of(named, user) if self.role_of is not None else None
        if role is None:
            raise NotFound(f"no account {named} that you are a member of")
        if spec.role is not None:
            require_role(role, spec.role)
        return named, role


def make_resolver(role_of: RoleOf | None = None) -> Resolver:
    """A resolver with the project's error mapping; ``role_of`` answers whether a caller may act on
    the account a ``Billing-Account`` header names (without it, only on their own)."""
    app = Resolver(role_of)

    @app.exception_handler(BillingError)
    def _domain(exc: BillingError) -> Response[Any]:
        if exc.http_status >= 500:
            # Nothing the caller did: the table kept throttling, or the deployment lacks a setting.
            logger.warning("request not served", code=exc.code, reason=exc.message)
            retry_after = str(getattr(exc, "retry_after_seconds", 5))
            return error_response(exc.http_status, exc.code, exc.message, {"Retry-After": retry_after})
        logger.info("request refused", code=exc.code, reason=exc.message)
        return error_response(exc.http_status, exc.code, exc.message)

    @app.exception_handler(PynamoDBException)
    @app.exception_handler(ClientError)
    def _aws(exc: Exception) -> Response[Any]:
        from billing.store.ledger import is_transient  # loaded already by every function that reads the table

        if not is_transient(exc):
            raise exc  # a defect, not the caller's: logged by Lambda, answered 500
        # A read that DynamoDB kept throttling through the SDK's retries: the same answer as a write's.
        return _domain(ServiceBusy("the billing table is busy; retry shortly"))

    @app.not_found
    def _not_found(exc: NotFoundError) -> Response[Any]:
        return error_response(404, "not_found", "no such route")

    return app


class Caller:
    """The person behind a user route: their token's ``sub`` and their role in the account acted on."""

    __slots__ = ("role", "user_id")

    def __init__(self, user_id: str, role: Role) -> None:
        self.user_id, self.role = user_id, role

    @property
    def own_usage_only(self) -> str | None:
        """The user a ``member``'s usage reads are restricted to (None: they see everyone's)."""
        return self.user_id if self.role == "member" else None


def caller_account(app: APIGatewayHttpResolver) -> str:
    """The account is the JWT's ``sub`` claim, set by API Gateway's JWT authorizer."""
    event = app.current_event
    authorizer = (event.raw_event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("no authenticated account")
    if len(sub) > MAX_SUB_LENGTH or not (sub.isascii() and sub.isprintable()):
        raise Unauthorized(f"the token's sub must be 1 to {MAX_SUB_LENGTH} printable ASCII characters")
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
    if len(raw) > MAX_BODY_BYTES or len(raw.encode()) > MAX_BODY_BYTES:  # UTF-8 bytes, not characters
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


def request_json(app: APIGatewayHttpResolver) -> Any:
    """What fingerprints a request (:func:`billing.store.idempotency.request_key`): the JSON body the
    route parsed (:meth:`Resolver.serves`), or, for a route without a body, :func:`optional_body`."""
    if _JSON_KEY in app.context:
        return app.context[_JSON_KEY]
    return optional_body(app)
