"""The analytics export (issue 19), locally: with ``AnalyticsExport=true`` the runner writes what the
template's pipe and Firehose would, Parquet files under usage/account=<id>/day=<day>/; read back with
pyarrow they give the usage API's totals, day by day."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from localsam.analytics import PARTITION_QUERY, AnalyticsExport, partition, render
from localsam.runner import StackRunner
from localsam.template import load_template

NOW = datetime(2026, 3, 12, 9, tzinfo=UTC)
ACCOUNT = "acct-analytics"


@pytest.fixture(scope="module")
def exported(dynamodb_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackRunner, Path]]:
    folder = tmp_path_factory.mktemp("analytics")
    with StackRunner(dynamodb_endpoint=dynamodb_endpoint, parameters={"AnalyticsExport": "true"},
                     analytics_dir=folder, clock=lambda: NOW) as stack:
        def put(detail_type: str, at: str, event_id: str, **fields: object) -> None:
            source = "platform.accounts" if detail_type == "Account Created" else "platform.containers"
            detail = {"event_id": event_id, "account_id": ACCOUNT, "occurred_at": at, **fields}
            assert stack.put_event(source, detail_type, detail).ok

        put("Account Created", "2026-03-01T00:00:00Z", "a-open", email="a@example.com", plan="membership")
        put("Container Created", "2026-03-10T08:00:00Z", "a-c1", container_id="c1", storage_gb=10,
            labels={"team": "search"})
        put("Container Started", "2026-03-10T08:00:00Z", "a-s1", container_id="c1", run_id="r1", tier="small",
            code_supporter=False)
        put("Container Stopped", "2026-03-10T10:00:00Z", "a-x1", container_id="c1", run_id="r1", traffic_bytes=0)
        put("Container Started", "2026-03-11T12:00:00Z", "a-s2", container_id="c1", run_id="r2", tier="small",
            code_supporter=False)
        put("Container Stopped", "2026-03-11T12:30:00Z", "a-x2", container_id="c1", run_id="r2", traffic_bytes=0)
        stack.drain()
        yield stack, folder


def usage_by_day(folder: Path) -> dict[str, Decimal]:
    """What an Athena query would sum: the lines of deductions (+) and corrections (-), by day."""
    table = ds.dataset(folder / "usage", format="parquet", partitioning="hive").to_table()
    days: dict[str, Decimal] = defaultdict(Decimal)
    seen: set[str] = set()
    for row in table.to_pylist():
        assert row["account"] == ACCOUNT and row["pk"] == f"ACCOUNT#{ACCOUNT}"
        assert row["sk"] not in seen  # each entry once
        seen.add(row["sk"])
        entry = json.loads(row["body"])
        sign = {"deduction": 1, "correction": -1}.get(row["entry_type"], 0)
        days[row["day"]] += Decimal(sign * sum(int(line["amount"]) for line in entry.get("lines", []))) / 1_000_000
    return dict(days)


def test_the_export_writes_parquet_by_account_and_day(exported: tuple[StackRunner, Path]) -> None:
    _, folder = exported
    parts = sorted(p.relative_to(folder).parent.as_posix() for p in folder.rglob("*.parquet"))
    # the opening grant (March 1st) and the two days of runs, each in its own partition
    assert sorted(set(parts)) == [f"usage/account={ACCOUNT}/day=2026-03-{d}" for d in ("01", "10", "11")]


def test_the_exported_usage_equals_the_usage_api(exported: tuple[StackRunner, Path]) -> None:
    stack, folder = exported
    from_files = usage_by_day(folder)
    # small is 6.80 credits an hour; storage (10 GB) is within Membership's 15 GB:
    # March 10th 08:00 -> 10:00 = 2 h = 13.60; March 11th 12:00 -> 12:30 = 0.5 h = 3.40
    assert from_files == {"2026-03-01": 0, "2026-03-10": Decimal("13.6"), "2026-03-11": Decimal("3.4")}
    response = stack.api_request("GET", "/v1/usage", sub=ACCOUNT,
                                 query={"from": "2026-03-10", "to": "2026-03-11", "granularity": "day"})
    assert response.status == 200, response.body
    body = json.loads(response.body)
    assert Decimal(body["total"]) == sum(from_files.values()) == Decimal("17")
    assert {p["date"]: Decimal(p["amount"]) for p in body["series"]} == {
        day: amount for day, amount in from_files.items() if day >= "2026-03-10"}


def test_the_runner_follows_the_template() -> None:
    """The pipe's input template and filter, the partitioning query and the Glue columns are read from
    template.yaml; the one thing written twice, the JQ query, must be the template's."""
    export = AnalyticsExport(load_template(), Path("unused"))
    assert [name for name, _ in export.columns] == ["pk", "sk", "entry_type", "body"]
    record = {"dynamodb": {"NewImage": {"pk": {"S": "ACCOUNT#a-1"}, "sk": {"S": "LEDGER#2026-03-10T10:00:00Z#e1"},
                                        "entry_type": {"S": "deduction"}, "body": {"S": '{"x": "a \\"q\\""}'}}}}
    row = render(export.input_template, record)
    assert row == {"pk": "ACCOUNT#a-1", "sk": "LEDGER#2026-03-10T10:00:00Z#e1", "entry_type": "deduction",
                   "body": '{"x": "a \\"q\\""}'}
    assert partition(row) == {"account": "a-1", "day": "2026-03-10"}
    other = load_template()
    processors = other["Resources"]["AnalyticsDeliveryStream"]["Properties"]["ExtendedS3DestinationConfiguration"][
        "ProcessingConfiguration"]["Processors"]
    processors[0]["Parameters"][0]["ParameterValue"] = PARTITION_QUERY.replace("day", "date")
    with pytest.raises(ValueError, match="partitions by"):
        AnalyticsExport(other, Path("unused"))


def test_the_export_is_off_unless_asked() -> None:
    assert AnalyticsExport.enabled({}) is False
    assert AnalyticsExport.enabled({"AnalyticsExport": "false"}) is False
    assert AnalyticsExport.enabled({"AnalyticsExport": "true"}) is True
