"""gzip for the API's answers. template.yaml's API is an HTTP API (``AWS::Serverless::HttpApi``), which,
unlike a REST API (``MinimumCompressionSize``), compresses nothing: a usage report of a few MB went
out as it was. So the handler compresses: when the request's ``Accept-Encoding`` takes gzip and the
answer is text (JSON, CSV) of at least :data:`MIN_BYTES`, the body is gzipped and sent base64-encoded
(``isBase64Encoded``, which API Gateway decodes into the bytes it sends) with ``Content-Encoding: gzip``.
Such answers also carry ``Vary: Accept-Encoding``, compressed or not, so a cache keeps both forms apart.

A smaller answer is not worth the header and the CPU; an answer already encoded (base64, or a
``Content-Encoding`` of its own) is left alone; so is one whose compressed form would not be smaller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MIN_BYTES = 1024  # below about one packet, gzip saves nothing worth its header and its CPU
LEVEL = 6  # zlib's default: most of level 9's gain on JSON for a third of its time
COMPRESSIBLE = ("application/json", "text/")


def header(headers: Mapping[str, Any] | None, name: str) -> str:
    """A header's value by its lower-case ``name`` (names are case-insensitive), "" when absent."""
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value takes gzip: ``gzip`` or ``*`` listed with a q above 0
    (RFC 9110 12.5.3; ``gzip;q=0`` refuses it)."""
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        q = params.strip().lower()
        if q.startswith("q="):
            try:
                return float(q[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def compress_response(response: dict[str, Any], request_headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The handler's payload-2.0 ``response``, gzipped when the request takes gzip and it is worth it."""
    headers = response.get("headers")
    body = response.get("body")
    if not isinstance(headers, dict) or not isinstance(body, str) or response.get("isBase64Encoded"):
        return response
    if header(headers, "content-encoding") or not header(headers, "content-type").startswith(COMPRESSIBLE):
        return response
    raw = body.encode()
    if len(raw) < MIN_BYTES:
        return response
    vary = [headers.pop(k) for k in [k for k in headers if k.lower() == "vary"]]
    headers["Vary"] = ", ".join([*vary, "Accept-Encoding"])
    if not accepts_gzip(header(request_headers, "accept-encoding")):
        return response
    import base64
    import gzip  # only when an answer is compressed: nothing at cold start

    encoded = base64.b64encode(gzip.compress(raw, LEVEL, mtime=0)).decode()
    if len(encoded) >= len(raw):
        return response
    headers["Content-Encoding"] = "gzip"
    return {**response, "body": encoded, "isBase64Encoded": True}
