"""Cold-start import cost of every handler module, relative to ``import boto3``.

Each measurement is a fresh ``python -c`` process that times (with ``time.perf_counter``, interpreter
start-up excluded) either ``import boto3`` or the load of one ``functions/<name>/app.py`` by file path,
as Lambda does. The handlers get the environment of ``template.yaml`` (Globals plus their own
variables; ``!Ref`` values become placeholders), the layer on ``PYTHONPATH`` as ``/opt/python`` would
be, and the variables Lambda sets (``LAMBDA_TASK_ROOT``...) so Powertools behaves as deployed. Two
modes: ``lambda`` (tracing as on Lambda with ``Tracing: Active``: the Tracer loads and patches with
aws_xray_sdk) and ``trace-disabled`` (``POWERTOOLS_TRACE_DISABLED=true``). The runs are interleaved;
medians are printed, with the ratio handler / boto3 (target <= 1.5), then ``python -X importtime``'s
top offenders for the slowest handler.

Run: ``python -m bench.import_bench [--repeat N] [--top K] [--only usage_api,account_api,payment_webhook]
[--layer-venv DIR]``. ``--layer-venv`` measures with an interpreter that has only the layer's requirements
(``layers/billing/requirements.txt``, as deployed), making that virtualenv first when ``DIR`` is missing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CODE_ROOT = ROOT  # --root: where functions/ and layers/billing/ are read (a scratch copy to compare)
EXTRA_ENV: dict[str, str] = {}  # --env KEY=VALUE, for the handlers only
PYTHON = sys.executable  # --python: the interpreter measured (e.g. a venv with only the layer's requirements)

LOAD = """
import time, importlib.util, sys
assert "billing" not in sys.modules
t, c = time.perf_counter(), time.process_time()
spec = importlib.util.spec_from_file_location("app", {path!r})
m = importlib.util.module_from_spec(spec); sys.modules["app"] = m; spec.loader.exec_module(m)
print(time.perf_counter() - t, time.process_time() - c)
"""
BOTO3 = """
import time
t, c = time.perf_counter(), time.process_time()
import boto3
print(time.perf_counter() - t, time.process_time() - c)
"""


ONLY: set[str] = set()  # --only: the function directories to measure (default: all)


def handlers() -> list[Path]:
    return sorted(p for p in (CODE_ROOT / "functions").glob("*/app.py") if not ONLY or p.parent.name in ONLY)


def layer_venv(path: Path) -> str:
    """The interpreter of a virtualenv with only the layer's requirements (made when missing)."""
    python = path / "bin" / "python"
    if not python.exists():
        print(f"making {path} from layers/billing/requirements.txt ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                        str(ROOT / "layers" / "billing" / "requirements.txt")], check=True)
    return str(python)


def template_env() -> tuple[dict[str, str], dict[str, dict[str, str]], set[str]]:
    """Globals' variables, each function directory's own variables, and the function directories
    behind the HTTP API (an ``HttpApi`` event), from template.yaml."""
    sys.path.insert(0, str(ROOT / "tools"))
    from localsam.template import load_template

    template = load_template()

    def values(variables: dict[str, Any] | None) -> dict[str, str]:
        return {k: v if isinstance(v, str) else f"bench-{k.lower()}" for k, v in (variables or {}).items()}

    function_globals = template.get("Globals", {}).get("Function", {})
    globals_env = values(function_globals.get("Environment", {}).get("Variables"))
    per_function: dict[str, dict[str, str]] = {}
    http: set[str] = set()
    for logical_id, res in template["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res.get("Properties", {})
        code = str(props.get("CodeUri", "")).rstrip("/")
        env = values(props.get("Environment", {}).get("Variables"))
        env["AWS_LAMBDA_FUNCTION_NAME"] = logical_id
        env["_HANDLER"] = str(props.get("Handler", "app.lambda_handler"))
        per_function[Path(code).name] = env
        if any(e.get("Type") == "HttpApi" for e in (props.get("Events") or {}).values()):
            http.add(Path(code).name)
    return globals_env, per_function, http


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_", "PYTHON"))}
    env.update({
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    })
    return env


def handler_env(
    app: Path, mode: str, globals_env: dict[str, str], own: dict[str, dict[str, str]]
) -> dict[str, str]:
    env = base_env()
    env.update(globals_env)
    env.update(own.get(app.parent.name, {"AWS_LAMBDA_FUNCTION_NAME": app.parent.name}))
    env.update({
        "PYTHONPATH": str(CODE_ROOT / "layers" / "billing"),  # the layer, as /opt/python on Lambda
        "LAMBDA_TASK_ROOT": str(app.parent),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    })
    if mode == "trace-disabled":
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    env.update(EXTRA_ENV)
    return env


def timed(code: str, env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of the timed import in a fresh process."""
    out = subprocess.run([PYTHON, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def importtime_rows(code: str, env: dict[str, str], cwd: Path) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, indented name) of every module ``python -X importtime`` reports."""
    out = subprocess.run([PYTHON, "-X", "importtime", "-c", code],
                         env=env, cwd=cwd, capture_output=True, text=True)
    rows = []
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative, name = line[len("import time:"):].split("|", 2)
        rows.append((int(self_us), int(cumulative), name[1:]))  # name keeps its nesting indent
    return rows


def importtime(app: Path, env: dict[str, str], top: int, runs: int = 5) -> None:
    """Top offenders of ``python -X importtime`` (medians of ``runs``), and what boto3 does not import."""
    samples = [importtime_rows(LOAD.format(path=str(app)), env, app.parent) for _ in range(runs)]
    boto3_modules = {n.strip() for _, _, n in importtime_rows("import boto3", base_env(), ROOT)}

    def med(index: int, key: str) -> float:
        return statistics.median(
            next((float(r[index]) for r in rows if r[2] == key), 0.0) for rows in samples
        ) / 1000

    rows = samples[0]
    names = [r[2] for r in rows]
    mode = "trace-disabled" if env.get("POWERTOOLS_TRACE_DISABLED") else "lambda"
    print(f"\n`python -X importtime` of {app.relative_to(CODE_ROOT)} [{mode}]: "
          f"{len(rows)} modules, medians of {runs} runs (ms)")
    print("  imports at depth <= 1, by cumulative time:")
    shallow = [n for n in names if len(n) - len(n.lstrip()) <= 2]
    for n in sorted(shallow, key=lambda n: -med(1, n))[:top]:
        print(f"    {med(1, n):8.1f}  {n}")
    print("  modules by self time:")
    for n in sorted(names, key=lambda n: -med(0, n))[:top]:
        print(f"    {med(0, n):8.1f}  {n.strip()}{'' if n.strip() in boto3_modules else '   (not imported by boto3)'}")
    groups: dict[str, float] = {}
    extra: dict[str, float] = {}
    for n in names:
        root = n.strip().split(".")[0]
        groups[root] = groups.get(root, 0) + med(0, n)
        if n.strip() not in boto3_modules:
            extra[root] = extra.get(root, 0) + med(0, n)
    print(f"  self time by top-level package; beyond what `import boto3` imports: {sum(extra.values()):.0f} ms")
    for root, t in sorted(groups.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {t:8.1f}  {root:<24} beyond boto3: {extra.get(root, 0):6.1f}")


Samples = list[tuple[float, float]]  # (wall, CPU) seconds per fresh process
API_HANDLERS = ("usage_api", "account_api", "payment_webhook")  # Powertools' Event Handler + msgspec validation


def measure(modes: list[str], repeat: int) -> tuple[Samples, dict[tuple[str, str], Samples]]:
    """``import boto3`` and every handler in each mode, interleaved, ``repeat`` rounds after a warm-up."""
    globals_env, own, _ = template_env()
    apps = handlers()
    boto_env = base_env()
    times: dict[tuple[str, str], Samples] = {}
    boto3_times: Samples = []
    for round_ in range(max(repeat, 1) + 1):  # interleaved: one of each per round
        keep = round_ > 0  # round 0 warms the OS file cache and writes the .pyc files
        t = timed(BOTO3, boto_env, ROOT)
        if keep:
            boto3_times.append(t)
        for mode in modes:
            for app in apps:
                env = handler_env(app, mode, globals_env, own)
                t = timed(LOAD.format(path=str(app)), env, app.parent)
                if keep:
                    times.setdefault((app.parent.name, mode), []).append(t)
    return boto3_times, times


def report(measured: tuple[Samples, dict[tuple[str, str], Samples]], modes: list[str], http: set[str]) -> str:
    """Print the medians and ratios; returns the slowest handler (CPU, first mode)."""
    boto3_times, times = measured

    def med(samples: Samples, i: int) -> float:
        return statistics.median(s[i] for s in samples)

    bw, bc = med(boto3_times, 0), med(boto3_times, 1)
    print(f"{PYTHON}, {len(boto3_times)} fresh processes each, medians; "
          f"wall = perf_counter, cpu = process_time (robust when the machine is busy)")
    print(f"import boto3: wall {bw * 1000:.1f} ms, cpu {bc * 1000:.1f} ms")
    print(f"{'handler':<22}{'kind':<7}" + "".join(f"{'[' + m + ']':>22} {'ratio w/cpu':>12}" for m in modes))
    slowest = ("", 0.0)
    worst: dict[str, float] = {}  # kind -> highest wall ratio in the first mode
    for name in sorted({name for name, _ in times}):
        kind = "http" if name in http else "event"
        row = f"{name:<22}{kind:<7}"
        for mode in modes:
            w, c = med(times[(name, mode)], 0), med(times[(name, mode)], 1)
            row += f"{w * 1000:>9.0f} / {c * 1000:>4.0f} cpu ms {w / bw:>5.2f} / {c / bc:4.2f}"
            if mode == modes[0]:
                worst[kind] = max(worst.get(kind, 0.0), w / bw)
                if c > slowest[1]:
                    slowest = (name, c)
        print(row)
    print("target: ratio <= 1.5; on Lambda (Tracing: Active) the first mode is what a cold start pays")
    print("highest ratio [" + modes[0] + "]: " + ", ".join(f"{k} handlers {v:.2f}" for k, v in sorted(worst.items())))
    api = [name for name in sorted({name for name, _ in times}) if name in http and name in API_HANDLERS]
    if api:
        print(f"HTTP API handlers [{modes[0]}], wall / cpu ratio: " + ", ".join(
            f"{name} {med(times[(name, modes[0])], 0) / bw:.2f} / {med(times[(name, modes[0])], 1) / bc:.2f}"
            for name in api))
    return slowest[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="fresh processes per measurement (>= 7)")
    parser.add_argument("--top", type=int, default=15, help="rows of the importtime report")
    parser.add_argument("--modes", default="lambda,trace-disabled")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="tree with functions/ and layers/billing/ to measure (default: this project)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment variable for the handlers (repeatable)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter to measure (default: this one); e.g. a venv made from "
                             "layers/billing/requirements.txt, closer to the deployed layer")
    parser.add_argument("--layer-venv", type=Path, metavar="DIR",
                        help="measure with DIR/bin/python, a venv of layers/billing/requirements.txt only "
                             "(made when missing)")
    parser.add_argument("--only", default="", help="comma-separated function directories (default: all)")
    parser.add_argument("--short", action="store_true",
                        help="a smoke run (CI): usage_api alone, 2 rounds, lambda mode, 1 importtime run")
    args = parser.parse_args(argv)
    if args.short:
        args.repeat, args.only, args.modes, args.top = 2, args.only or "usage_api", "lambda", 5
    global CODE_ROOT, PYTHON
    CODE_ROOT = args.root.resolve()
    PYTHON = layer_venv(args.layer_venv) if args.layer_venv else args.python
    ONLY.update(name for name in args.only.split(",") if name)
    EXTRA_ENV.update(kv.split("=", 1) for kv in args.env)

    globals_env, own, http = template_env()
    modes = args.modes.split(",")
    slowest = report(measure(modes, args.repeat), modes, http)
    print(f"code: {CODE_ROOT}" + (f", extra env: {EXTRA_ENV}" if EXTRA_ENV else ""))
    app = CODE_ROOT / "functions" / slowest / "app.py"
    importtime(app, handler_env(app, modes[0], globals_env, own), args.top, runs=1 if args.short else 5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
