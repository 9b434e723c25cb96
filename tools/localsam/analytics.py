"""The analytics export locally: what the template's ``AnalyticsPipe`` and ``AnalyticsDeliveryStream``
do on AWS, written to a folder instead of S3.

On AWS (``AnalyticsExport=true``) the pipe reads the table's stream, keeps the records its
``FilterCriteria`` match (new ledger entries), shapes each with its ``InputTemplate`` and puts it on
Firehose, which partitions it with its ``MetadataExtractionQuery`` (JQ) and writes Parquet typed by the
Glue table ``AnalyticsLedgerTable`` under its ``Prefix``. Here the same records, read from the
template (filter, input template, prefix, the Glue table's columns), are written with pyarrow to
``<folder>/usage/account=<id>/day=<YYYY-MM-DD>/part-<sequence>.parquet``: the files Athena would read.
JQ is not evaluated here: :func:`partition` is the query in Python, and :class:`AnalyticsExport`
refuses a template whose query is another one (so the two cannot drift apart).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from localsam.patterns import matches

PARAMETER = "AnalyticsExport"
PIPE, DELIVERY, TABLE = "AnalyticsPipe", "AnalyticsDeliveryStream", "AnalyticsLedgerTable"
PARTITION_QUERY = '{account: .pk | ltrimstr("ACCOUNT#"), day: .sk[7:17]}'
PLACEHOLDER = re.compile(r"<\$\.([^>]+)>")
GLUE_TYPES = {"string": "string", "bigint": "int64", "int": "int32", "double": "float64", "boolean": "bool"}


def partition(record: dict[str, Any]) -> dict[str, str]:
    """``PARTITION_QUERY`` (the delivery stream's JQ) on a record."""
    pk, sk = str(record["pk"]), str(record["sk"])
    return {"account": pk.removeprefix("ACCOUNT#"), "day": sk[7:17]}


def render(template: str, record: dict[str, Any]) -> dict[str, Any]:
    """A pipe's InputTemplate on a stream record: each ``<$.path>`` becomes the JSON of that value
    (a string value quoted, as EventBridge's input transformation does)."""
    def value(match: re.Match[str]) -> str:
        node: Any = record
        for step in match.group(1).split("."):
            node = node.get(step) if isinstance(node, dict) else None
        return json.dumps(node)

    rendered: dict[str, Any] = json.loads(PLACEHOLDER.sub(value, template))
    return rendered


class AnalyticsExport:
    """The pipe and the delivery stream of ``template``, writing under ``folder``."""

    def __init__(self, template: dict[str, Any], folder: Path) -> None:
        resources = template.get("Resources") or {}
        pipe = resources[PIPE]["Properties"]
        destination = resources[DELIVERY]["Properties"]["ExtendedS3DestinationConfiguration"]
        table = resources[TABLE]["Properties"]["TableInput"]
        criteria = ((pipe.get("SourceParameters") or {}).get("FilterCriteria") or {}).get("Filters") or []
        self.filters = [json.loads(str(f["Pattern"])) for f in criteria]
        self.input_template = str(pipe["TargetParameters"]["InputTemplate"])
        queries = [p["ParameterValue"] for processor in destination["ProcessingConfiguration"]["Processors"]
                   for p in processor["Parameters"] if p["ParameterName"] == "MetadataExtractionQuery"]
        if queries != [PARTITION_QUERY]:
            raise ValueError(f"{DELIVERY} partitions by {queries}; localsam.analytics knows {PARTITION_QUERY}")
        self.prefix = str(destination["Prefix"])
        self.columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
        self.folder = folder
        self.written: list[Path] = []

    @staticmethod
    def enabled(parameters: dict[str, Any]) -> bool:
        return str(parameters.get(PARAMETER, "false")) == "true"

    def export(self, records: list[dict[str, Any]]) -> None:
        """Write the stream records the pipe would take, one Parquet file per partition and call."""
        rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        first: dict[tuple[str, str], str] = {}
        for record in records:
            if self.filters and not any(matches(f, record) for f in self.filters):
                continue
            row = render(self.input_template, record)
            key = tuple(partition(row).values())
            rows[key].append(row)  # type: ignore[index]
            first.setdefault(key, record["dynamodb"]["SequenceNumber"])  # type: ignore[arg-type]
        if not rows:
            return
        import pyarrow as pa  # a dev dependency: only the local export writes Parquet
        import pyarrow.parquet as pq

        schema = pa.schema([(name, getattr(pa, GLUE_TYPES[kind])()) for name, kind in self.columns])
        for (account, day), batch in rows.items():
            where = self.prefix.replace("!{partitionKeyFromQuery:account}", account).replace(
                "!{partitionKeyFromQuery:day}", day)
            path = self.folder / where / f"part-{first[(account, day)]}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist([{name: row.get(name) for name, _ in self.columns} for row in batch],
                                         schema=schema)
            pq.write_table(table, path, compression="snappy")
            self.written.append(path)
