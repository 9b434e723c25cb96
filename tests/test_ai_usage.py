"""AI usage settlement: one line per use at the model's token prices, rounded once half-up,
idempotent by event_id; an unknown model or negative tokens writes nothing and fails the invocation
(so the event lands in the dead-letter queue)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from billing.domain.catalog import PriceCatalog
from billing.domain.clock import parse_time
from billing.domain.errors import InvalidInput, UnknownPriceItem
from billing.store.keys import account_pk
from billing.store.ledger import Ledger
from tests.api_helpers import FakeContext
from tests.helpers import ROOT, Platform, load_handler


def handle(event: Any, ledger: Ledger, publisher: Any) -> Any:
    """As the template routes an AI event: the intake function, then settlement from the queue."""
    return Platform(ledger, event["detail"]["account_id"]).deliver(event)


SAMPLES = ROOT / "events" / "platform_events"


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def items(ledger: Ledger, account: str) -> list[str]:
    m = ledger.models
    return sorted(i.sk for i in m.Entry.query(account_pk(account)))


@pytest.fixture()
def account(ledger: Ledger) -> Platform:
    p = Platform(ledger, "acct-sample")
    p.send("Account Created", "2026-11-01T00:00:00Z", email="s@example.com", plan="membership")
    return p


def test_samples_settle_at_token_prices(account: Platform) -> None:
    ledger = account.ledger
    results = {}
    for name in ("chat.json", "snap.json", "ai-supporter.json"):
        handle(sample(name), ledger, account.publisher)
        entries = [e for e in account.entries() if e.type == "deduction"]
        results[name] = entries[-1]
    chat = results["chat.json"]
    # claude-haiku-4.5: 1200 x 0.00008 + 350 x 0.0004 = 0.096 + 0.14 = 0.236 credits
    assert chat.amount == 236_000
    assert [(ln.resource, ln.item, ln.model, ln.input_tokens, ln.output_tokens, ln.container_id)
            for ln in chat.lines] == [("ai", "chat", "claude-haiku-4.5", 1200, 350, "c-sample")]
    # gpt-5-mini: 10000 x 0.00002 + 2000 x 0.00016 = 0.2 + 0.32
    assert results["snap.json"].amount == 520_000
    # claude-sonnet-4.5: 800 x 0.00024 + 400 x 0.0012 = 0.192 + 0.48
    assert results["ai-supporter.json"].amount == 672_000
    state = account.state()
    assert state.available() == 1000_000_000 - 236_000 - 520_000 - 672_000


def test_same_event_twice_is_charged_once(account: Platform) -> None:
    first = handle(sample("chat.json"), account.ledger, account.publisher)
    again = handle(sample("chat.json"), account.ledger, account.publisher)
    assert first["duplicate"] is False and again["duplicate"] is True
    assert len([e for e in account.entries() if e.type == "deduction"]) == 1


def test_one_line_rounded_once_half_up(ledger: Ledger, catalog: PriceCatalog) -> None:
    data = json.loads((ROOT / "layers/billing/billing/domain/prices/default.json").read_text())
    data["versions"][0]["ai_models"]["half-model"] = {"input": "0.0000005", "output": "0.0000001"}
    custom = PriceCatalog.from_json(json.dumps(data))
    led = Ledger(table_name=ledger.models.table_name, catalog=custom, sleep=lambda _: None)
    p = Platform(led, "acct-r")
    p.send("Account Created", "2026-11-01T00:00:00Z", email="r@example.com", plan="free")
    event = p.event("AI Usage Recorded", "2026-11-02T10:00:00Z", feature="snap", model="half-model",
                    input_tokens=3, output_tokens=0)
    handle(event, led, p.publisher)
    # 3 x 0.0000005 = 0.0000015 credits = 1.5 µcr -> 2 (half-up, once for the whole use)
    assert [e.amount for e in p.entries() if e.type == "deduction"] == [2]
    event = p.event("AI Usage Recorded", "2026-11-02T10:01:00Z", feature="snap", model="half-model",
                    input_tokens=1, output_tokens=2)
    handle(event, led, p.publisher)
    # 0.5 + 0.2 = 0.7 µcr -> 1 (per-token rounding would give 1 + 0 + 0)
    assert [e.amount for e in p.entries() if e.type == "deduction"] == [2, 1]


@pytest.mark.parametrize(("name", "error"), [("invalid-unknown-model.json", UnknownPriceItem),
                                             ("invalid-negative-tokens.json", InvalidInput)])
def test_invalid_samples_write_nothing_and_raise(account: Platform, name: str, error: type) -> None:
    before = items(account.ledger, "acct-sample")
    version = account.state().version
    # The sample is processed when it happens (a dated sample must be checked on any day).
    happened = parse_time(sample(name)["detail"]["occurred_at"])
    handler = load_handler("platform_events", clock=lambda: happened)
    with pytest.raises(error):
        handler.lambda_handler(sample(name), FakeContext(function_name="platform-events"))
    # The handler built its own Ledger from TABLE_NAME: the same table as the fixture's.
    assert items(account.ledger, "acct-sample") == before
    assert account.state().version == version
    assert account.ledger.stored("acct-sample", sample(name)["detail"]["event_id"]) is None


def test_other_sources_and_unknown_accounts_are_rejected(account: Platform) -> None:
    strange = sample("chat.json")
    strange["source"] = "platform.billing"
    with pytest.raises(InvalidInput, match="unsupported event"):
        handle(strange, account.ledger, account.publisher)
    stranger = sample("chat.json")
    stranger["detail"]["account_id"] = "acct-nobody"
    with pytest.raises(Exception, match="no account"):
        handle(stranger, account.ledger, account.publisher)


def test_usage_api_samples_are_payload_v2_with_the_sample_account() -> None:
    names = sorted(p.name for p in (ROOT / "events/usage_api").glob("*.json"))
    assert any(n.startswith("invalid-") for n in names)
    for path in (ROOT / "events/usage_api").glob("*.json"):
        event = json.loads(path.read_text())
        assert event["version"] == "2.0"
        assert event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "acct-sample"
        assert event["routeKey"] == f"GET {event['rawPath']}"


def test_sample_files_exist() -> None:
    assert {p.name for p in SAMPLES.glob("*.json")} >= {
        "chat.json", "snap.json", "ai-supporter.json", "invalid-unknown-model.json", "invalid-negative-tokens.json"}
    assert isinstance(Path, type)
