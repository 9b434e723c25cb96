"""``python -m localsam <command>``: the SAM CLI's local commands without Docker.

    invoke <LogicalId> -e event.json [--before e.json ...] [--env K=V ...] [--env-vars env.json]
    start-api [--port 3000]
    put-event -e event.json [--drain]
    fire-schedule <LogicalId> [EventName] [--at 2026-12-01T00:00:00Z] [--drain]
    drain [--send QueueLogicalId=body.json ...]

Every command runs against a StackRunner (DynamoDB Local + an in-process moto for SQS, EventBridge
and SES). By default it is started for the command and thrown away; with ``--dynamodb-endpoint``
(a DynamoDB Local you keep running) and a fixed ``--table`` (default ``billing-local``) the data
outlives the command. Results are printed to stdout as JSON; the functions' logs go to stderr.
A failing handler prints its error and exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localsam import samples
from localsam.runner import StackRunner
from localsam.runtime import InvocationError


def _json_file(path: str, redate: bool = False) -> Any:
    """A JSON file; with ``redate``, a sample of events/ moved to the present (localsam.samples)."""
    value = json.loads(Path(path).read_text())
    return samples.redate(value, samples.shift_to_now()) if redate else value


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _pairs(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    """A complete EventBridge envelope from a file holding one, or {source, detail-type, detail}."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "version": "0",
        "id": data.get("id") or f"local-{time.time_ns()}",
        "account": "123456789012",
        "time": now,
        "region": "us-east-1",
        "resources": [],
        **data,
    }


def _stack(args: argparse.Namespace) -> StackRunner:
    env_vars: dict[str, Any] = _json_file(args.env_vars) if getattr(args, "env_vars", None) else {}
    overrides = {k: str(v) for k, v in (env_vars.get("Parameters") or {}).items()}
    if getattr(args, "function", None):
        overrides.update({k: str(v) for k, v in (env_vars.get(args.function) or {}).items()})
    overrides.update(_pairs(getattr(args, "env", None)))
    table = args.table or ("billing-local" if args.dynamodb_endpoint else None)
    return StackRunner(
        dynamodb_endpoint=args.dynamodb_endpoint,
        table_name=table,
        parameters=_pairs(args.parameter_overrides),
        env=overrides,
        stripe=bool(getattr(args, "stripe", False)),
    )


@contextlib.contextmanager
def _logs_to_stderr() -> Any:
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _failed(exc: InvocationError) -> int:
    traceback.print_exception(exc.error, file=sys.stderr)
    _print({"errorType": type(exc.error).__name__, "errorMessage": str(exc.error)})
    return 1


def cmd_invoke(args: argparse.Namespace) -> int:
    event = _json_file(args.event, args.redate) if args.event else {}
    with _stack(args) as stack:
        for before in args.before or []:
            with _logs_to_stderr():
                setup = stack.deliver_event(_envelope(_json_file(before, args.redate)))
                stack.drain()  # settled, as it would be by the time the next event comes
            if not setup.ok:
                print(f"setup event {before} failed: {[f.error for f in setup.failures]}", file=sys.stderr)
                return 1
        try:
            with _logs_to_stderr():
                result = stack.invoke(args.function, event)
        except InvocationError as exc:
            return _failed(exc)
    _print(result)
    return 0


def cmd_start_api(args: argparse.Namespace) -> int:
    with _stack(args) as stack:
        url = stack.serve_api(args.port, args.host)
        assert stack.api is not None
        print(f"Serving the HttpApi routes of template.yaml at {url} (Ctrl-C stops)", file=sys.stderr)
        for route in stack.api.routes:
            print(f"  {route.method:6} {url}{route.path}  -> {route.function} [{route.auth}]", file=sys.stderr)
        for prefix, directory in stack.api.static.items():
            print(f"  GET    {url}{prefix}/  (LOCAL ONLY: {directory})", file=sys.stderr)
        print(
            "Identity (LOCAL ONLY, nothing is verified): 'Authorization: Bearer <jwt>' (its sub),"
            " 'X-Local-Sub: <account>', or 'X-Local-Iam: <arn>' for IAM routes.",
            file=sys.stderr,
        )
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


def _drain_report(stack: StackRunner) -> dict[str, Any]:
    with _logs_to_stderr():
        report, stream = stack.drain()
    return {
        "invocations": report.invocations + stream.invocations,
        "succeeded": report.succeeded,
        "failed": report.failed,
        "errors": report.errors + stream.errors,
        "stream_records_delivered": stream.delivered,
        "stream_records_given_up": stream.given_up,
    }


def _drain_failed(report: dict[str, Any]) -> bool:
    return bool(report["failed"] or report["stream_records_given_up"])


def cmd_put_event(args: argparse.Namespace) -> int:
    event = _envelope(_json_file(args.event, args.redate))
    with _stack(args) as stack:
        with _logs_to_stderr():
            result = stack.deliver_event(event)
        out: dict[str, Any] = {
            "event_id": event["id"],
            "deliveries": [
                {
                    "function": d.function,
                    "rule": d.trigger,
                    "ok": d.ok,
                    "result": d.result,
                    "error": d.error,
                    "dead_letter_queue": d.dead_letter_queue,
                }
                for d in result.deliveries
            ],
        }
        if args.drain:
            out["drain"] = _drain_report(stack)
        out["published"] = stack.published_events()
    _print(out)
    return 0 if result.ok and (not args.drain or not _drain_failed(out["drain"])) else 1


def cmd_fire_schedule(args: argparse.Namespace) -> int:
    at = datetime.fromisoformat(args.at.replace("Z", "+00:00")) if args.at else None
    with _stack(args) as stack:
        try:
            with _logs_to_stderr():
                result = stack.fire_schedule(args.function, args.event_name, at)
        except InvocationError as exc:
            return _failed(exc)
        out: dict[str, Any] = {"result": result}
        if args.drain:
            out["drain"] = _drain_report(stack)
            out["published"] = stack.published_events()
    _print(out)
    return 0 if not args.drain or not _drain_failed(out["drain"]) else 1


def cmd_drain(args: argparse.Namespace) -> int:
    with _stack(args) as stack:
        sqs = stack.client("sqs")
        for queue, path in _pairs(args.send).items():
            body = Path(path).read_text()
            sqs.send_message(QueueUrl=stack.queue_urls[queue], MessageBody=body)
        out = _drain_report(stack)
        out["published"] = stack.published_events()
    _print(out)
    return 0 if not _drain_failed(out) else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m localsam", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--dynamodb-endpoint", help="a running DynamoDB Local (default: start one)")
        sp.add_argument("--table", help="table name (created when missing; default billing-local with an endpoint)")
        sp.add_argument("--parameter-overrides", nargs="*", metavar="NAME=VALUE", help="template parameters")
        sp.add_argument("--env", nargs="*", metavar="KEY=VALUE", help="environment variable overrides")
        sp.add_argument("--env-vars", help='SAM-style JSON: {"Parameters": {...}, "<LogicalId>": {...}}')
        sp.add_argument("--stripe", action="store_true",
                        help="payments through Stripe, answered by a local stand-in (localstripe) started here")
        sp.add_argument("--redate", action="store_true",
                        help="move the sample events' times to the present (events older than 30 days are refused)")

    sp = sub.add_parser("invoke", help="invoke one function with an event (like sam local invoke)")
    sp.add_argument("function", metavar="LogicalId")
    sp.add_argument("-e", "--event", help="event JSON file (default {})")
    sp.add_argument(
        "--before",
        action="append",
        metavar="EVENT.json",
        help="EventBridge event(s) delivered through the template's rules first (e.g. an Account Created)",
    )
    common(sp)
    sp.set_defaults(run=cmd_invoke)

    sp = sub.add_parser("start-api", help="serve the HttpApi routes (like sam local start-api)")
    sp.add_argument("--port", "-p", type=int, default=3000)
    sp.add_argument("--host", default="127.0.0.1")
    common(sp)
    sp.set_defaults(run=cmd_start_api)

    sp = sub.add_parser("put-event", help="put an EventBridge event; matching rules' functions get it")
    sp.add_argument("-e", "--event", required=True, help="an envelope, or {source, detail-type, detail}")
    sp.add_argument("--drain", action="store_true", help="then deliver the queued SQS messages")
    common(sp)
    sp.set_defaults(run=cmd_put_event)

    sp = sub.add_parser("fire-schedule", help="run a function's ScheduleV2 event")
    sp.add_argument("function", metavar="LogicalId")
    sp.add_argument("event_name", nargs="?", metavar="EventName", help="default: the function's first schedule")
    sp.add_argument("--at", help="scheduled time, ISO-8601 (default now)")
    sp.add_argument("--drain", action="store_true", help="then deliver the queued SQS messages")
    common(sp)
    sp.set_defaults(run=cmd_fire_schedule)

    sp = sub.add_parser("drain", help="deliver SQS messages to the functions with SQS events")
    sp.add_argument("--send", nargs="*", metavar="QueueLogicalId=BODY_FILE", help="messages to enqueue first")
    common(sp)
    sp.set_defaults(run=cmd_drain)
    return p


def main(argv: list[str] | None = None) -> int:
    # a TERM signal unwinds like Ctrl-C, so DynamoDB Local and moto are stopped on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
