"""The HttpApi routes of ``template.yaml`` served locally, like ``sam local start-api``.

Requests become API Gateway HTTP API events (payload format 2.0) and responses follow the 2.0
response rules. Authorization is simulated, LOCAL ONLY:

* JWT routes (the API's default authorizer): ``Authorization: Bearer <jwt>`` whose payload is read
  WITHOUT checking the signature, issuer or audience (only ``exp``, when present), or the simpler
  ``X-Local-Sub: <account>``. The claims land in ``requestContext.authorizer.jwt.claims``.
  Missing identity: 401 ``{"message": "Unauthorized"}`` as API Gateway answers.
* AWS_IAM routes: ``X-Local-Iam: <principal arn>`` (no SigV4 check) lands in
  ``requestContext.authorizer.iam.userArn``. Missing: 403 ``{"message": "Forbidden"}``, which is
  what API Gateway answers to an unsigned request on an IAM route.
* ``Auth: {Authorizer: NONE}`` routes take anyone.

LOCAL ONLY, not part of the template: ``/docs/`` serves Swagger UI (``web/dist/swagger``, built by
``web/build.mjs`` from the pinned ``swagger-ui-dist``; ``make web``) on the API's own document,
``GET /v1/openapi.json``. Static mounts are answered before any route and never reach a function.
"""

from __future__ import annotations

import base64
import contextlib
import json
import mimetypes
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from localsam.runtime import ACCOUNT, InvocationError, Resolver

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded", "+json")
ROOT = Path(__file__).resolve().parents[2]
# Local-only static mounts (URL prefix -> directory): Swagger UI on the API's OpenAPI document.
LOCAL_STATIC: dict[str, Path] = {"/docs": ROOT / "web" / "dist" / "swagger"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str
    auth: str  # "JWT", "AWS_IAM" or "NONE"
    authorizer: str | None = None
    jwt_config: dict[str, Any] = field(default_factory=dict)

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in (method, "ANY"):
            return None
        pattern = "^"
        for part in re.split(r"(\{[^}]+\})", self.path):
            if part.startswith("{") and part.endswith("+}"):
                pattern += f"(?P<{_group(part[1:-2])}>.+)"
            elif part.startswith("{"):
                pattern += f"(?P<{_group(part[1:-1])}>[^/]+)"
            else:
                pattern += re.escape(part)
        found = re.match(pattern + "$", path)
        if not found:
            return None
        names = re.findall(r"\{([^}+]+)\+?\}", self.path)
        return {n: urllib.parse.unquote(found.group(_group(n))) for n in names}


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


def routes(template: dict[str, Any], resolver: Resolver | None = None) -> list[Route]:
    """Every HttpApi event of every function, with its effective authorization."""
    resolver = resolver or Resolver(template)
    resources = template.get("Resources") or {}
    found: list[Route] = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties") or {}
            api_auth: dict[str, Any] = {}
            api_id = props.get("ApiId")
            if isinstance(api_id, dict) and "Ref" in api_id:
                api_auth = dict(((resources.get(api_id["Ref"]) or {}).get("Properties") or {}).get("Auth") or {})
            authorizers = api_auth.get("Authorizers") or {}
            name = (props.get("Auth") or {}).get("Authorizer") or api_auth.get("DefaultAuthorizer") or "NONE"
            config: dict[str, Any] = {}
            if name == "AWS_IAM":
                auth = "AWS_IAM"
            elif name == "NONE":
                auth = "NONE"
            else:
                auth = "JWT"
                config = resolver.resolve(dict((authorizers.get(name) or {}).get("JwtConfiguration") or {}))
            found.append(
                Route(
                    method=str(props.get("Method", "ANY")).upper(),
                    path=str(props.get("Path", "/$default")),
                    function=logical_id,
                    auth=auth,
                    authorizer=None if auth == "NONE" else name,
                    jwt_config=config,
                )
            )
    # API Gateway prefers the most specific route: literal segments before {params}, greedy last
    return sorted(found, key=lambda r: (r.path.count("+}"), r.path.count("{"), -len(r.path)))


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, read WITHOUT verifying its signature (local use only)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except ValueError:
        return None
    if not isinstance(claims, dict) or not claims.get("sub"):
        return None
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp < time.time():
        return None
    return claims


def make_jwt(claims: Mapping[str, Any]) -> str:
    """An unsigned (``alg: none``) JWT for local requests."""

    def enc(value: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(dict(value)).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims)}."


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: str
    is_base64: bool = False
    cookies: list[str] = field(default_factory=list)

    @property
    def status_code(self) -> int:
        return self.status

    def json(self) -> Any:
        return json.loads(self.raw() or b"null")

    def raw(self) -> bytes:
        return base64.b64decode(self.body) if self.is_base64 else self.body.encode()


def _message(status: int, message: str) -> ApiResponse:
    return ApiResponse(status, {"content-type": "application/json"}, json.dumps({"message": message}))


def _stringify_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    # API Gateway passes JWT claims as strings (arrays as "[a b]")
    out: dict[str, str] = {}
    for k, v in claims.items():
        if isinstance(v, list):
            out[k] = "[" + " ".join(str(i) for i in v) + "]"
        elif isinstance(v, bool):
            out[k] = str(v).lower()
        else:
            out[k] = str(v)
    return out


class HttpApi:
    """Routes requests to functions through a callable ``invoke(logical_id, event) -> result``."""

    def __init__(
        self,
        template: dict[str, Any],
        invoke: Callable[[str, Any], Any],
        resolver: Resolver | None = None,
        static: Mapping[str, Path] | None = None,
    ):
        self.routes = routes(template, resolver)
        self.invoke = invoke
        self.api_id = "localapi"
        self.static = dict(LOCAL_STATIC if static is None else static)  # local only, see the module docstring

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def authorize(self, route: Route, headers: Mapping[str, str]) -> tuple[dict[str, Any] | None, ApiResponse | None]:
        if route.auth == "NONE":
            return None, None
        if route.auth == "AWS_IAM":
            arn = headers.get("x-local-iam")
            if not arn:
                return None, _message(403, "Forbidden")
            access_key = "ASIALOCAL" + uuid.uuid4().hex[:11].upper()
            return {
                "iam": {
                    "accessKey": access_key,
                    "accountId": ACCOUNT,
                    "callerId": arn.rsplit("/", 1)[-1],
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": arn,
                    "userId": arn.rsplit("/", 1)[-1],
                }
            }, None
        claims: dict[str, Any] | None = None
        authorization = headers.get("authorization", "")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            claims = jwt_claims(token.strip() if scheme.lower() == "bearer" else authorization.strip())
            if claims is None:
                return None, _message(401, "Unauthorized")
        elif headers.get("x-local-sub"):
            now = int(time.time())
            claims = {
                "sub": headers["x-local-sub"],
                "iss": route.jwt_config.get("issuer", "local"),
                "aud": route.jwt_config.get("audience", []),
                "iat": now,
                "exp": now + 3600,
            }
        if not claims:
            return None, _message(401, "Unauthorized")
        return {"jwt": {"claims": _stringify_claims(claims), "scopes": None}}, None

    def event(
        self,
        route: Route,
        params: dict[str, str],
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes | None,
        authorizer: dict[str, Any] | None,
        source_ip: str = "127.0.0.1",
    ) -> dict[str, Any]:
        lowered: dict[str, str] = {}
        for k, v in headers.items():
            key = k.lower()
            lowered[key] = f"{lowered[key]},{v}" if key in lowered else v
        cookies = [c.strip() for c in lowered.pop("cookie", "").split(";") if c.strip()]
        query: dict[str, str] = {}
        for k, v in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
            query[k] = f"{query[k]},{v}" if k in query else v
        now = datetime.now(UTC)
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": raw_path,
            "rawQueryString": raw_query,
            "headers": lowered,
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": self.api_id,
                "domainName": lowered.get("host", "localhost"),
                "domainPrefix": lowered.get("host", "localhost").split(".")[0],
                "http": {
                    "method": method,
                    "path": raw_path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": source_ip,
                    "userAgent": lowered.get("user-agent", ""),
                },
                "requestId": uuid.uuid4().hex,
                "routeKey": route.route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": False,
        }
        if cookies:
            event["cookies"] = cookies
        if query:
            event["queryStringParameters"] = query
        if params:
            event["pathParameters"] = params
        if authorizer:
            event["requestContext"]["authorizer"] = authorizer
        if body:
            content_type = lowered.get("content-type", "application/json")
            text = None
            if any(t in content_type for t in TEXT_TYPES) or not content_type:
                try:
                    text = body.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
            if text is None:
                event["body"] = base64.b64encode(body).decode()
                event["isBase64Encoded"] = True
            else:
                event["body"] = text
        return event

    def handle(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
        source_ip: str = "127.0.0.1",
    ) -> ApiResponse:
        parsed = urllib.parse.urlsplit(target)
        method = method.upper()
        lowered = {k.lower(): v for k, v in headers.items()}
        served = self.serve_static(method, parsed.path)
        if served is not None:
            return served
        found = self.find(method, parsed.path)
        if found is None:
            return _message(404, "Not Found")
        route, params = found
        authorizer, denied = self.authorize(route, lowered)
        if denied is not None:
            return denied
        event = self.event(route, params, method, parsed.path, parsed.query, headers, body, authorizer, source_ip)
        try:
            result = self.invoke(route.function, event)
        except InvocationError:
            return _message(500, "Internal Server Error")
        return to_response(result)


    def serve_static(self, method: str, path: str) -> ApiResponse | None:
        """A file of a local static mount (``/docs/`` -> its ``index.html``), or None when the path is
        not under a mount. LOCAL ONLY: nothing like it is deployed."""
        for prefix, directory in self.static.items():
            if path != prefix and not path.startswith(prefix + "/"):
                continue
            if method not in ("GET", "HEAD"):
                return _message(405, "Method Not Allowed")
            if path == prefix:  # relative links in the page need the trailing slash
                return ApiResponse(301, {"location": prefix + "/", "content-type": "text/plain"}, "")
            relative = urllib.parse.unquote(path[len(prefix) + 1:]) or "index.html"
            base = directory.resolve()
            file = (base / relative).resolve()
            if not directory.is_dir():
                return ApiResponse(404, {"content-type": "text/plain; charset=utf-8"},
                                   f"{directory} is missing: run `make web` (npm ci && node build.mjs in web/)\n")
            if not file.is_relative_to(base) or not file.is_file():
                return _message(404, "Not Found")
            content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            if content_type.startswith("text/") or content_type in ("application/javascript", "text/javascript"):
                content_type += "; charset=utf-8"
            body = base64.b64encode(file.read_bytes()).decode()
            return ApiResponse(200, {"content-type": content_type, "cache-control": "no-cache"}, body, is_base64=True)
        return None


def to_response(result: Any) -> ApiResponse:
    """The HTTP response of a handler result under the payload format 2.0 rules."""
    if isinstance(result, dict) and "statusCode" in result:
        headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
        for k, values in (result.get("multiValueHeaders") or {}).items():
            headers[str(k).lower()] = ",".join(str(v) for v in values)
        body = result.get("body")
        if body is None:
            body = ""
        elif not isinstance(body, str):
            body = json.dumps(body)
        return ApiResponse(
            status=int(result["statusCode"]),
            headers=headers,
            body=body,
            is_base64=bool(result.get("isBase64Encoded")),
            cookies=list(result.get("cookies") or []),
        )
    # no statusCode: API Gateway assumes 200, application/json, and the result as the body
    body = result if isinstance(result, str) else json.dumps(result)
    return ApiResponse(200, {"content-type": "application/json"}, body)


def make_server(api: HttpApi, port: int = 3000, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    lock = threading.Lock()  # one handler invocation at a time

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers: dict[str, str] = {}
            for k, v in self.headers.items():
                key = k.lower()
                headers[key] = f"{headers[key]},{v}" if key in headers else v
            with lock:
                response = api.handle(self.command, self.path, headers, body, self.client_address[0])
            payload = response.raw()
            self.send_response(response.status)
            for k, v in response.headers.items():
                if k not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(k, v)
            for cookie in response.cookies:
                self.send_header("set-cookie", cookie)
            self.send_header("content-length", str(len(payload)))
            self.send_header("apigw-requestid", uuid.uuid4().hex[:16])
            self.end_headers()
            if self.command != "HEAD":
                # The browser may have gone (a page closed mid-load): nobody is left to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            if getattr(self.server, "verbose", False):
                super().log_message(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


__all__ = [
    "ApiResponse",
    "HttpApi",
    "Route",
    "jwt_claims",
    "make_jwt",
    "make_server",
    "routes",
    "to_response",
]
