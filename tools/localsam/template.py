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


def table_definition(template: dict[str, Any], logical_id: str = "BillingTable") -> dict[str, Any]:
    """CreateTable parameters of an ``AWS::DynamoDB::Table`` resource (without its name)."""
    props = template["Resources"][logical_id]["Properties"]
    params: dict[str, Any] = {
        "AttributeDefinitions": [dict(a) for a in props["AttributeDefinitions"]],
        "KeySchema": [dict(k) for k in props["KeySchema"]],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    stream = props.get("StreamSpecification")
    if stream:
        params["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
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


def create_table(client: Any, table_name: str, template: dict[str, Any] | None = None) -> None:
    """Create the billing table as ``template.yaml`` defines it."""
    params = table_definition(template or load_template())
    client.create_table(TableName=table_name, **params)
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
