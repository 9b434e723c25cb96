"""Reading ``template.yaml`` with cfn-lint's CloudFormation decoder (intrinsic tags included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    template, matches = decode(str(path))
    if matches or template is None:
        raise ValueError(f"cannot read {path}: {[str(m) for m in matches]}")
    return dict(template)


def table_definition(
    template: dict[str, Any], logical_id: str = "BillingTable", stream: bool = True
) -> dict[str, Any]:
    """CreateTable parameters of an ``AWS::DynamoDB::Table`` resource (without its name); without its
    stream when ``stream`` is False."""
    props = template["Resources"][logical_id]["Properties"]
    params: dict[str, Any] = {
        "AttributeDefinitions": [dict(a) for a in props["AttributeDefinitions"]],
        "KeySchema": [dict(k) for k in props["KeySchema"]],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    spec = props.get("StreamSpecification")
    if spec and stream:
        params["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": spec["StreamViewType"]}
    if props.get("GlobalSecondaryIndexes"):
        params["GlobalSecondaryIndexes"] = [
            {
                "IndexName": g["IndexName"],
                "KeySchema": [dict(k) for k in g["KeySchema"]],
                "Projection": dict(g["Projection"]),
            }
            for g in props["GlobalSecondaryIndexes"]
        ]
    return params


def create_table(
    client: Any, table_name: str, template: dict[str, Any] | None = None, stream: bool = True
) -> None:
    """Create the billing table as ``template.yaml`` defines it. ``stream=False`` for a table whose
    stream nobody reads (a test of the services, a bench): DynamoDB Local keeps every stream record
    of the process in memory and each later write of any table slows with them (measured: 450 writes
    of a 100 KB item made the next 450 ten times slower), so only the local stack's table has one."""
    params = table_definition(template or load_template(), stream=stream)
    client.create_table(TableName=table_name, **params)
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
