"""Operating the stack: every failure path has an alarm to the operators' topic (read from
template.yaml), the dashboard names the metrics the code emits, a settlement emits those metrics and
its log lines carry ``account_id``, ``event_id`` and ``correlation_id``, and the month-close check
says whether the month was closed by 01:00 UTC on the 1st."""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from billing import observability
from billing.adapters import MailSender
from billing.config import Config
from billing.domain.clock import parse_time
from billing.observability import logger, metrics
from localsam.runner import StackRunner
from localsam.template import load_template
from tests.helpers import Platform, RecordingQueue, invoke, load_handler
from tests.test_sweeps import sqs_event
from tests.travel import MID_MONTH, mid_month

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
TOPIC = {"Ref": "AlarmTopic"}
SERVICE = [("service", "credit-billing")]


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


ALARMS = of_type("AWS::CloudWatch::Alarm")
FUNCTIONS = of_type("AWS::Serverless::Function")
QUEUES = of_type("AWS::SQS::Queue")


def plain(value: Any) -> Any:
    """The decoder's nodes as plain JSON values (``!Ref X`` is ``{"Ref": "X"}``)."""
    return json.loads(json.dumps(value))


def metrics_of(alarm: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, Any]]]]:
    """(namespace, metric, dimensions) of every metric an alarm reads (a metric-math alarm: each)."""
    props = plain(alarm["Properties"])
    if "MetricName" in props:
        specs = [{"Namespace": props["Namespace"], "MetricName": props["MetricName"],
                  "Dimensions": props.get("Dimensions", [])}]
    else:
        specs = [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]
    return [(s["Namespace"], s["MetricName"], [(d["Name"], d["Value"]) for d in s.get("Dimensions", [])])
            for s in specs]


def alarms_on(namespace: str, metric: str, dimensions: list[tuple[str, Any]]) -> list[str]:
    return [name for name, alarm in ALARMS.items() if (namespace, metric, dimensions) in metrics_of(alarm)]


def arn_target(value: Any) -> str | None:
    """The logical id of ``!GetAtt X.Arn``."""
    value = plain(value)
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        att = value["Fn::GetAtt"]
        name, attribute = att if isinstance(att, list) else att.split(".", 1)
        return str(name) if attribute == "Arn" else None
    return None


def dead_letter_queues() -> set[str]:
    """Every queue that something dead-letters to: a queue's redrive policy, a function's DLQ or
    on-failure destination of asynchronous invocations, an EventBridge rule's or a schedule's
    dead-letter config, a stream's on-failure destination."""
    found: set[str] = set()
    for queue in QUEUES.values():
        found.add(arn_target((queue["Properties"].get("RedrivePolicy") or {}).get("deadLetterTargetArn")) or "")
    for function in FUNCTIONS.values():
        props = function["Properties"]
        found.add(arn_target((props.get("DeadLetterQueue") or {}).get("TargetArn")) or "")
        async_failure = (((props.get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get("OnFailure") or {})
        found.add(arn_target(async_failure.get("Destination")) or "")
        for event in (props.get("Events") or {}).values():
            event_props = event.get("Properties") or {}
            found.add(arn_target((event_props.get("DeadLetterConfig") or {}).get("Arn")) or "")
            on_failure = ((event_props.get("DestinationConfig") or {}).get("OnFailure") or {})
            found.add(arn_target(on_failure.get("Destination")) or "")
    found.discard("")
    return found


# ---------------------------------------------------------------------------------------- the template
@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_description_fits_lambdas_limit(function: str) -> None:
    """Lambda refuses a description over 256 characters (cfn-lint E3033): the detail goes in comments."""
    assert len(FUNCTIONS[function]["Properties"].get("Description", "")) <= 256


def test_every_alarm_tells_the_operators_topic():
    assert len(ALARMS) >= 2 * len(FUNCTIONS) + len(QUEUES) + len(dead_letter_queues())
    for name, alarm in ALARMS.items():
        assert plain(alarm["Properties"]["AlarmActions"]) == [TOPIC], name
        assert plain(alarm["Properties"]).get("TreatMissingData") == "notBreaching", name


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_has_an_errors_and_a_throttles_alarm(function):
    dims = [("FunctionName", {"Ref": function})]
    assert len(alarms_on("AWS/Lambda", "Errors", dims)) == 1
    assert len(alarms_on("AWS/Lambda", "Throttles", dims)) == 1


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_every_queue_has_an_age_of_oldest_message_alarm(queue):
    dims = [("QueueName", {"Fn::GetAtt": [queue, "QueueName"]})]
    [name] = alarms_on("AWS/SQS", "ApproximateAgeOfOldestMessage", dims)
    threshold = plain(ALARMS[name]["Properties"])["Threshold"]
    # a live queue is late after minutes; a message left in a dead-letter queue after a day (of 14)
    assert threshold == (86400 if queue in dead_letter_queues() else {"SettlementQueue": 300, "WorkQueue": 1800}[queue])


def test_every_dead_letter_queue_has_a_depth_alarm():
    dlqs = dead_letter_queues()
    assert dlqs == {"PlatformEventsDLQ", "SettlementDLQ", "WorkDLQ", "OutboxDLQ", "AsyncFailuresDLQ"}
    for queue in dlqs:
        dims = [("QueueName", {"Fn::GetAtt": [queue, "QueueName"]})]
        [name] = alarms_on("AWS/SQS", "ApproximateNumberOfMessagesVisible", dims)
        props = plain(ALARMS[name]["Properties"])
        assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")  # one message


def test_every_stream_consumer_has_an_iterator_age_alarm():
    consumers = [name for name, f in FUNCTIONS.items()
                 if any(e["Type"] in ("DynamoDB", "Kinesis") for e in (f["Properties"].get("Events") or {}).values())]
    assert consumers == ["OutboxDispatcherFunction"]
    [name] = alarms_on("AWS/Lambda", "IteratorAge", [("FunctionName", {"Ref": "OutboxDispatcherFunction"})])
    assert plain(ALARMS[name]["Properties"])["Threshold"] == 300_000  # ms: five minutes behind the stream


def test_the_http_api_has_a_5xx_rate_alarm():
    for api in of_type("AWS::Serverless::HttpApi"):
        dims = [("ApiId", {"Ref": api})]
        [name] = alarms_on("AWS/ApiGateway", "5xx", dims)
        assert alarms_on("AWS/ApiGateway", "Count", dims) == [name]  # the rate: 5xx over requests
        props = plain(ALARMS[name]["Properties"])
        [expression] = [m["Expression"] for m in props["Metrics"] if m.get("ReturnData")]
        assert expression == "100 * FILL(errors, 0) / requests" and props["Threshold"] == 1  # percent


def test_the_month_close_is_checked_at_one_on_the_first_and_alarms_when_late():
    events = FUNCTIONS["MonthlyBillingFunction"]["Properties"]["Events"]
    check = plain(events["MonthCloseCheck"])
    assert check["Type"] == "ScheduleV2"
    assert check["Properties"]["ScheduleExpression"] == "cron(0 1 1 * ? *)"
    assert check["Properties"]["ScheduleExpressionTimezone"] == "UTC"
    assert json.loads(check["Properties"]["Input"])["sweep"] == "month_close_check"
    [name] = alarms_on("CreditBilling", observability.MONTH_CLOSE_LATE, SERVICE)
    props = plain(ALARMS[name]["Properties"])
    assert (props["Statistic"], props["Threshold"], props["ComparisonOperator"]) == \
        ("Maximum", 1, "GreaterThanOrEqualToThreshold")


def test_outbox_deliveries_that_keep_failing_alarm():
    [name] = alarms_on("CreditBilling", observability.OUTBOX_DELIVERY_FAILURES, SERVICE)
    props = plain(ALARMS[name]["Properties"])
    assert (props["EvaluationPeriods"], props["DatapointsToAlarm"], props["Period"]) == (3, 3, 300)  # 15 minutes


def test_mail_goes_out_with_a_configuration_set_that_reports_bounces_and_complaints():
    [config_set] = of_type("AWS::SES::ConfigurationSet")
    [destination] = of_type("AWS::SES::ConfigurationSetEventDestination").values()
    props = plain(destination["Properties"])
    assert props["ConfigurationSetName"] == {"Ref": config_set}
    assert {"bounce", "complaint"} <= set(props["EventDestination"]["MatchingEventTypes"])
    [dimension] = props["EventDestination"]["CloudWatchDestination"]["DimensionConfigurations"]
    dims = [(dimension["DimensionName"], {"Ref": config_set})]
    assert len(alarms_on("AWS/SES", "Bounce", dims)) == 1
    assert len(alarms_on("AWS/SES", "Complaint", dims)) == 1
    # the dispatcher sends with it, and may
    dispatcher = plain(FUNCTIONS["OutboxDispatcherFunction"]["Properties"])
    assert dispatcher["Environment"]["Variables"]["SES_CONFIGURATION_SET"] == {"Ref": config_set}
    [statement] = [s for p in dispatcher["Policies"] if "Statement" in p for s in p["Statement"]
                   if "ses:SendEmail" in s["Action"]]
    assert any(f"configuration-set/${{{config_set}}}" in r["Fn::Sub"] for r in statement["Resource"])


def test_the_mail_sender_names_the_configuration_set():
    """SES (moto here) takes the parameter; the request's parameters are read on the way out."""
    config = Config.from_env({"SES_CONFIGURATION_SET": "stack-billing-mail"})
    assert config.ses_configuration_set == "stack-billing-mail"
    client = boto3.client("sesv2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x",
                          endpoint_url="http://127.0.0.1:9")
    seen: list[dict[str, Any]] = []

    def stop(params: dict[str, Any], **_: Any) -> None:
        seen.append(params)
        raise RuntimeError("not sent")  # stops before any connection is made

    client.meta.events.register("before-call.sesv2.SendEmail", stop)
    for configuration_set in ("stack-billing-mail", None):
        with pytest.raises(RuntimeError):
            MailSender("billing@example.com", client, configuration_set).send("a@example.com", "s", "t")
    assert json.loads(seen[0]["body"])["ConfigurationSetName"] == "stack-billing-mail"
    assert "ConfigurationSetName" not in json.loads(seen[1]["body"])


def dashboard_body() -> str:
    """The dashboard's JSON with its ${...} references replaced by their names."""
    body = plain(RESOURCES["BillingDashboard"]["Properties"]["DashboardBody"])["Fn::Sub"]
    for reference in re.findall(r"\$\{([^}]+)\}", body):
        assert reference.split(".")[0] in RESOURCES or reference.startswith("AWS::"), reference
    return re.sub(r"\$\{([^}]+)\}", lambda m: m.group(1), body)


def test_the_dashboard_shows_what_the_operators_watch():
    assert RESOURCES["BillingDashboard"]["Type"] == "AWS::CloudWatch::Dashboard"
    widgets = json.loads(dashboard_body())["widgets"]
    by_title = {w["properties"]["title"]: w["properties"]["metrics"] for w in widgets}
    named = {title: json.dumps(lines) for title, lines in by_title.items()}
    assert '"EventsSettled"' in named["Settlements per minute"]
    assert by_title["Settlement latency (ms)"] == [
        ["CreditBilling", "SettlementLatency", "service", "credit-billing", {"stat": "p50", "label": "p50"}],
        ["CreditBilling", "SettlementLatency", "service", "credit-billing", {"stat": "p99", "label": "p99"}],
    ]
    assert '"CreditsCharged"' in named["Credits charged"]
    assert "{CreditBilling,reason,service} MetricName=\\\"EventsRejected\\\"" in named["Refused events by reason"]
    for metric in ("DebtsOpened", "AutoTopUps", "MailsSent"):
        assert f'"{metric}"' in named["Debts opened, auto top-ups, mails sent"]
    dlq_names = {line[3] for line in by_title["Dead-letter queue depths"]}
    assert dlq_names == {f"{q}.QueueName" for q in dead_letter_queues()}


def test_every_metric_of_ours_the_template_reads_is_emitted_by_the_code():
    source = "\n".join(p.read_text() for p in [*(ROOT / "layers/billing/billing").rglob("*.py"),
                                                *(ROOT / "functions").glob("*/app.py")])
    read = {metric for alarm in ALARMS.values() for ns, metric, _ in metrics_of(alarm) if ns == "CreditBilling"}
    read |= set(re.findall(r'\["CreditBilling", "(\w+)"', dashboard_body()))
    assert {"EventsSettled", "SettlementLatency", "CreditsCharged", "DebtsOpened", "AutoTopUps", "MailsSent",
            "MonthCloseLate", "OutboxDeliveryFailures"} <= read
    for metric in read:
        assert f'"{metric}"' in source, metric


# ---------------------------------------------------------------------------------------- a settlement
@pytest.fixture(autouse=True)
def emitting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics are printed as EMF here (tests/conftest.py turns them off for the other tests), from
    an empty buffer (what earlier tests left in the shared one is dropped)."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    metrics.clear_metrics()


def emf_records(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def metric_values(records: list[dict[str, Any]], **dimensions: str) -> dict[str, list[float]]:
    """Metric name -> every value recorded, in records whose dimensions are exactly the given ones
    (and ``service``, which a deployed function has from POWERTOOLS_SERVICE_NAME)."""
    found: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for directive in record["_aws"]["CloudWatchMetrics"]:
            if sorted(set(directive["Dimensions"][0]) - {"service"}) != sorted(dimensions):
                continue
            if any(record.get(k) != v for k, v in dimensions.items()):
                continue
            for metric in directive["Metrics"]:
                value = record[metric["Name"]]
                found[metric["Name"]].extend(value if isinstance(value, list) else [value])
    return found


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture()
def at_mid_month() -> Iterator[None]:
    """The stack's clock (the intake's 30-day window, the settlement's month) at a fixed moment
    mid-month, so that no day, month or year boundary falls inside the story's two hours."""
    with mid_month():
        yield


@pytest.mark.usefixtures("at_mid_month")
def test_a_settlement_emits_the_dashboards_metrics_and_logs_its_keys(local_stack: StackRunner, capsys):
    stack, account = local_stack, "acct-ops"
    start = MID_MONTH - timedelta(hours=2)
    metrics.clear_metrics()  # what earlier tests left in the shared buffer
    mails_before = len(stack.sent_emails())
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        handler = logger.registered_handler
        stream = io.StringIO()
        mp.setattr(handler, "stream", stream)
        events = [
            ("platform.accounts", "Account Created", "ops-created",
             {"occurred_at": iso(start), "email": "ops@example.com", "plan": "free"}),
            # claude-sonnet-4.5: 10,000 x 0.00024 + 20,000 x 0.0012 = 2.4 + 24 = 26.4 credits (of 50)
            ("platform.ai", "AI Usage Recorded", "ops-ai-1",
             {"occurred_at": iso(start + timedelta(minutes=1)), "feature": "chat", "model": "claude-sonnet-4.5",
              "input_tokens": 10_000, "output_tokens": 20_000}),
            # 5,000 x 0.00024 + 20,000 x 0.0012 = 1.2 + 24 = 25.2 credits: 23.6 left, 1.6 into debt
            ("platform.ai", "AI Usage Recorded", "ops-ai-2",
             {"occurred_at": iso(start + timedelta(minutes=2)), "feature": "chat", "model": "claude-sonnet-4.5",
              "input_tokens": 5_000, "output_tokens": 20_000}),
            # refused at the intake: an unknown model is never a free use
            ("platform.ai", "AI Usage Recorded", "ops-ai-bad",
             {"occurred_at": iso(start + timedelta(minutes=3)), "feature": "chat", "model": "no-such-model",
              "input_tokens": 1, "output_tokens": 1}),
        ]
        for source, detail_type, event_id, detail in events:
            stack.put_event(source, detail_type, {"event_id": event_id, "account_id": account, **detail})
            assert stack.drain()[1].ok
    records = emf_records(capsys.readouterr().out)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]

    values = metric_values(records)
    assert sum(values["EventsAccepted"]) == 3 and sum(values["EventsSettled"]) == 3
    assert len(values["SettlementLatency"]) == 3 and all(v >= 0 for v in values["SettlementLatency"])
    assert sorted(values["CreditsCharged"]) == [25.2, 26.4]
    assert values["DebtsOpened"] == [1.0]  # debt 0 before the second use, 1.6 credits after
    assert "AutoTopUps" not in values
    assert sum(values.get("MailsSent", [])) == len(stack.sent_emails()) - mails_before
    assert sum(values["EventsRejected"]) == 1
    assert metric_values(records, reason="unknown_price_item")["EventsRejected"] == [1.0]

    ours = [line for line in lines if line.get("function_name") in
            ("PlatformEventsFunction", "SettlementFunction", "OutboxDispatcherFunction")]
    assert {line["function_name"] for line in ours} == {"PlatformEventsFunction", "SettlementFunction",
                                                       "OutboxDispatcherFunction"}
    correlation: dict[str, set[str]] = defaultdict(set)
    for line in ours:
        assert line.get("account_id") == account, line
        assert line.get("event_id") in {"ops-created", "ops-ai-1", "ops-ai-2", "ops-ai-bad"}, line
        assert line.get("correlation_id"), line
        if line["function_name"] == "OutboxDispatcherFunction":
            assert line["correlation_id"] == line["event_id"]  # the change that asked for the effects
        else:
            correlation[line["event_id"]].add(line["correlation_id"])
    # the intake and the settlement of one event share the EventBridge event's id
    assert set(correlation) == {"ops-created", "ops-ai-1", "ops-ai-2", "ops-ai-bad"}
    assert all(len(ids) == 1 for ids in correlation.values())
    assert len({next(iter(ids)) for ids in correlation.values()}) == 4
    settled = [line for line in ours if line["message"] == "event settled"]
    assert sorted(line["event_id"] for line in settled) == ["ops-ai-1", "ops-ai-2", "ops-created"]


# ---------------------------------------------------------------------------------------- the month close
def run_check(ledger: Any, at: str, capsys: pytest.CaptureFixture[str]) -> dict[str, list[float]]:
    metrics.clear_metrics()
    capsys.readouterr()
    queue = RecordingQueue()
    monthly = load_handler("monthly_billing", work_queue=queue)
    work = load_handler("work", ledger=ledger, work_queue=queue)
    assert invoke(monthly, {"sweep": "month_close_check", "scheduled_time": at}) == \
        {"sweep": "month_close_check", "shards": 16}
    while queue.sent:
        bodies = queue.take()
        for start in range(0, len(bodies), 10):
            assert invoke(work, sqs_event(bodies[start:start + 10])) == {"batchItemFailures": []}
    return metric_values(emf_records(capsys.readouterr().out))


def run_month_boundary(ledger: Any, at: str) -> None:
    queue = RecordingQueue()
    monthly = load_handler("monthly_billing", work_queue=queue)
    work = load_handler("work", ledger=ledger, work_queue=queue)
    invoke(monthly, {"sweep": "month_boundary", "scheduled_time": at})
    while queue.sent:
        bodies = queue.take()
        for start in range(0, len(bodies), 10):
            assert invoke(work, sqs_event(bodies[start:start + 10])) == {"batchItemFailures": []}


def test_the_month_close_check_says_late_until_every_account_is_rolled(ledger, capsys):
    a, b, bare = Platform(ledger, "close-a"), Platform(ledger, "close-b"), Platform(ledger, "close-bare")
    for p in (a, b, bare):
        p.send("Account Created", "2026-03-01T00:00:00Z", email=f"{p.account_id}@example.com", plan="free")
    a.send("Container Created", "2026-03-30T00:00:00Z", container_id="c1", storage_gb=7)
    b.send("Container Created", "2026-03-31T00:00:00Z", container_id="c2", storage_gb=9)
    # bare has no container: the month job does not sweep it, so the check does not wait for it

    # 01:00 on April 1st and the month job has not run: both accounts with containers are behind.
    late = run_check(ledger, "2026-04-01T01:00:00Z", capsys)
    assert len(late["MonthCloseLate"]) == 16  # one figure per shard page
    assert max(late["MonthCloseLate"]) == 1 and sum(late["MonthCloseBehind"]) == 2
    assert sum(late["MonthCloseLate"]) == len({_shard(a.account_id), _shard(b.account_id)})

    # An event rolls account a into April by itself (a month boundary is a fact of time).
    a.send("Container Resized", "2026-04-01T00:30:00Z", container_id="c1", storage_gb=8)
    assert a.state().as_of == parse_time("2026-04-01T00:30:00Z")
    assert sum(run_check(ledger, "2026-04-01T01:00:00Z", capsys)["MonthCloseBehind"]) == 1  # b

    # The month job runs: nothing is behind and the check says so, page by page.
    run_month_boundary(ledger, "2026-04-01T00:00:00Z")
    assert b.state().as_of == parse_time("2026-04-01T00:00:00Z")
    done = run_check(ledger, "2026-04-01T01:00:00Z", capsys)
    assert done["MonthCloseLate"] == [0.0] * 16 and sum(done["MonthCloseBehind"]) == 0


def test_the_month_job_reports_it_started(ledger, capsys):
    metrics.clear_metrics()
    capsys.readouterr()
    run_month_boundary(ledger, "2026-04-01T00:00:00Z")
    assert metric_values(emf_records(capsys.readouterr().out))["MonthCloseStarted"] == [1.0]


def _shard(account_id: str) -> str:
    from billing.store.keys import active_shard

    return active_shard(account_id)
