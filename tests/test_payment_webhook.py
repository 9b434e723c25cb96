"""The payment webhook against DynamoDB Local: signature, amount, exactly-once confirmation."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from billing.api.signatures import sign
from billing.store.ledger import Ledger
from tests.helpers import C, assert_conserved
from tests.test_account_api import SECRET, Api, FixedClock, snapshot, spend
from tests.test_account_api import api as api
from tests.test_account_api import clock as clock


def notice(purchase_id: str, cents: int = 200, payment_id: str = "pay-1", kind: str = "payment.succeeded") -> str:
    return json.dumps({"id": payment_id, "type": kind, "purchase_id": purchase_id,
                       "amount": {"currency": "USD", "cents": cents}, "created_at": "2026-01-10T09:59:58Z"})


def purchased_lots(ledger: Ledger, account_id: str = "acct-1") -> list[Any]:
    return [lot for lot in ledger.load(account_id).lots if lot.kind == "purchased"]


def test_confirmation_adds_the_credits_once(api: Api, ledger: Ledger) -> None:
    purchase = api.buy(100)
    cycle = ledger.load("acct-1").mail_cycle
    status, body = api.pay(purchase["purchase_id"], 200, payment_id="pay-1")
    assert status == 200, body
    assert body["status"] == "paid" and body["duplicate"] is False
    assert body["lot"]["kind"] == "purchased" and body["lot"]["granted"] == "100.000000"
    assert body["lot"]["expires_at"] is None
    state = ledger.load("acct-1")
    assert state.available() == 150 * C  # 50 monthly + 100 purchased
    assert state.mail_cycle == cycle + 1  # a completed purchase starts a new mail cycle
    assert_conserved(state)
    listed = api.call("GET", "/v1/purchases")[1]["purchases"][0]
    assert (listed["status"], listed["paid_at"]) == ("paid", "2026-01-10T10:00:00Z")
    # the same confirmation again, and another confirmation id for the same purchase
    before = snapshot(ledger)
    again = api.pay(purchase["purchase_id"], 200, payment_id="pay-1")
    other = api.pay(purchase["purchase_id"], 200, payment_id="pay-2")
    assert again[0] == other[0] == 200
    assert again[1]["duplicate"] is True and other[1]["duplicate"] is True
    assert snapshot(ledger) == before
    assert len(purchased_lots(ledger)) == 1


def test_concurrent_confirmations_add_once(api: Api, ledger: Ledger) -> None:
    purchase = api.buy(100)
    results: list[tuple[int, Any]] = []

    def deliver(i: int) -> None:
        results.append(api.pay(purchase["purchase_id"], 200, payment_id=f"pay-{i % 2}"))

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in results] == [200] * 6
    assert sum(1 for r in results if not r[1]["duplicate"]) == 1
    lots = purchased_lots(ledger)
    assert [lot.granted for lot in lots] == [100 * C]
    assert_conserved(ledger.load("acct-1"))


def test_purchase_repays_debt_first(api: Api, ledger: Ledger) -> None:
    spend(ledger, "acct-1", 60 * C, "2026-01-10T09:00:00Z")  # 50 available: 10 of debt
    purchase = api.buy(100)
    assert api.pay(purchase["purchase_id"], 200)[0] == 200
    state = ledger.load("acct-1")
    assert (state.debt, state.exhausted, state.available()) == (0, False, 90 * C)
    assert_conserved(state)


@pytest.mark.parametrize(
    "case",
    ["missing", "wrong_secret", "stale", "future", "malformed", "no_v1", "tampered_body", "not_digits"],
)
def test_bad_signatures_are_401_and_change_nothing(api: Api, ledger: Ledger, clock: FixedClock, case: str) -> None:
    purchase = api.buy(100)
    raw = notice(purchase["purchase_id"])
    now = int(clock().timestamp())
    signature: str | None = {
        "missing": None,
        "wrong_secret": sign(raw, "other-secret", now),
        "stale": sign(raw, SECRET, now - 301),
        "future": sign(raw, SECRET, now + 301),
        "malformed": "garbage",
        "no_v1": f"t={now}",
        "tampered_body": sign(raw.replace("200", "201"), SECRET, now),
        "not_digits": sign(raw, SECRET, now).replace(f"t={now}", "t=abc"),
    }[case]
    before = snapshot(ledger)
    status, body = api.webhook_raw(raw, signature)
    assert status == 401, body
    assert body["error"]["code"] == "unauthorized"
    assert snapshot(ledger) == before


def test_signature_tolerance_is_five_minutes(api: Api, clock: FixedClock) -> None:
    purchase = api.buy(100)
    assert api.pay(purchase["purchase_id"], 200, t=int(clock().timestamp()) - 300)[0] == 200


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("{not json", 400),
        ("[]", 400),
        ('{"id": "p", "type": "payment.succeeded"}', 400),
        ('{"id": "p", "type": "payment.refunded", "purchase_id": "x", "amount": {"currency": "USD", "cents": 1},'
         ' "created_at": "2026-01-10T10:00:00Z"}', 400),
        ('{"id": "p", "type": "payment.succeeded", "purchase_id": "PID", "amount": {"currency": "USD",'
         ' "cents": "200"}, "created_at": "2026-01-10T10:00:00Z"}', 400),
        ('{"id": "p", "type": "payment.succeeded", "purchase_id": "PID", "amount": {"currency": "USD",'
         ' "cents": 200}, "created_at": "yesterday"}', 400),
        ('{"id": "p", "type": "payment.succeeded", "purchase_id": "PID", "amount": {"currency": "USD",'
         ' "cents": 201}, "created_at": "2026-01-10T10:00:00Z"}', 422),
        ('{"id": "p", "type": "payment.succeeded", "purchase_id": "PID", "amount": {"currency": "EUR",'
         ' "cents": 200}, "created_at": "2026-01-10T10:00:00Z"}', 422),
        ('{"id": "p", "type": "payment.succeeded", "purchase_id": "pur_unknown", "amount": {"currency": "USD",'
         ' "cents": 200}, "created_at": "2026-01-10T10:00:00Z"}', 404),
    ],
)
def test_bad_notices_change_nothing(api: Api, ledger: Ledger, clock: FixedClock, raw: str, status: int) -> None:
    purchase = api.buy(100)
    raw = raw.replace("PID", purchase["purchase_id"])
    before = snapshot(ledger)
    got, body = api.webhook_raw(raw, sign(raw, SECRET, int(clock().timestamp())))
    assert got == status, body
    assert snapshot(ledger) == before


def test_failed_payment(api: Api, ledger: Ledger) -> None:
    purchase = api.buy(100)
    status, body = api.pay(purchase["purchase_id"], 200, payment_id="pay-f", kind="payment.failed")
    assert (status, body["status"]) == (200, "failed")
    assert api.call("GET", "/v1/purchases")[1]["purchases"][0]["status"] == "failed"
    assert purchased_lots(ledger) == []
    # a later successful payment of the same purchase still completes it
    assert api.pay(purchase["purchase_id"], 200, payment_id="pay-s")[1]["status"] == "paid"
    # and a late failure notice does not undo it
    status, body = api.pay(purchase["purchase_id"], 200, payment_id="pay-f2", kind="payment.failed")
    assert (status, body["status"], body["duplicate"]) == (200, "paid", True)
    assert [lot.granted for lot in purchased_lots(ledger)] == [100 * C]


def test_odd_purchase_id_is_404(api: Api, ledger: Ledger, clock: FixedClock) -> None:
    raw = notice("x" * 255)
    before = snapshot(ledger)
    assert api.webhook_raw(raw, sign(raw, SECRET, int(clock().timestamp())))[0] == 404
    assert snapshot(ledger) == before
