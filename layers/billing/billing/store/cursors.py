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

    A cursor altered in any byte, or issued to another account, is refused with a 400.
    """

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _sign(self, account_id: str, payload: bytes) -> str:
        return hmac.new(self._key, account_id.encode() + b"\0" + payload, hashlib.sha256).hexdigest()[:32]

    def encode(self, account_id: str, key: dict[str, Any] | None) -> str | None:
        if not key:
            return None
        payload = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
        token = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{token}.{self._sign(account_id, payload)}"

    def decode(self, account_id: str, cursor: str | None) -> dict[str, Any] | None:
        if not cursor:
            return None
        try:
            token, signature = cursor.split(".", 1)
            payload = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            key = json.loads(payload)
        except (ValueError, TypeError):
            raise InvalidInput("invalid cursor") from None
        if not hmac.compare_digest(signature, self._sign(account_id, payload)) or not isinstance(key, dict):
            raise InvalidInput("invalid cursor")
        return key
