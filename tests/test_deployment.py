"""What a production account needs of the template (issue 23), read from template.yaml: least
privilege on the table, log retention, reserved concurrency, gradual deploys with rollback alarms,
on-failure destinations of asynchronous invocations, the HTTP API's access log and throttling, names
that let two stacks live side by side, and a reason next to every check the scanner is told to skip."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from localsam.http_api import routes
from localsam.template import TEMPLATE, load_template

RAW = load_template()
TEMPLATE_DATA: dict[str, Any] = json.loads(json.dumps(RAW))  # the decoder's nodes as plain JSON
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE_DATA["Resources"]
GLOBALS = TEMPLATE_DATA["Globals"]["Function"]
FUNCTIONS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
TABLE_ARN = {"Fn::GetAtt": ["BillingTable", "Arn"]}

# The DynamoDB actions of each function's code path (read from the code and recorded while the test
# suite ran every sample and route through the handlers): "table" is the base table, the others the
# indexes. A TransactWriteItems needs the actions of its items (PutItem, UpdateItem).
LEDGER_WRITES = {"GetItem", "BatchGetItem", "PutItem", "UpdateItem"}
DYNAMODB_GRANTS: dict[str, dict[str, set[str]]] = {
    "PlatformEventsFunction": {},  # validates and queues: no table access
    "MonthlyBillingFunction": {},  # puts shard pages on the work queue
    "SettlementFunction": {"table": LEDGER_WRITES},
    "WorkFunction": {"table": LEDGER_WRITES | {"Query"}, "active": {"Query"}, "due": {"Query"}},
    "ReconciliationFunction": {"table": {"GetItem", "Query", "Scan"}},  # read-only
    "OutboxDispatcherFunction": {"table": {"GetItem", "PutItem"}},  # the sent markers
    "UsageApiFunction": {"table": {"BatchGetItem", "Query"}, "gsi1": {"Query"}},  # read-only
    # GET /v1/members reads the month's member counters (one Query: O(members))
    "AccountApiFunction": {"table": LEDGER_WRITES | {"Query"}, "gsi1": {"Query"}},
    "PaymentWebhookFunction": {"table": LEDGER_WRITES},
    "WebPageFunction": {},  # static files
}


def dynamodb_grants(function: str) -> dict[str, set[str]]:
    grants: dict[str, set[str]] = {}
    for policy in FUNCTIONS[function]["Properties"].get("Policies", []):
        assert not any(str(k).startswith("DynamoDB") for k in policy), f"{function}: a broad SAM DynamoDB policy"
        for statement in policy.get("Statement", []):
            actions = [a for a in statement["Action"] if a.startswith("dynamodb:")]
            if not actions:
                continue
            resource = statement["Resource"]
            if resource == TABLE_ARN:
                target = "table"
            else:
                match = re.fullmatch(r"\$\{BillingTable\.Arn\}/index/(\w+)", resource["Fn::Sub"])
                assert match, resource
                target = match.group(1)
            grants.setdefault(target, set()).update(a.removeprefix("dynamodb:") for a in actions)
    return grants


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_each_function_may_call_only_the_dynamodb_actions_of_its_code_path(function: str) -> None:
    assert dynamodb_grants(function) == DYNAMODB_GRANTS[function]


def test_the_grants_name_only_indexes_the_table_has() -> None:
    indexes = {g["IndexName"] for g in RESOURCES["BillingTable"]["Properties"]["GlobalSecondaryIndexes"]}
    assert {t for grants in DYNAMODB_GRANTS.values() for t in grants} - {"table"} <= indexes


def test_the_table_cannot_be_deleted_by_accident() -> None:
    table = RESOURCES["BillingTable"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert table["Properties"]["DeletionProtectionEnabled"] is True


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_logs_to_its_own_group_with_a_retention(function: str) -> None:
    group = FUNCTIONS[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    props = RESOURCES[group]["Properties"]
    assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
    assert props["RetentionInDays"] == {"Fn::FindInMap": ["StageSettings", {"Ref": "Stage"}, "LogRetentionDays"]}
    assert "${AWS::StackName}" in props["LogGroupName"]["Fn::Sub"]


def test_every_stage_keeps_logs_for_a_retention_cloudwatch_allows() -> None:
    allowed = {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
    for stage in TEMPLATE_DATA["Parameters"]["Stage"]["AllowedValues"]:
        assert TEMPLATE_DATA["Mappings"]["StageSettings"][stage]["LogRetentionDays"] in allowed


def test_a_flood_on_a_public_route_cannot_take_settlements_concurrency() -> None:
    """Every function has a reservation (settlement's is guaranteed to it, the others' are caps), and the
    SQS consumers poll with at most their reservation, so that they never throttle themselves."""
    for name, function in FUNCTIONS.items():
        assert "ReservedConcurrentExecutions" in function["Properties"], name
    for name in ("SettlementFunction", "WorkFunction"):
        props = FUNCTIONS[name]["Properties"]
        [event] = props["Events"].values()
        assert event["Properties"]["ScalingConfig"]["MaximumConcurrency"] == props["ReservedConcurrentExecutions"]


def test_every_function_deploys_through_its_alias_and_rolls_back_on_its_errors_alarm() -> None:
    assert GLOBALS["AutoPublishAlias"] == "live"
    assert GLOBALS["DeploymentPreference"]["Type"].startswith(("Canary", "Linear"))
    for name, function in FUNCTIONS.items():
        props = function["Properties"]
        assert props["AutoPublishAliasAllProperties"] is True, name  # a new layer publishes a version too
        alarms = props["DeploymentPreference"]["Alarms"]
        assert {"Ref": f"{name}ErrorsAlarm"} in alarms, name
        assert RESOURCES[f"{name}ErrorsAlarm"]["Properties"]["MetricName"] == "Errors"


def test_the_settlement_path_switches_versions_at_once() -> None:
    """A canary would settle one account's consecutive events by two versions in turn."""
    kinds = {name: f["Properties"]["DeploymentPreference"].get("Type") for name, f in FUNCTIONS.items()}
    at_once = {name for name, kind in kinds.items() if kind is not None}
    assert at_once == {"SettlementFunction", "OutboxDispatcherFunction"}
    assert set(kinds.values()) == {None, "AllAtOnce"}


def test_every_asynchronously_invoked_function_keeps_its_failures() -> None:
    for name, function in FUNCTIONS.items():
        props = function["Properties"]
        kinds = {e["Type"] for e in props.get("Events", {}).values()}
        if not kinds & {"ScheduleV2", "EventBridgeRule"}:
            continue
        on_failure = props.get("EventInvokeConfig", {}).get("DestinationConfig", {}).get("OnFailure")
        assert on_failure or props.get("DeadLetterQueue"), name
        for event_name, event in props["Events"].items():
            assert "DeadLetterConfig" in event["Properties"], (name, event_name)
            if event["Type"] == "ScheduleV2":
                assert event["Properties"]["OmitName"] is True, (name, event_name)  # named by the stack


def test_the_http_api_logs_every_request_as_json() -> None:
    props = RESOURCES["BillingHttpApi"]["Properties"]
    line = json.loads(props["AccessLogSettings"]["Format"])
    assert {"requestId", "routeKey", "status", "responseLatency", "caller", "sub", "sourceIp"} <= set(line)
    group = props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert "RetentionInDays" in RESOURCES[group]["Properties"]


def test_the_routes_anyone_may_call_are_throttled_tighter() -> None:
    props = RESOURCES["BillingHttpApi"]["Properties"]
    public = {f"{r.method} {r.path}" for r in routes(RAW) if r.auth == "NONE"}
    assert public == set(props["RouteSettings"])
    assert public >= {"POST /v1/webhooks/payments", "GET /", "GET /v1/openapi.json"}
    for stage, values in TEMPLATE_DATA["Mappings"]["StageSettings"].items():
        assert values["PublicRateLimit"] < values["ApiRateLimit"], stage
        assert values["PublicBurstLimit"] < values["ApiBurstLimit"], stage


def test_every_name_unique_in_an_account_derives_from_the_stack() -> None:
    name_properties = ("QueueName", "AlarmName", "DashboardName", "LogGroupName", "LayerName", "Name")
    named = 0
    for logical_id, resource in RESOURCES.items():
        for key in name_properties:
            value = resource.get("Properties", {}).get(key)
            if value is None:
                continue
            named += 1
            assert "${AWS::StackName}" in json.dumps(value), (logical_id, key)
    assert named > 40
    assert RESOURCES["SenderIdentity"]["Condition"] == "CreatesSenderIdentity"  # one per account: asked for


def test_every_check_the_scanner_skips_says_why() -> None:
    skips = [line for line in Path(TEMPLATE).read_text().splitlines() if "checkov:skip" in line]
    assert skips
    for line in skips:
        assert re.fullmatch(r"\s*# checkov:skip=CKV2?_AWS_\d+:\S.{30,}", line), line
