"""Every bench in bench/ still runs: its short mode (``--short``), in a fresh process as a reader runs
it, on the suite's DynamoDB Local, must exit 0 and print its figures. Nothing about time is asserted
(issue 19: two benches had been failing since the restructure while bench/README.md described them)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT

# bench module -> lines its short run must print (regular expressions, each a figure with its number)
EXPECTED: dict[str, tuple[str, ...]] = {
    "settlement_bench": (r"\(a\) DynamoDB requests per settlement", r"median \d+\s+max \d+",
                         r"items written \[\d+\]  -> counts match settle_queued\(\): True"),
    "report_bench": (r"GET /v1/usage, account with 40 uses: \d+ DynamoDB requests, [\d.]+ read units",
                     r"same request count: (True|False)"),
    "scale_bench": (r"DynamoDB requests / settlement\s+\d+\s+\d+", r"events applied \(distinct, ledger\)\s+4\s+4",
                    r"\s+1,000\s+1,000\s+\d+", r"100,000 entries|200\)"),
    "load_bench": (r"reconciliation", r"\b0\b"),
    "import_bench": (r"import boto3: wall [\d.]+ ms, cpu [\d.]+ ms", r"usage_api\s+http\s+\d+ /\s+\d+ cpu ms"),
    "powertools_init_bench": (r"deferred\s+cpu\s+[\d.]+ ms", r"plain\s+cpu\s+[\d.]+ ms"),
    "month_close_bench": (r"30 accounts .* accounts not rolled into April: 0; dead-letter queues "
                          r"\{'WorkDLQ': 0, 'AsyncFailuresDLQ': 0\}", r"shard_page\s+\d+\s+[\d.]+"),
    "member_bench": (r"case\s+requests\s+items written", r"member"),
    "page_bench": (r"first load: \d+ files", r"sent: [\d.]+ KB of a 300 KB budget"),
    "usage_cost_bench": (r"WCU ratio labelled / one container: [\d.]+",),
    "cost_bench": (r"stop\s+12\s+yes\s+11\s+2\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+", r"30-day usage read\s+1\s+no",
                   r"\$1\.25 per million write units"),
}


def test_every_bench_is_smoke_tested() -> None:
    benches = {p.stem for p in (ROOT / "bench").glob("*_bench.py")}
    assert benches == set(EXPECTED)


@pytest.mark.parametrize("bench", sorted(EXPECTED))
def test_bench_short_run_prints_its_figures(bench: str, dynamodb_endpoint: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "layers" / "billing"), str(ROOT / "tools"), str(ROOT)])
    env["DYNAMODB_ENDPOINT"] = dynamodb_endpoint
    done = subprocess.run([sys.executable, "-m", f"bench.{bench}", "--short"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for pattern in EXPECTED[bench]:
        assert re.search(pattern, done.stdout), f"{bench} --short printed no {pattern!r}:\n{done.stdout[-3000:]}"


@pytest.mark.skipif(subprocess.run([sys.executable, "-c", "import mutmut"], capture_output=True).returncode != 0,
                    reason="mutmut lives in .venv-mutation (make mutation), not in the dev environment")
def test_mutation_short_run_reports_a_score() -> None:  # pragma: no cover - needs mutmut
    done = subprocess.run([sys.executable, "bench/mutation.py", "--short"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"spreadsheet\s+\d+ /\s*\d+", done.stdout)
