"""The README's run command: the demonstration runs on the local stack and leaves its chart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_statements_and_writes_the_chart(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "localsam.demo", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for account in ("alice", "bob", "carol"):
        assert f"{account}  (" in out
        assert (tmp_path / f"ledger-{account}.csv").read_text().startswith("entry_id,")
    # carol ran out: the mail, the final settlement's requests and the purchase that cleared it
    assert "Low Balance Notified" in out and "Credits Exhausted" in out and "Stop Containers Requested" in out
    assert "to {'ToAddresses': ['carol@example.com']}: Your credits are running low" in out
    assert "Refund Issued" in out
    chart = tmp_path / "usage-chart.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 20_000
