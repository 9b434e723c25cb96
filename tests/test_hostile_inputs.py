"""Hostile inputs on every HTTP route (issue 9, item 6), through the template's HTTP API
(``local_stack.api_request``: the route, its authorizer and its function as template.yaml wires them).

Every one gets a clear 4xx ``{"error": {"code", "message"}}`` and writes nothing (the whole table is
compared before and after): bodies over 64 KiB, JSON nested deeper than 20 levels, bodies that are
not JSON or not an object, wrong types, unbounded or malformed decimals, a ``sub`` that is not 1 to
255 printable ASCII characters, cursors and Idempotency-Keys that are not ASCII, and forged or
malformed ``Billing-Signature`` headers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing.api.requests import parse_request
from billing.api.routes import ROUTES, Route
from billing.domain.clock import format_time
from localsam.aws import LOCAL_PARAMETERS
from localsam.http_api import ApiResponse
from localsam.runner import StackRunner
from tests.test_effects_faults import items

USER = "hostile-user"
OPERATOR = "arn:aws:iam::123456789012:role/operator"
SECRET = LOCAL_PARAMETERS["PaymentWebhookSecret"]
NOW = datetime.now(UTC).replace(microsecond=0)
FUTURE = format_time(NOW + timedelta(days=30))
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def stack(local_stack: StackRunner) -> StackRunner:
    result = local_stack.put_event("platform.accounts", "Account Created", {
        "event_id": f"{USER}-created", "account_id": USER, "occurred_at": format_time(NOW - timedelta(minutes=1)),
        "email": f"{USER}@example.com", "plan": "free"})
    assert result.ok, result.failures
    local_stack.drain()
    return local_stack


@pytest.fixture(scope="module")
def purchase_id(stack: StackRunner) -> str:
    """A pending purchase of 100 credits (100 x $0.02 = 200 cents) that the webhook tests pay."""
    response = stack.api_request("POST", "/v1/purchases", sub=USER, body={"credits": 100})
    assert response.status == 201, response.body
    assert response.json()["price"] == {"currency": "USD", "amount_minor": 200, "cents": 200}
    return str(response.json()["purchase_id"])


def signature(raw: str | bytes, t: int | str | None = None, secret: str = SECRET) -> str:
    stamp = str(int(time.time()) if t is None else t)
    body = raw if isinstance(raw, bytes) else raw.encode()
    return f"t={stamp},v1=" + hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def call(stack: StackRunner, route: Route, raw: str | bytes | None, purchase: str = "pur_unknown",
         sub: str = USER, headers: dict[str, str] | None = None) -> ApiResponse:
    """The route called as its identity requires: the user's JWT, an operator's IAM principal, or a
    valid Billing-Signature over the raw body (so that the body itself is what is judged)."""
    path = route.path.replace("{purchase_id}", purchase).replace("{alert_id}", "alr_unknown")
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    identity: dict[str, Any] = {}
    if route.auth == "jwt":
        identity["sub"] = sub
    elif route.auth == "iam":
        identity["iam"] = OPERATOR
    elif route.auth == "signature":
        all_headers.setdefault("Billing-Signature", signature(raw or ""))
    return stack.api_request(route.method, path, body=raw, headers=all_headers, **identity)


def refused(response: ApiResponse, status: int, code: str, message: str | None = None) -> dict[str, Any]:
    """A clear JSON error: the status, the code, and a message (containing ``message``)."""
    assert response.status == status, (response.status, response.body)
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) >= {"code", "message"}
    assert error["code"] == code and error["message"]
    if message is not None:
        assert message in error["message"], error["message"]
    return error


WRITES = [r for r in ROUTES if r.method in ("POST", "PUT", "DELETE")]
READS_BODY = [r for r in WRITES if r.body is not None or r.idempotent]  # DELETE /v1/alerts/{id} reads none
WITH_BODY = [r for r in ROUTES if r.body is not None]


def ids(routes: list[Route]) -> list[str]:
    return [r.key for r in routes]


# ------------------------------------------------------------------------------------------- size, depth


@pytest.mark.parametrize("route", READS_BODY, ids=ids(READS_BODY))
def test_a_body_over_64_kib_is_a_400(stack: StackRunner, route: Route) -> None:
    raw = '{"pad": "' + "x" * MAX_BODY + '"}'  # 65,547 bytes
    before = items(stack)
    refused(call(stack, route, raw), 400, "invalid_input", f"larger than {MAX_BODY} bytes")
    assert items(stack) == before


@pytest.mark.parametrize("key", ["PUT /v1/settings", "POST /v1/purchases"])
def test_the_64_kib_limit_counts_utf8_bytes(stack: StackRunner, key: str) -> None:
    route = next(r for r in ROUTES if r.key == key)
    body = {"credit_mail": True} if route.method == "PUT" else {"credits": 100}
    # 40,000 x "é" is 40,000 characters but 80,000 bytes of UTF-8
    raw = json.dumps({**body, "pad": "é" * 40_000}, ensure_ascii=False)
    assert len(raw) < MAX_BODY < len(raw.encode())
    before = items(stack)
    refused(call(stack, route, raw), 400, "invalid_input", "larger than")
    assert items(stack) == before


@pytest.mark.parametrize("depth", [21, 30_000])
@pytest.mark.parametrize("route", WITH_BODY, ids=ids(WITH_BODY))
def test_json_nested_deeper_than_20_levels_is_a_400(stack: StackRunner, route: Route, depth: int) -> None:
    """21 levels, and 30,000 (60,000 bytes: under the size limit; it was a RecursionError, a 500)."""
    raw = "[" * depth + "]" * depth
    before = items(stack)
    refused(call(stack, route, raw), 400, "invalid_input", "nests deeper than 20 levels")
    assert items(stack) == before


def test_twenty_levels_and_brackets_inside_strings_are_not_refused(stack: StackRunner) -> None:
    """The depth is counted on the JSON's structure: 20 levels pass (a purchase ignores the unknown
    field), and brackets inside a string are text."""
    route = next(r for r in ROUTES if r.key == "POST /v1/purchases")
    twenty = '{"credits": 100, "pad": ' + "[" * 19 + "]" * 19 + "}"  # the object + 19 arrays
    assert call(stack, route, twenty).status == 201
    text = json.dumps({"credits": 100, "pad": "[" * 500 + "{" * 500})
    assert call(stack, route, text).status == 201


# ------------------------------------------------------------------------------------------- not JSON


NOT_JSON = [
    ("", "a JSON body is required"),
    ("{", "not valid JSON"),
    ("not json", "not valid JSON"),
    ("\x00\x01", "not valid JSON"),
    ('{"credits": 100,}', "not valid JSON"),
    ("{'credits': 100}", "not valid JSON"),
    (b"\xff\xfe\x00", "not UTF-8"),
    ("[]", "must be a JSON object"),
    ("123", "must be a JSON object"),
    ("null", "must be a JSON object"),
    ('"text"', "must be a JSON object"),
    ("NaN", "must be a JSON object"),
]


NOT_JSON_CASES = [
    pytest.param(route, raw, message, id=f"{route.key}-{raw!r:.20}") for route in WITH_BODY for raw, message in NOT_JSON
]


@pytest.mark.parametrize(("route", "raw", "message"), NOT_JSON_CASES)
def test_a_body_that_is_not_a_json_object_is_a_400(stack: StackRunner, route: Route, raw: str | bytes,
                                                   message: str) -> None:
    before = items(stack)
    refused(call(stack, route, raw), 400, "invalid_input", message)
    assert items(stack) == before


# ------------------------------------------------------------------------------------------- wrong types


def valid_bodies(purchase: str) -> dict[str, dict[str, Any]]:
    return {
        "POST /v1/purchases": {"credits": 100},
        "POST /v1/coupons/redeem": {"code": "NO-SUCH-CODE"},
        "PUT /v1/settings": {"credit_mail": False},
        "POST /v1/alerts": {"kind": "remaining_below", "threshold": "5"},
        "POST /v1/admin/grants": {"account_id": USER, "credits": "5", "kind": "event", "expires_at": FUTURE,
                                  "reason": "hostile"},
        "POST /v1/admin/coupons": {"code": "HOSTILE", "credits": "5", "valid_days": 7, "expires_at": FUTURE,
                                   "max_redemptions": 1},
        "POST /v1/webhooks/payments": {"id": "pay-hostile", "type": "payment.succeeded", "purchase_id": purchase,
                                       "amount": {"currency": "USD", "cents": 200}, "created_at": format_time(NOW)},
    }


TEXT, WHOLE, CREDITS, FLAG = "text", "whole", "credits", "flag"
FIELDS: dict[str, dict[str, str]] = {
    "POST /v1/purchases": {"credits": WHOLE},
    "POST /v1/coupons/redeem": {"code": TEXT},
    "PUT /v1/settings": {"credit_mail": FLAG},
    "POST /v1/alerts": {"kind": TEXT, "threshold": CREDITS},
    "POST /v1/admin/grants": {"account_id": TEXT, "credits": CREDITS, "kind": TEXT, "expires_at": TEXT,
                              "reason": TEXT},
    "POST /v1/admin/coupons": {"code": TEXT, "credits": CREDITS, "valid_days": WHOLE, "expires_at": TEXT,
                               "max_redemptions": WHOLE},
    "POST /v1/webhooks/payments": {"id": TEXT, "type": TEXT, "purchase_id": TEXT, "amount.currency": TEXT,
                                   "amount.cents": WHOLE, "created_at": TEXT},
}
WRONG: dict[str, list[Any]] = {
    TEXT: [5, 1.5, True, None, [], {}],
    WHOLE: ["100", 100.0, 100.5, True, None, [], {}],  # strict JSON: a number sent as text is refused
    CREDITS: [5.5, True, None, [], {}],  # an integer or a decimal string
    FLAG: ["false", 0, 1, None, []],
}
CASES = [(key, name, value) for key, fields in FIELDS.items() for name, kind in fields.items()
         for value in [*WRONG[kind], "<missing>"]
         if not (key == "PUT /v1/settings" and value == "<missing>")]  # every setting is optional


def with_value(body: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(body))
    *parents, leaf = name.split(".")
    target = out
    for parent in parents:
        target = target[parent]
    if value == "<missing>":
        del target[leaf]
    else:
        target[leaf] = value
    return out


@pytest.mark.parametrize(("key", "name", "value"), CASES, ids=[f"{k} {n}={v!r}" for k, n, v in CASES])
def test_a_wrong_type_or_a_missing_field_is_a_400_that_names_it(stack: StackRunner, purchase_id: str, key: str,
                                                                 name: str, value: Any) -> None:
    route = next(r for r in ROUTES if r.key == key)
    raw = json.dumps(with_value(valid_bodies(purchase_id)[key], name, value))
    before = items(stack)
    error = refused(call(stack, route, raw), 400, "invalid_input")
    assert error["message"].startswith(f"{name}: "), error["message"]
    assert items(stack) == before


@pytest.mark.parametrize("key", list(FIELDS))
def test_the_bodies_the_cases_start_from_are_valid(key: str) -> None:
    """Each wrong-type case differs from a body the route's struct accepts in that field alone."""
    route = next(r for r in ROUTES if r.key == key)
    assert route.body is not None
    parse_request(route.body, valid_bodies("pur_unknown")[key])


# ------------------------------------------------------------------------------------------- decimals


GRANTS = ["POST /v1/admin/grants", "POST /v1/admin/coupons"]
# (JSON text of `credits`, status, message): an amount is an integer, or a plain decimal string of at
# most 16 integer digits and exact to the µcr; grants are more than 0 and at most 10^9 credits.
CREDIT_VALUES = [
    ('"1e999999"', 400, "not a credit amount"),
    ('"1E5"', 400, "not a credit amount"),
    ('"NaN"', 400, "not a credit amount"),
    ('"Infinity"', 400, "not a credit amount"),
    ('"123456789012345678901234567890"', 400, "not a credit amount"),  # 30 digits
    ('"0.0000001"', 400, "finer than one micro-credit"),  # 0.1 µcr
    ('"\\uff11\\uff12"', 400, "not a credit amount"),  # fullwidth "12"
    ('" 5"', 400, "not a credit amount"),
    ('"+5"', 400, "not a credit amount"),
    ('"0x10"', 400, "not a credit amount"),
    ('""', 400, "not a credit amount"),
    ('"-0"', 422, "more than 0"),  # -0 credits = 0 µcr: not a grant
    ('"-5"', 422, "more than 0"),
    ('"1000000000.000001"', 422, "at most 1000000000"),  # 10^9 credits + 1 µcr
    ("1e999999", 400, "credits: Expected `int | str`, got `float`"),  # a JSON number beyond a double: inf
    ("NaN", 400, "credits: Expected `int | str`, got `float`"),
    ("-Infinity", 400, "credits: Expected `int | str`, got `float`"),
    ("5.5", 400, "credits: Expected `int | str`, got `float`"),
    ("123456789012345678901234567890", 400, "out of range"),  # above 10^15 credits
    ("-0", 422, "more than 0"),
    ("0", 422, "more than 0"),
    ("1000000001", 422, "at most 1000000000"),
]


@pytest.mark.parametrize(("literal", "status", "message"), CREDIT_VALUES, ids=[c[0] for c in CREDIT_VALUES])
@pytest.mark.parametrize("key", GRANTS)
def test_credit_amounts_are_parsed_bounded(stack: StackRunner, purchase_id: str, key: str, literal: str,
                                           status: int, message: str) -> None:
    route = next(r for r in ROUTES if r.key == key)
    raw = json.dumps(valid_bodies(purchase_id)[key]).replace('"credits": "5"', f'"credits": {literal}')
    assert literal in raw
    before = items(stack)
    refused(call(stack, route, raw), status, "invalid_input" if status == 400 else "not_allowed", message)
    assert items(stack) == before


# (JSON text of a whole number field, status): JSON numbers beyond a double, NaN, 30 digits.
WHOLE_VALUES = [("1e999999", 400), ("NaN", 400), ("Infinity", 400), ("-0", 422),
                ("123456789012345678901234567890", 422)]


@pytest.mark.parametrize(("literal", "status"), WHOLE_VALUES, ids=[w[0] for w in WHOLE_VALUES])
@pytest.mark.parametrize(("key", "field", "example"), [
    ("POST /v1/purchases", "credits", "100"),  # whole credits from 50 to 1,000,000: -0 and 10^29 are 422
    ("POST /v1/admin/coupons", "valid_days", "7"),  # 1 to 3650 days
    ("POST /v1/webhooks/payments", "cents", "200"),  # the purchase's price, 200: anything else is 422
])
def test_whole_numbers_are_bounded(stack: StackRunner, purchase_id: str, key: str, field: str, example: str,
                                   literal: str, status: int) -> None:
    route = next(r for r in ROUTES if r.key == key)
    raw = json.dumps(valid_bodies(purchase_id)[key]).replace(f'"{field}": {example}', f'"{field}": {literal}')
    assert literal in raw
    before = items(stack)
    refused(call(stack, route, raw), status, "invalid_input" if status == 400 else "not_allowed")
    assert items(stack) == before


# ------------------------------------------------------------------------------------------- identity


JWT_ROUTES = [r for r in ROUTES if r.auth == "jwt"]
BAD_SUBS = [("256 characters", "a" * 256), ("2,000 characters", "x" * 2000), ("NUL", "acct\x00"),
            ("newline", "acct\nx"), ("DEL", "acct\x7f"), ("tab", "acct\tx"), ("zero-width space", "acct\u200b")]


@pytest.mark.parametrize(("what", "sub"), BAD_SUBS, ids=[b[0] for b in BAD_SUBS])
@pytest.mark.parametrize("route", JWT_ROUTES, ids=ids(JWT_ROUTES))
def test_a_sub_that_is_not_1_to_255_printable_characters_is_a_401(stack: StackRunner, route: Route, what: str,
                                                                   sub: str) -> None:
    before = items(stack)
    body = None if route.method == "GET" else json.dumps(valid_bodies("pur_unknown").get(route.key, {}))
    refused(call(stack, route, body, sub=sub), 401, "unauthorized", "255")
    assert items(stack) == before


def test_a_sub_of_255_characters_is_an_account_id(stack: StackRunner) -> None:
    response = stack.api_request("GET", "/v1/balance", sub="a" * 255)
    refused(response, 404, "unknown_account")  # accepted as the caller; no such account


@pytest.mark.parametrize("sub", ["acct-é", "账户", "ａｃｃｔ"])
def test_a_non_ascii_sub_is_a_401(stack: StackRunner, sub: str) -> None:
    refused(stack.api_request("GET", "/v1/balance", sub=sub), 401, "unauthorized")


# ------------------------------------------------------------------------------------------- cursors, keys


BAD_CURSORS = ["é.abc", "\U0001f600", "\x00", "ａ.ｂ", "eyJhIjoxfQ.deadbeef", "a" * 2049, "..", "%%%"]


@pytest.mark.parametrize("cursor", BAD_CURSORS, ids=[repr(c)[:16] for c in BAD_CURSORS])
@pytest.mark.parametrize(("path", "query"),
                         [("/v1/usage/ai", {}), ("/v1/ledger", {}), ("/v1/ledger", {"format": "csv"})],
                         ids=["ai", "ledger", "ledger csv"])
def test_a_foreign_or_non_ascii_cursor_is_a_400(stack: StackRunner, path: str, query: dict[str, str],
                                                cursor: str) -> None:
    response = stack.api_request("GET", path, sub=USER, query={**query, "cursor": cursor})
    refused(response, 400, "invalid_input", "cursor")


IDEMPOTENT = [r for r in ROUTES if r.idempotent]
BAD_KEYS = ["é", "k" * 256, "key with spaces", "key\x00", "\U0001f600"]


@pytest.mark.parametrize("key", BAD_KEYS, ids=[repr(k)[:16] for k in BAD_KEYS])
@pytest.mark.parametrize("route", IDEMPOTENT, ids=ids(IDEMPOTENT))
def test_an_idempotency_key_that_is_not_printable_ascii_is_a_400(stack: StackRunner, route: Route, key: str) -> None:
    body = json.dumps(valid_bodies("pur_unknown").get(route.key, {}))
    before = items(stack)
    refused(call(stack, route, body, headers={"Idempotency-Key": key}), 400, "invalid_input", "Idempotency-Key")
    assert items(stack) == before


@pytest.mark.parametrize("month", ["\uff12\uff10\uff12\uff16-\uff11\uff11", "\u0662\u0660\u0662\u0666-\u0661\u0661"])
def test_a_month_in_non_ascii_digits_is_a_400(stack: StackRunner, month: str) -> None:
    refused(stack.api_request("GET", "/v1/usage", sub=USER, query={"month": month}), 400, "invalid_input")


# ------------------------------------------------------------------------------------------- signatures


def fullwidth(digits: str) -> str:
    return digits.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})


def signature_cases(raw: str) -> list[tuple[str, str | None, str]]:
    """(case, Billing-Signature, the 401's message) for a notice ``raw``."""
    t = int(time.time())
    good = signature(raw, t)
    mac = good.split("v1=")[1]
    return [
        ("missing", None, "missing Billing-Signature"),
        ("superscript digits", f"t=\u00b9\u00b2\u00b3,v1={mac}", "malformed"),  # '¹²³'.isdigit() is True
        ("fullwidth digits", signature(raw, fullwidth(str(t))), "malformed"),
        ("arabic-indic digits", f"t={str(t).translate({ord(d): 0x0660 + int(d) for d in '0123456789'})},v1={mac}",
         "malformed"),
        ("empty t", f"t=,v1={mac}", "malformed"),
        ("negative t", signature(raw, -t), "malformed"),
        ("t with an exponent", f"t=1e9,v1={mac}", "malformed"),
        ("13-digit t", signature(raw, "1" * 13), "malformed"),
        ("no v1", f"t={t}", "malformed"),
        ("v1 of 63 hex", f"t={t},v1={mac[:-1]}", "malformed"),
        ("v1 of 65 hex", f"t={t},v1={mac}0", "malformed"),
        ("v1 in upper case", f"t={t},v1={mac.upper()}", "malformed"),
        ("v1 not ASCII", f"t={t},v1=\u00e9{mac[1:]}", "malformed"),
        ("v1 in fullwidth hex", f"t={t},v1={fullwidth(mac[:10])}{mac[10:]}", "malformed"),
        ("over 2,000 characters", good + ",v1=" + "0" * 2000, "malformed"),
        ("301 s old", signature(raw, t - 301), "outside the tolerance"),
        ("301 s ahead", signature(raw, t + 301), "outside the tolerance"),
        ("another secret", signature(raw, t, secret="another-secret-0123456789"), "wrong Billing-Signature"),
        ("another body", signature(raw.replace("200", "201"), t), "wrong Billing-Signature"),
    ]


CASE_NAMES = [c[0] for c in signature_cases("{}")]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_a_forged_or_malformed_signature_is_a_401(stack: StackRunner, purchase_id: str, case: str) -> None:
    route = next(r for r in ROUTES if r.auth == "signature")
    raw = json.dumps(valid_bodies(purchase_id)[route.key])
    [(_, header, message)] = [c for c in signature_cases(raw) if c[0] == case]
    before = items(stack)
    if header is None:
        response = stack.api_request("POST", route.path, body=raw, headers={"Content-Type": "application/json"})
    else:
        response = call(stack, route, raw, headers={"Billing-Signature": header})
    refused(response, 401, "unauthorized", message)
    assert items(stack) == before


def test_a_body_that_is_not_utf8_is_refused_before_any_signature(stack: StackRunner) -> None:
    before = items(stack)
    response = stack.api_request("POST", "/v1/webhooks/payments", body=b"\xff\xfe\x00",
                                 headers={"Content-Type": "application/json"})
    refused(response, 400, "invalid_input", "not UTF-8")
    assert items(stack) == before


def test_the_same_notice_correctly_signed_is_applied_once(stack: StackRunner, purchase_id: str) -> None:
    """The notice the forgeries carried was valid: signed with the secret now, it pays the purchase
    (50 free + 100 purchased = 150 credits), and a second delivery is a duplicate."""
    route = next(r for r in ROUTES if r.auth == "signature")
    raw = json.dumps({**valid_bodies(purchase_id)[route.key], "id": "pay-hostile-ok"})
    response = call(stack, route, raw)
    assert response.status == 200, response.body
    assert (response.json()["status"], response.json()["duplicate"]) == ("paid", False)
    again = call(stack, route, raw)
    assert again.status == 200 and again.json()["duplicate"] is True
    balance = stack.api_request("GET", "/v1/balance", sub=USER).json()
    assert (balance["free"], balance["purchased"]) == ("50.000000", "100.000000")
