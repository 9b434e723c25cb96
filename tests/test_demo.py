"""The README's run command: the demonstration runs on the local stack and leaves its chart."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from billing.domain.clock import format_time, utc_now
from tests.travel import TEST_NOW

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_statements_and_writes_the_chart(tmp_path: Path) -> None:
    # Through tests.travel: under BILLING_TEST_NOW the demo runs at the date the suite runs at. The
    # demo places what its accounts do so that the figures below hold on any day of any year.
    result = subprocess.run(
        [sys.executable, "-m", "tests.travel", "localsam.demo", "--out", str(tmp_path), "--no-serve"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, **({TEST_NOW: format_time(utc_now())} if os.environ.get(TEST_NOW) else {})},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for account in ("alice", "bob", "carol", "dave", "erin", "studio"):
        assert f"{account}  (" in out
        assert (tmp_path / f"ledger-{account}.csv").read_text().startswith("entry_id,")
    # carol ran out: the mail, the final settlement's requests and the purchase that cleared it
    assert "Low Balance Notified" in out and "Credits Exhausted" in out and "Stop Containers Requested" in out
    assert "to {'ToAddresses': ['carol@example.com']}: Your credits are running low" in out
    assert "Refund Issued" in out
    # dave: auto top-up saved him. 4 runs of 1.5 h large = 4 x 40.80 = 163.20 credits against 50 free:
    # each time his remaining credits fell below 50 an auto purchase of 100 was requested and paid
    # (after runs 1 and 3: 50 - 40.8 = 9.2, then 109.2 - 2 x 40.8 = 27.6), so he never ran out.
    dave = out.split("dave  (")[1].split("\n" + "-" * 78)[1]
    assert "debt            0.000000" in dave and "exhausted: False" in dave
    assert dave.count("(auto top-up)") == 2 and dave.count("paid (auto top-up)") == 2
    assert out.count("Auto Top-up Requested") >= 2
    # erin: her 40-credit cap stopped her long run (27.2 credits an hour: 40 are reached after
    # 1 h 28 min; the check at 1 h 30 min asks to stop it), and she keeps her credits.
    erin = out.split("erin  (")[1].split("\n" + "-" * 78)[1]
    assert "Spend Cap Reached" in out and "spend cap 40" in erin
    assert "debt            0.000000" in erin
    mails = sorted(p.name for p in (tmp_path / "mails").glob("*.html"))
    assert any(m.startswith("erin-spend_cap_reached-") for m in mails)
    assert any(m.startswith("carol-low_balance-") for m in mails)
    assert any(m.startswith("bob-alert_triggered-") for m in mails)
    text = next((tmp_path / "mails").glob("erin-spend_cap_reached-*.txt")).read_text()
    assert "To: erin@example.com" in text and "40" in text
    # frank pays by card through the Stripe stand-in: 100 credits x $0.02 = 200 cents, confirmed by its
    # signed webhook; then an auto top-up charged off-session: 50 free + 100 + 100 = 250 credits
    stripe_part = out.split("payments through Stripe")[1]
    assert "frank buys 100 credits: {'currency': 'USD', 'amount_minor': 200, 'cents': 200}" in stripe_part
    assert "card 4242 confirmed: succeeded" in stripe_part
    assert "payment_intent.succeeded delivered and verified: paid, receipt {'number': 'R-" in stripe_part
    assert "charged off-session by the outbox, confirmed by the webhook: pur_auto_" in stripe_part
    assert "frank's balance: 250.000000 available (200.000000 purchased)" in stripe_part
    # a dashboard refund of the first purchase (all 100 unused) takes them back: 250 - 100 = 150; a
    # dispute of the auto top-up's charge takes its 100 back (50), and the dispute won returns them (150)
    assert "refunded in Stripe's dashboard (re_" in stripe_part
    assert "200 cents): charge.refunded refunded, balance 150.000000 available" in stripe_part
    assert "Payment Disputed 100.000000 credits taken back, balance 50.000000 available" in stripe_part
    assert "the dispute is won: the credits return, balance 150.000000 available" in stripe_part
    assert "reconciliation: 1 accounts checked, 0 differences" in stripe_part
    # studio, a team: mia's limit of 20 credits stopped her large run alone (20 / 27.20 h = 44 min 8 s;
    # the check at 50 min settles 50 min of large = 22.666667 and asks to stop studio-mia), max's went on.
    assert '"reason": "member_limit", "user_id": "mia"' in out and "Member Limit Reached" in out
    assert '"container_ids": ["studio-mia"]' in out and '"container_ids": ["studio-max"]' not in out
    members = out.split("studio's members")[1].split("studio's activity")[0]
    assert "mia    member   limit   20.000000" in members  # (her spending is this month's: 0 early in a month)
    assert "olga   owner" in members and "ben    billing" in members
    activity = out.split("studio's activity")[1]
    assert "ben       purchase_created" in activity and "olga      member_limit_changed" in activity
    assert any(m.startswith("studio-member_limit_reached-") for m in mails)
    recipients = {line for p in (tmp_path / "mails").glob("studio-member_limit_reached-*.txt")
                  for line in p.read_text().splitlines() if line.startswith("To: ")}
    assert recipients == {"To: mia@example.com", "To: studio@example.com", "To: olga@example.com",
                          "To: ben@example.com"}
    # the books balance: the daily reconciliation checked all six accounts
    assert "reconciliation (the daily schedule): 6 accounts checked, 0 differences []" in out
    chart = tmp_path / "usage-chart.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 20_000
