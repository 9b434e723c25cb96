"""Mutation testing of the pure billing rules (``billing/domain``) against the domain tier (``tests/domain``).

mutmut 3 names a mutant after its file's path (``layers/billing/billing/domain/x.py`` would give
``layers.billing.billing.domain.x``) and only activates it when that name is the running module's
(``billing.domain.x``), so it is run from a staging directory, ``build/mutation``, whose ``billing``
and ``tests`` are links to the project's: there the paths are the module names. mutmut copies them
into ``build/mutation/mutants`` and mutates only ``billing/domain`` (``[tool.mutmut]`` in
pyproject.toml). Then the score per module: killed / reached (a mutant no test of the tier runs is
"not reached").

    python bench/mutation.py                     # everything, 1 process
    python bench/mutation.py --jobs 2 amounts lots   # these modules only
    python bench/mutation.py --report            # the last run's figures, without running
    python bench/mutation.py --survivors amounts # the diff of every surviving mutant of a module
    python bench/mutation.py --short             # a smoke run: one small module (spreadsheet)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "build" / "mutation"
DOMAIN = ROOT / "layers" / "billing" / "billing" / "domain"
RESULTS = STAGE / "mutants" / "billing" / "domain"
# The modules whose money mutants the tier must kill (issue 18), then the ones it must reach.
MONEY = ("amounts", "lots", "pricing", "posting", "credits", "controls", "rollover")
REACHED = ("events", "usage", "reconciliation")

# mutmut's exit codes (mutmut.stats.status_by_exit_code), grouped as the report counts them.
STATUS = {1: "killed", 3: "killed", 37: "killed", 0: "survived", 5: "not reached", 33: "not reached",
          34: "skipped", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          None: "not checked"}


def stage() -> None:
    """build/mutation with links to the package, the tests and the configuration (made once)."""
    STAGE.mkdir(parents=True, exist_ok=True)
    for name, target in (("billing", DOMAIN.parent), ("tests", ROOT / "tests"),
                         ("pyproject.toml", ROOT / "pyproject.toml")):
        link = STAGE / name
        if not link.is_symlink():
            link.symlink_to(target)


def run(modules: list[str], jobs: int) -> float:
    env = dict(os.environ)
    # localsam (imported by tests/conftest.py) from the project; billing and tests from mutants/ (mutmut
    # puts it first on sys.path), never the project's own copy.
    own = {ROOT.resolve(), (ROOT / "layers" / "billing").resolve()}
    kept = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() not in own]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tools"), *kept])
    env.setdefault("HYPOTHESIS_PROFILE", "mutation")
    # Named mutants are run again even when an earlier run has their result (new tests may kill them).
    names = [f"billing.domain.{m}.*" for m in modules] or ["billing.domain.*"]
    log = STAGE / "mutmut.log"
    print(f"mutmut run over billing/domain {' '.join(modules) or '(all)'}, {jobs} process(es); its output: {log}")
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *names],
                              cwd=STAGE, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    took = time.monotonic() - started
    if done.returncode:
        print(log.read_text()[-4000:])
        sys.exit(done.returncode)
    return took


def results(where: Path = RESULTS) -> dict[str, Counter[str]]:
    by_module: dict[str, Counter[str]] = {}
    for meta in sorted(where.glob("*.py.meta")):
        module = meta.name.removesuffix(".py.meta")
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        by_module[module] = Counter(STATUS.get(code, "suspicious") for code in codes.values())
    return by_module


def survivors(module: str) -> list[str]:
    meta = json.loads((RESULTS / f"{module}.py.meta").read_text())
    return sorted((k for k, code in meta["exit_code_by_key"].items() if STATUS.get(code) == "survived"),
                  key=lambda k: (k.rpartition("__mutmut_")[0], int(k.rpartition("__mutmut_")[2])))


def report(by_module: dict[str, Counter[str]]) -> None:
    def line(name: str, c: Counter[str]) -> str:
        total = sum(c.values())
        reached = total - c["not reached"]
        score = f"{100 * c['killed'] / reached:5.1f}%" if reached else "    -"
        of_all = f"{100 * c['killed'] / total:5.1f}%" if total else "    -"
        return (f"{name:<16}{c['killed']:>7} /{reached:>5} {score}   survived {c['survived']:>4}"
                f"   timeout {c['timeout']:>3}   not reached {c['not reached']:>4}   total {total:>5} {of_all}")

    print(f"{'module':<16}{'killed / reached':>20}{'killed / total':>76}")
    groups = (("money", MONEY), ("reached", REACHED),
              ("other", tuple(m for m in by_module if m not in MONEY + REACHED)))
    everything: Counter[str] = Counter()
    for title, modules in groups:
        subtotal: Counter[str] = Counter()
        for module in modules:
            if module in by_module:
                print(line(module, by_module[module]))
                subtotal += by_module[module]
        if subtotal:
            print(line(f"  [{title}]", subtotal))
        everything += subtotal
    print(line("TOTAL", everything))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="modules of billing/domain (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="mutmut's --max-children (default 1)")
    parser.add_argument("--report", action="store_true", help="print the last run's figures only")
    parser.add_argument("--survivors", metavar="MODULE", help="show each surviving mutant of MODULE")
    parser.add_argument("--fresh", action="store_true", help="forget earlier results first")
    parser.add_argument("--short", action="store_true",
                        help="a smoke run: the mutants of billing/domain/spreadsheet.py alone (needs mutmut)")
    args = parser.parse_args()
    if args.short:
        args.modules = args.modules or ["spreadsheet"]
    if args.survivors:
        for key in survivors(args.survivors):
            subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=STAGE, check=False)
        return
    if not args.report:
        stage()
        if args.fresh:
            shutil.rmtree(STAGE / "mutants", ignore_errors=True)
        took = run(args.modules, args.jobs)
        print(f"\nmutmut run: {took:.0f} s with {args.jobs} process(es)\n")
    by_module = results()
    if args.modules:
        by_module = {m: c for m, c in by_module.items() if m in args.modules}
    report(by_module)


if __name__ == "__main__":
    main()
