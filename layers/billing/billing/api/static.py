"""Files of the credit-usage page (``web/dist``) as API Gateway HTTP API responses (payload 2.0).

Standard library only (no pydantic, no Powertools): ``WebPageFunction`` serves nothing else, and its
cold start is a person waiting for a page.

* ``GET /`` is ``index.html``; ``GET /page/{file+}`` the page's other files (its styles, modules
  and vendored libraries). A file name is a path of segments of ``A-Z a-z 0-9 . _ -`` (no hidden
  file, no ``..``) that must resolve inside the site's folder: anything else is a 404.
* ``Cache-Control``: ``no-cache`` for ``index.html`` (revalidated by ``ETag``, a 304 when unchanged),
  a year (``immutable``) for ``vendor/`` (names carry the library's version) and for the page's own
  styles and modules, whose names carry their content's hash (``app.3f9c1a2b07.js``, web/build.mjs).
* Text files are sent gzip-compressed to a browser that accepts it (``Vary: Accept-Encoding``).
* The page's configuration: ``stripe_js`` (the URL of Stripe.js: js.stripe.com, or the local Stripe
  stand-in) and ``stripe_key`` (the publishable key) are written into index.html's ``billing-stripe-*``
  meta tags, and the Stripe.js origin is added to the CSP's script, frame and connect sources.
* Every answer carries a strict Content-Security-Policy (the page, its scripts, styles and API calls
  come from this origin only; no inline script or style), ``X-Content-Type-Options: nosniff`` and
  ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

INDEX = "index.html"
ASSET_PREFIX = "/page/"
VENDOR = "vendor/"

NO_CACHE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".license": "text/plain; charset=utf-8",
}
TEXT = ("text/", "application/json", "image/svg+xml")

HASHED = re.compile(r"\.[0-9a-f]{10}\.(js|mjs|css)$")  # web/build.mjs: name.<10 hex of sha256>.ext
COMPRESS_MIN = 1024  # bytes: smaller answers are not worth a gzip header
SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
MAX_DEPTH = 4


def stripe_origins(stripe_js: str) -> list[str]:
    """The origins Stripe.js needs: its own, and with the real js.stripe.com its API and hooks."""
    parts = urlsplit(stripe_js)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        return []
    origin = f"{parts.scheme}://{parts.netloc}"
    if parts.netloc == "js.stripe.com":
        return [origin, "https://api.stripe.com", "https://hooks.stripe.com"]
    return [origin]


def content_security_policy(frame_ancestors: str = "'none'", stripe_js: str = "") -> str:
    """Self only (and Stripe.js when configured): the page calls the API on its own origin;
    ``data:`` only for the empty favicon and the receipt's PDF image; blob: for downloads."""
    stripe = "".join(f" {o}" for o in stripe_origins(stripe_js))
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self'{stripe}",
            "style-src 'self'",
            "img-src 'self' data: blob:",
            "font-src 'self'",
            f"connect-src 'self'{stripe}",
            "frame-src" + (stripe or " 'none'"),
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors " + (frame_ancestors or "'none'"),
        ]
    )


@dataclass(frozen=True)
class _File:
    body: bytes
    etag: str
    content_type: str
    mtime_ns: int
    size: int
    gzipped: bytes | None = None  # the body gzip-compressed, for a text file worth compressing


def safe_relative(name: str) -> str | None:
    """``name`` when it is a plain relative file path (``vendor/x-1.0.js``), else None."""
    if not name or len(name) > 512 or "\\" in name or "\x00" in name:
        return None
    parts = name.split("/")
    if len(parts) > MAX_DEPTH or not all(SEGMENT.match(p) and p not in (".", "..") for p in parts):
        return None
    return name


class StaticSite:
    """The page's files from the first of ``roots`` that holds ``index.html`` (looked up at each
    request, so a site built after the process started is found), cached by modification time."""

    def __init__(self, roots: Iterable[Path], frame_ancestors: str = "'none'", stripe_js: str = "",
                 stripe_key: str = "") -> None:
        self.roots = [Path(r) for r in roots]
        self.config = {"billing-stripe-js": stripe_js if stripe_origins(stripe_js) else "",
                       "billing-stripe-key": stripe_key if stripe_origins(stripe_js) else ""}
        self.headers = {
            "content-security-policy": content_security_policy(frame_ancestors, self.config["billing-stripe-js"]),
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "cross-origin-opener-policy": "same-origin",
        }
        self._cache: dict[Path, _File] = {}

    def root(self) -> Path | None:
        for root in self.roots:
            if (root / INDEX).is_file():
                return root.resolve()
        return None

    # ------------------------------------------------------------------ requests
    def respond(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The response to an HTTP API event: ``GET /`` or ``GET /page/<file>``."""
        context = event.get("requestContext") or {}
        method = str((context.get("http") or {}).get("method") or "GET").upper()
        if method not in ("GET", "HEAD"):
            return self._text(405, "Method Not Allowed", {"allow": "GET, HEAD"})
        params = event.get("pathParameters") or {}
        name: str | None = None
        if "file" in params:
            requested = str(params["file"])
            # index.html is the page at "/" only: its relative links resolve from there
            name = safe_relative(requested) if requested != INDEX else None
        elif str(event.get("routeKey") or "").endswith(" /") or str(event.get("rawPath") or "/") == "/":
            name = INDEX
        if name is None:
            return self._not_found()
        root = self.root()
        if root is None:
            return self._text(
                503, "The credit-usage page is not built: run `npm ci && node build.mjs` in web/ (or `make build`)."
            )
        file = self._read(root, name)
        if file is None:
            return self._not_found()
        cache = IMMUTABLE if name.startswith(VENDOR) or HASHED.search(name) else NO_CACHE
        headers = {**self.headers, "content-type": file.content_type, "cache-control": cache, "etag": file.etag}
        if file.content_type.startswith(TEXT):
            headers["vary"] = "accept-encoding"
        if _etag_matches(_header(event, "if-none-match"), file.etag):
            return {"statusCode": 304, "headers": headers, "body": ""}
        if method == "HEAD":
            return _body(200, headers, b"", file.content_type)
        if file.gzipped is not None and "gzip" in _header(event, "accept-encoding").lower():
            headers["content-encoding"] = "gzip"
            return {"statusCode": 200, "headers": headers, "body": base64.b64encode(file.gzipped).decode(),
                    "isBase64Encoded": True}
        return _body(200, headers, file.body, file.content_type)

    def _read(self, root: Path, name: str) -> _File | None:
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        stat = path.stat()
        cached = self._cache.get(path)
        if cached and cached.mtime_ns == stat.st_mtime_ns and cached.size == stat.st_size:
            return cached
        body = path.read_bytes()
        if name == INDEX:
            body = self._configure(body)
        ctype = content_type(path.name)
        file = _File(
            body=body,
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            content_type=ctype,
            mtime_ns=stat.st_mtime_ns,
            size=stat.st_size,
            gzipped=gzip.compress(body, 9, mtime=0) if ctype.startswith(TEXT) and len(body) >= COMPRESS_MIN else None,
        )
        self._cache[path] = file
        return file

    def _configure(self, page: bytes) -> bytes:
        """index.html with the page's configuration in its ``<meta name="billing-…">`` tags."""
        text = page.decode("utf-8")
        for name, value in self.config.items():
            text = text.replace(f'<meta name="{name}" content="">',
                                f'<meta name="{name}" content="{html.escape(value, quote=True)}">')
        return text.encode("utf-8")

    def _not_found(self) -> dict[str, Any]:
        return self._text(404, "Not Found")

    def _text(self, status: int, text: str, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
        headers = {**self.headers, "content-type": "text/plain; charset=utf-8", "cache-control": "no-store"}
        headers.update(extra or {})
        return {"statusCode": status, "headers": headers, "body": text + "\n"}


def content_type(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return CONTENT_TYPES.get(suffix, "application/octet-stream")


def _header(event: Mapping[str, Any], name: str) -> str:
    headers = event.get("headers") or {}
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value)
    return ""


def _etag_matches(if_none_match: str, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


def _body(status: int, headers: dict[str, str], body: bytes, ctype: str) -> dict[str, Any]:
    if ctype.startswith(TEXT):
        return {"statusCode": status, "headers": headers, "body": body.decode("utf-8"), "isBase64Encoded": False}
    return {"statusCode": status, "headers": headers, "body": base64.b64encode(body).decode(), "isBase64Encoded": True}


__all__ = ["ASSET_PREFIX", "INDEX", "StaticSite", "content_security_policy", "content_type", "safe_relative"]
