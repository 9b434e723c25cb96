"""Shared fixtures: one DynamoDB Local per test session, a fresh table (from template.yaml) per test.

Set ``DYNAMODB_ENDPOINT`` to use an already running DynamoDB Local instead of starting one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest

from billing.domain.catalog import PriceCatalog, load_catalog
from billing.store.ledger import Ledger
from localsam.dynamodb_local import DynamoDBLocal
from localsam.runner import StackRunner
from localsam.template import create_table, load_template

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "CreditBillingTests")


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    """Metrics are off in tests, and Powertools keeps what a disabled flush did not send: clear it."""
    from billing.observability import metrics

    yield
    metrics.clear_metrics()


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    external = os.environ.get("DYNAMODB_ENDPOINT")
    if external:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = external
        yield external
        return
    with DynamoDBLocal() as ddb:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = ddb.endpoint_url
        yield ddb.endpoint_url


@pytest.fixture(scope="session")
def _template() -> dict:
    return load_template()


@pytest.fixture()
def table_name(dynamodb_endpoint: str, _template: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"billing-{uuid.uuid4().hex[:12]}"
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    create_table(client, name, _template)
    monkeypatch.setenv("TABLE_NAME", name)
    yield name
    client.delete_table(TableName=name)


@pytest.fixture()
def catalog() -> PriceCatalog:
    return load_catalog()


@pytest.fixture()
def ledger(table_name: str, catalog: PriceCatalog) -> Ledger:
    return Ledger(table_name=table_name, catalog=catalog, sleep=lambda _: None)


@pytest.fixture(scope="module")
def local_stack(dynamodb_endpoint: str) -> Iterator[StackRunner]:
    """The whole template running locally (see tools/localsam/runner.py) on the session's DynamoDB
    Local, with a table of its own; one per test module."""
    with StackRunner(dynamodb_endpoint=dynamodb_endpoint) as stack:
        yield stack
