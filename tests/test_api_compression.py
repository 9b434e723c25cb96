"""The API's answers gzipped when the client takes gzip (billing/api/compression.py): template.yaml's
HTTP API compresses nothing itself. Through UsageApiFunction's handler, as API Gateway invokes it.

The account: one container, a small run Mar 2 10:00-12:00, so that a month by the day is a JSON
answer of 31 points (well over the 1,024-byte threshold) and the balance a small one.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from billing.api.compression import MIN_BYTES
from billing.store.cursors import CursorCodec
from billing.store.ledger import Ledger
from tests.api_helpers import FakeContext, api_event
from tests.helpers import Platform, load_handler

NOW = datetime(2026, 3, 31, 12, tzinfo=UTC)
MONTH = {"from": "2026-03-01", "to": "2026-03-31", "cumulative": "false"}


@pytest.fixture(scope="module")
def api(module_ledger: Ledger) -> Any:
    p = Platform(module_ledger, "acct-z")
    p.send("Account Created", "2026-03-01T00:00:00Z", email="z@example.com", plan="membership")
    p.send("Container Created", "2026-03-02T00:00:00Z", container_id="c1", storage_gb=5)
    p.send("Container Started", "2026-03-02T10:00:00Z", container_id="c1", run_id="r1", tier="small")
    p.send("Container Stopped", "2026-03-02T12:00:00Z", container_id="c1", run_id="r1", traffic_bytes=0)
    return load_handler("usage_api", ledger=module_ledger, cursor_codec=CursorCodec("s"), clock=lambda: NOW)


def get(api: Any, path: str, query: dict[str, str], accept_encoding: str | None) -> dict[str, Any]:
    event = api_event(path, query, sub="acct-z")
    if accept_encoding is not None:
        event["headers"]["accept-encoding"] = accept_encoding
    response: dict[str, Any] = api.lambda_handler(event, FakeContext())
    response["headers"] = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return response


def test_a_large_answer_is_gzipped_for_a_client_that_takes_gzip(api: Any) -> None:
    plain = get(api, "/v1/usage", MONTH, None)
    assert plain["statusCode"] == 200 and not plain.get("isBase64Encoded")
    assert "content-encoding" not in plain["headers"]
    assert plain["headers"]["vary"] == "Accept-Encoding"  # a cache must keep both forms apart
    raw = plain["body"].encode()
    assert len(raw) >= MIN_BYTES and len(json.loads(raw)["series"]) == 31

    zipped = get(api, "/v1/usage", MONTH, "gzip, deflate, br")  # what a browser sends
    assert zipped["statusCode"] == 200 and zipped["isBase64Encoded"] is True
    assert zipped["headers"]["content-encoding"] == "gzip"
    assert zipped["headers"]["content-type"] == "application/json"
    assert zipped["headers"]["vary"] == "Accept-Encoding"
    body = base64.b64decode(zipped["body"])
    assert gzip.decompress(body) == raw  # the same answer, byte for byte
    # 31 near-identical points compress several times over, base64 (4/3) included
    assert len(zipped["body"]) * 3 < len(raw)


def test_a_csv_answer_is_gzipped_too(api: Any) -> None:
    plain = get(api, "/v1/usage.csv", {**MONTH, "granularity": "hour"}, None)
    zipped = get(api, "/v1/usage.csv", {**MONTH, "granularity": "hour"}, "gzip")
    assert plain["statusCode"] == zipped["statusCode"] == 200
    assert len(plain["body"].encode()) >= MIN_BYTES  # 31 x 24 hours: a row each
    assert zipped["headers"]["content-encoding"] == "gzip" and zipped["headers"]["content-type"] == "text/csv"
    assert zipped["headers"]["content-disposition"] == 'attachment; filename="usage.csv"'
    assert gzip.decompress(base64.b64decode(zipped["body"])).decode() == plain["body"]


@pytest.mark.parametrize("accept_encoding", ["gzip;q=0", "identity", "br", "deflate", "", "GZIP;q=0.0, br"])
def test_a_client_that_does_not_take_gzip_gets_the_plain_answer(api: Any, accept_encoding: str) -> None:
    response = get(api, "/v1/usage", MONTH, accept_encoding)
    assert response["statusCode"] == 200 and not response.get("isBase64Encoded")
    assert "content-encoding" not in response["headers"]
    assert len(json.loads(response["body"])["series"]) == 31


@pytest.mark.parametrize("accept_encoding", ["GZIP", "br;q=1.0, gzip;q=0.8", "*", "deflate, *;q=0.1"])
def test_gzip_taken_however_the_client_says_it(api: Any, accept_encoding: str) -> None:
    response = get(api, "/v1/usage", MONTH, accept_encoding)
    assert response["headers"]["content-encoding"] == "gzip" and response["isBase64Encoded"] is True


def test_a_small_answer_or_an_error_is_left_plain(api: Any) -> None:
    balance = get(api, "/v1/balance", {}, "gzip")
    assert balance["statusCode"] == 200 and len(balance["body"].encode()) < MIN_BYTES
    assert "content-encoding" not in balance["headers"] and "vary" not in balance["headers"]
    assert json.loads(balance["body"])["account_id"] == "acct-z"
    refused = get(api, "/v1/usage", {"granularity": "minute"}, "gzip")
    assert refused["statusCode"] == 400 and "content-encoding" not in refused["headers"]
    assert json.loads(refused["body"])["error"]["message"].startswith("granularity")
