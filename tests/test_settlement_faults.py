"""Concurrency and injected faults. DynamoDB Local never throttles nor raises
TransactionConflict, so the faults are injected into the botocore clients PynamoDB uses."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from billing.domain.errors import ServiceBusy
from billing.store.ledger import Ledger
from tests.helpers import C, Platform, assert_conserved


def clients(ledger: Ledger) -> list[Any]:
    """The botocore clients behind the ledger's reads and its transactions."""
    return [ledger.models.Account._get_connection().connection.client, ledger.models.connection.client]


@contextmanager
def inject(ledger: Ledger, operation: str, fault: Callable[[], Exception], when: str = "before",
           times: int = 1) -> Iterator[list[int]]:
    """Raise ``fault()`` at the first ``times`` calls of ``operation``, before or after the call."""
    fired = [0]

    def hook(**_: Any) -> None:
        if fired[0] < times:
            fired[0] += 1
            raise fault()

    event = f"{'before' if when == 'before' else 'after'}-call.dynamodb.{operation}"
    for client in clients(ledger):
        client.meta.events.register(event, hook, unique_id=f"fault-{operation}-{when}")
    try:
        yield fired
    finally:
        for client in clients(ledger):
            client.meta.events.unregister(event, unique_id=f"fault-{operation}-{when}")


def throttled() -> Exception:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "x")


def provisioned() -> Exception:
    return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "x")


def conflict() -> Exception:
    return ClientError(
        {"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
         "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}]},
        "TransactWriteItems",
    )


def timeout() -> Exception:
    return ReadTimeoutError(endpoint_url="http://dynamodb")


def prepare(ledger: Ledger) -> Platform:
    p = Platform(ledger)
    p.send("Account Created", "2026-03-01T00:00:00Z", email="dev@example.com", plan="membership")
    p.send("Container Started", "2026-03-02T10:00:00Z", container_id="c1", run_id="r1", tier="small",
           code_supporter=False)
    return p


def stop(p: Platform) -> dict[str, Any]:
    return p.send("Container Stopped", "2026-03-02T12:00:00Z", event_id="stop-1", container_id="c1",
                  run_id="r1", traffic_bytes=0)


EXPECTED_AVAILABLE = 1000 * C - 13_600_000  # small 6.80 x 2 h


@pytest.mark.parametrize(
    ("operation", "fault", "when"),
    [
        ("BatchGetItem", throttled, "before"),
        ("BatchGetItem", timeout, "before"),
        ("BatchGetItem", timeout, "after"),
        ("TransactWriteItems", conflict, "before"),
        ("TransactWriteItems", provisioned, "before"),
        ("TransactWriteItems", throttled, "before"),
        ("TransactWriteItems", timeout, "before"),
        ("TransactWriteItems", timeout, "after"),  # committed, but the caller never heard
    ],
)
def test_a_fault_leaves_all_or_nothing_and_the_retry_completes(ledger, operation, fault, when):
    p = prepare(ledger)
    with inject(ledger, operation, fault, when) as fired:
        stop(p)
    assert fired[0] == 1
    state = p.state()
    assert state.available() == EXPECTED_AVAILABLE
    assert [e.amount for e in p.entries() if e.type == "deduction"] == [13_600_000]
    assert_conserved(state)
    # Delivered again (EventBridge retries a failed invocation): still charged once.
    stop(p)
    assert p.state().available() == EXPECTED_AVAILABLE


def test_persistent_faults_fail_the_invocation_and_write_nothing(ledger):
    p = prepare(ledger)
    before = p.state()
    # Throttling through every attempt: the invocation fails as busy (the trigger retries it later).
    with inject(ledger, "TransactWriteItems", throttled, times=100), pytest.raises(ServiceBusy):
        stop(p)
    after = p.state()
    assert after.version == before.version and after.totals == before.totals
    stop(p)  # the platform's retry completes it
    assert p.state().available() == EXPECTED_AVAILABLE


def test_twenty_concurrent_settlements_on_one_account_end_exact(table_name, catalog):
    ledger = Ledger(table_name=table_name, catalog=catalog, max_attempts=200)
    p = Platform(ledger)
    p.send("Account Created", "2026-03-01T00:00:00Z", email="dev@example.com", plan="membership")
    for i in range(20):
        p.send("Container Started", "2026-03-02T10:00:00Z", container_id=f"c{i}", run_id=f"r{i}", tier="micro",
               code_supporter=False)
    errors: list[BaseException] = []

    def stop_one(i: int) -> None:
        try:
            Platform(ledger).send("Container Stopped", "2026-03-02T11:00:00Z", event_id=f"stop-{i}",
                                  container_id=f"c{i}", run_id=f"r{i}", traffic_bytes=0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=stop_one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    state = p.state()
    # 20 runs of 1 h micro at 1.96 credits = 39.2 credits
    assert state.totals.charged == 20 * 1_960_000
    assert state.available() == 1000 * C - 39_200_000
    assert len([e for e in p.entries() if e.type == "deduction"]) == 20
    assert all(not p.container(f"c{i}").runs for i in range(20))
    assert_conserved(state)
