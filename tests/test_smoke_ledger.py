from datetime import UTC, datetime

from billing.domain.events import parse_platform_event
from billing.services.settlement import settle_platform_event

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)


def ev(source, detail_type, **detail):
    return parse_platform_event({"source": source, "detail-type": detail_type, "detail": detail})


def test_stop_settlement_roundtrip(ledger):
    settle_platform_event(ev("platform.accounts", "Account Created", event_id="e0", account_id="a1",
                             occurred_at="2026-03-01T08:00:00Z", email="a@example.com", plan="free"),
                          ledger, NOW)
    settle_platform_event(ev("platform.containers", "Container Started", event_id="e1", account_id="a1",
                             occurred_at="2026-03-10T12:00:00Z", container_id="c1", run_id="r1", tier="small",
                             code_supporter=True), ledger, NOW)
    applied = settle_platform_event(ev("platform.containers", "Container Stopped", event_id="e2", account_id="a1",
                             occurred_at="2026-03-10T14:30:00Z", container_id="c1", run_id="r1",
                             traffic_bytes=0), ledger, NOW)
    # 6.80 x 2.5 h = 17 credits, Code Supporter 1.96 x 2.5 h = 4.9 credits
    assert [e.amount for e in applied.entries] == [21_900_000]
    again = settle_platform_event(ev("platform.containers", "Container Stopped", event_id="e2", account_id="a1",
                             occurred_at="2026-03-10T14:30:00Z", container_id="c1", run_id="r1",
                             traffic_bytes=0), ledger, NOW)
    assert again.duplicate
    state = ledger.load("a1")
    assert state.available() == 50_000_000 - 21_900_000
