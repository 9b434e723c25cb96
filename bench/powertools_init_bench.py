"""What ``billing.api.powertools`` saves: Powertools' API Gateway resolver imported with the
``event_handler`` package's ``__init__`` deferred (as the HTTP functions do) or run (a plain import).

Fresh processes of ``--python`` (best: a layer-only venv of Python 3.13, as deployed), the two
imports interleaved (order alternating), round 0 discarded; medians of CPU and wall time and the
modules loaded. ``python -m bench.powertools_init_bench --python /tmp/layer313/bin/python --rounds 15``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

LAYER = Path(__file__).resolve().parents[1] / "layers" / "billing"
IMPORTS = {
    "deferred": "import billing.api.powertools",
    "plain": "import aws_lambda_powertools.event_handler.api_gateway",
}
TIMED = ("import sys, time; c = time.process_time(); w = time.perf_counter(); {code}; "
         "print(time.process_time() - c, time.perf_counter() - w, len(sys.modules))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--short", action="store_true", help="a smoke run (CI): 1 round")
    args = parser.parse_args()
    if args.short:
        args.rounds = 1
    env = {"PYTHONPATH": str(LAYER), "PATH": "/usr/bin:/bin"}
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in IMPORTS}
    for round_ in range(args.rounds + 1):
        names = list(IMPORTS) if round_ % 2 else list(reversed(IMPORTS))
        for name in names:
            out = subprocess.run([args.python, "-c", TIMED.format(code=IMPORTS[name])], env=env,
                                 capture_output=True, text=True, check=True).stdout.split()
            if round_:
                samples[name].append((float(out[0]) * 1000, float(out[1]) * 1000, int(out[2])))
    for name, values in samples.items():
        cpu = statistics.median(v[0] for v in values)
        wall = statistics.median(v[1] for v in values)
        print(f"{name:9} cpu {cpu:6.1f} ms  wall {wall:6.1f} ms  modules {values[-1][2]}")


if __name__ == "__main__":
    main()
