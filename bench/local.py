"""What the benches on DynamoDB Local set up alike: the process's environment (dummy credentials, a
region, Powertools quiet) and a DynamoDB Local with a fresh table made from template.yaml.

Call :func:`environment` before importing boto3 or the layer: Powertools reads its variables at import.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def environment(*, log_level: str = "WARNING", metrics: bool = False) -> None:
    """Dummy credentials (never a real profile), ``us-east-1``, tracing off; metrics off unless
    ``metrics`` (the settlement bench keeps Powertools' EMF output in the handler's time)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    os.environ["AWS_ACCESS_KEY_ID"] = "local"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "local"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ["POWERTOOLS_TRACE_DISABLED"] = "true"
    if metrics:
        os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "credit-billing")
        os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "CreditBilling")
        os.environ.setdefault("POWERTOOLS_LOG_LEVEL", log_level)
    else:
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "CreditBillingBench")
        os.environ["POWERTOOLS_LOG_LEVEL"] = log_level
    for path in (ROOT / "layers" / "billing", ROOT / "tools", ROOT):  # run without PYTHONPATH too
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


@contextmanager
def dynamodb_local(endpoint: str | None) -> Iterator[str]:
    """``endpoint`` (a running DynamoDB Local), else one started for the block; the process's
    DynamoDB clients point at it (``AWS_ENDPOINT_URL_DYNAMODB``)."""
    from localsam.dynamodb_local import DynamoDBLocal

    with ExitStack() as stack:
        url = endpoint or stack.enter_context(DynamoDBLocal()).endpoint_url
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = url
        yield url


def new_table(endpoint: str, prefix: str) -> str:
    """A fresh table of template.yaml's shape, without a stream (DynamoDB Local keeps every stream
    record in memory and slows every later write with them), named ``<prefix>-<random>``."""
    import boto3

    from localsam.template import create_table, load_template

    table = f"{prefix}-{uuid.uuid4().hex[:8]}"
    create_table(boto3.client("dynamodb", endpoint_url=endpoint), table, load_template(), stream=False)
    return table


@contextmanager
def bench_table(endpoint: str | None, prefix: str) -> Iterator[tuple[str, str]]:
    """DynamoDB Local (see :func:`dynamodb_local`) and a new table, the functions' ``TABLE_NAME``:
    yields (endpoint, table)."""
    with dynamodb_local(endpoint) as url:
        table = new_table(url, prefix)
        os.environ["TABLE_NAME"] = table
        yield url, table


def value_size(value: dict[str, Any]) -> int:
    """The size DynamoDB gives an attribute value (its documented rules: strings and binaries by
    their bytes, numbers 1 byte per two significant digits + 1, maps and lists 3 bytes + elements)."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        digits = v.lstrip("-").replace(".", "").strip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(value_size(x) + 1 for x in v)
    if kind in ("SS", "NS", "BS"):
        return sum(value_size({kind[0]: x}) for x in v)
    raise ValueError(kind)


def item_size(item: dict[str, Any] | None) -> int:
    """An item's size by DynamoDB's rules: its attribute names and values."""
    return sum(len(k.encode()) + value_size(v) for k, v in (item or {}).items())


class LambdaContext:
    """The attributes Powertools reads from a Lambda context."""

    function_name = "bench"
    function_version = "$LATEST"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "00000000-0000-0000-0000-000000000001"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000
