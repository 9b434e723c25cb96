"""Opaque paging cursors: a page key of :mod:`billing.store.queries`, bound to one account and
signed (HMAC-SHA256), so that a client can neither forge nor reuse one for another account."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from billing.domain.errors import InvalidInput


class CursorCodec:
    """Opaque paging cursors: the DynamoDB key, bound to one account and signed (HMAC-SHA256).

    A cursor altered in any byte, or issued to another account, is refused with a 400. The first
    secret signs; every secret given verifies (two during a rotation).
    """

    def __init__(self, secret: str | list[str]) -> None:
        secrets = [secret] if isinstance(secret, str) else secret
        self._keys = [s.encode() for s in secrets]

    @staticmethod
    def _sign(key: bytes, account_id: str, payload: bytes) -> bytes:
        return hmac.new(key, account_id.encode() + b"\0" + payload, hashlib.sha256).hexdigest()[:32].encode()

    def encode(self, account_id: str, key: dict[str, Any] | None) -> str | None:
        if not key:
            return None
        payload = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
        token = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{token}.{self._sign(self._keys[0], account_id, payload).decode()}"

    def decode(self, account_id: str, cursor: str | None) -> dict[str, Any] | None:
        if not cursor:
            return None
        try:
            token, signature = cursor.encode("ascii").split(b".", 1)
            payload = base64.urlsafe_b64decode(token + b"=" * (-len(token) % 4))
            key = json.loads(payload)
        except (ValueError, TypeError, UnicodeError, RecursionError):
            raise InvalidInput("invalid cursor") from None
        signed = any(hmac.compare_digest(signature, self._sign(k, account_id, payload)) for k in self._keys)
        if not signed or not isinstance(key, dict):
            raise InvalidInput("invalid cursor")
        return key
