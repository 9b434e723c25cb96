"""The OpenAPI 3.1 document of every route of the HTTP API (``GET /v1/openapi.json``).

Generated from the route table (:data:`billing.api.routes.ROUTES`) and the very msgspec structs the
handlers validate requests with and answer with: ``msgspec.json.schema_components`` gives their JSON
Schemas (OpenAPI 3.1's schema dialect is JSON Schema 2020-12), query structs become parameters, body
structs request bodies, and each route's success status, error statuses and security come from its
entry. Nothing is built at import: :func:`document_json` builds the document on its first call and
keeps it for the life of the process.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from billing.api import models
from billing.api.routes import ROUTES, Route

JSON = "application/json"
REF = "#/components/schemas/{name}"
TITLE = "Credit billing API"
VERSION = "1"
DESCRIPTION = (
    "The HTTP API of the credit-billing back end (API Gateway HTTP API, payload format 2.0). Credit amounts are "
    "decimal strings with 6 decimals, money is `{\"currency\", \"cents\"}`, times are ISO-8601 UTC with a `Z`. "
    "User routes take the identity provider's JWT (the account is its `sub`, or the one the `Billing-Account` header "
    "names when the caller is its member; each route names the role it needs); operator routes take IAM "
    "(SigV4) authorization; the payment webhook is verified by its `Billing-Signature`. Errors are "
    "`{\"error\": {\"code\", \"message\"}}`; no input, however malformed, gets a 5xx or changes anything."
)
SECURITY_SCHEMES: dict[str, Any] = {
    "userJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token of the platform's identity provider; the account is its `sub` claim.",
    },
    "operatorIam": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "AWS Signature Version 4 (API Gateway IAM authorization) of an operator principal.",
        "x-amazon-apigateway-authtype": "awsSigv4",
    },
}
SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "jwt": [{"userJwt": []}], "iam": [{"operatorIam": []}], "signature": [], "none": [],
}
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    400: "Malformed: a parameter, header or the body does not validate (the message names the field)",
    401: "No authenticated caller (or, for the webhook, a missing or wrong signature)",
    403: "Not allowed: an operator route needs IAM authorization; a user route a higher role in the account "
         "(the message names the role needed)",
    404: "Not found (the account, or what the path names)",
    409: "Conflicts with the current state (already done, or the account kept changing: retry)",
    422: "Well-formed but not allowed by the rules (or an Idempotency-Key used with another request)",
    503: "Not served now (the table kept throttling, or a secret could not be read): retry after `Retry-After`",
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A repeat with the same key and body gets the first response; the same key with another "
                   "request is a 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
}
BILLING_ACCOUNT = {
    "name": "Billing-Account",
    "in": "header",
    "required": False,
    "description": "The account to act on when it is not the caller's own (`sub`): one the caller is a member "
                   "of. Not a member (or no such account): 404; a role below the route's: 403.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}
ROLE_NOTE = "Needs the role `{role}` (or higher: member < billing < admin < owner) in the account acted on."
SIGNATURE = {
    "name": "Billing-Signature",
    "in": "header",
    "required": True,
    "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">` with the shared secret; "
                   "several `v1` parts may be given (during a rotation).",
    "schema": {"type": "string", "maxLength": 2000, "examples": ["t=1767952800,v1=5257a869e7ecebeda32affa62cdca3fa"
                                                                 "51cad7e77a0e56ff536d0ce8e108d8bd"]},
}


def _media(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _error(status: int, auth: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"$ref": REF.format(name="ErrorBody")}
    if (status == 401 and auth == "jwt") or (status == 403 and auth == "iam"):
        # API Gateway's authorizer answers before any function runs, with a body of its own.
        schema = {"anyOf": [schema, {"$ref": REF.format(name="GatewayMessage")}]}
    response: dict[str, Any] = {"description": STATUS_TEXT[status], "content": _media(schema)}
    if status == 503:
        response["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}}
    return response


def _parameter(name: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
    """A query parameter from a query struct's property: ``T | None = None`` is an optional ``T``."""
    schema = dict(schema)
    variants = schema.get("anyOf")
    if variants and {"type": "null"} in variants:
        rest = [v for v in variants if v != {"type": "null"}]
        schema.pop("anyOf")
        schema = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **schema}
    if schema.get("default", 0) is None:
        schema.pop("default")
    parameter: dict[str, Any] = {"name": name, "in": "query", "required": required}
    if "description" in schema:
        parameter["description"] = schema.pop("description")
    parameter["schema"] = schema
    return parameter


def _operation(route: Route, schemas: dict[str, Any], ref: dict[int, dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation,
        "summary": route.summary,
        "tags": [route.tag],
        "security": SECURITY[route.auth],
        "x-billing-function": route.function,
    }
    if route.role is not None:
        op["x-billing-role"] = route.role
    notes = [route.description, ROLE_NOTE.format(role=route.role) if route.role else ""]
    if any(notes):
        op["description"] = " ".join(note for note in notes if note)
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in route.path_parameters
    ]
    if route.query is not None:
        component = schemas[route.query.__name__]
        required = set(component.get("required", ()))
        parameters += [_parameter(name, prop, name in required) for name, prop in component["properties"].items()]
    if route.role is not None:
        parameters.append(BILLING_ACCOUNT)
    if route.idempotent:
        parameters.append(IDEMPOTENCY_KEY)
    if route.auth == "signature":
        parameters.append(SIGNATURE)
    if parameters:
        op["parameters"] = parameters
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": _media(ref[id(route.body)])}
    success: dict[str, Any] = {"description": STATUS_TEXT[route.status], "content": _media(ref[id(route.response)])}
    if route.csv_only:
        success["content"] = {"text/csv": {"schema": {"type": "string", "description": "The report as CSV rows."}}}
        success["headers"] = {"Content-Disposition": {"description": "An attachment (usage.csv).",
                                                      "schema": {"type": "string"}}}
    elif route.csv:
        success["content"]["text/csv"] = {"schema": {"type": "string", "description": "The entries as CSV rows."}}
        success["headers"] = {
            "X-Next-Cursor": {"description": "CSV only: the next page's cursor, when there is one.",
                              "schema": {"type": "string"}},
        }
    responses = {str(route.status): success}
    for status in route.statuses()[1:]:
        responses[str(status)] = _error(status, route.auth)
    op["responses"] = responses
    return op


def build_document() -> dict[str, Any]:
    """The document, built from the route table (a new dict on every call)."""
    types: list[Any] = [models.ErrorBody, models.GatewayMessage]
    for route in ROUTES:
        types += [t for t in (route.query, route.body, route.response) if t is not None and t not in types]
    refs, schemas = msgspec.json.schema_components(types, ref_template=REF)
    ref = {id(t): dict(r) for t, r in zip(types, refs, strict=True)}
    if models.OpenApiDocument in types:
        ref[id(models.OpenApiDocument)]["description"] = "An OpenAPI 3.1 document."
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schemas, ref)
    for query in {route.query for route in ROUTES if route.query is not None}:
        schemas.pop(query.__name__, None)  # inlined as parameters (nothing refers to a query struct)
    tags = sorted({route.tag for route in ROUTES})
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": SECURITY_SCHEMES},
    }


@cache
def document_json() -> str:
    """The document as JSON text, built once per process (on the first request for it)."""
    return msgspec.json.encode(build_document()).decode()
