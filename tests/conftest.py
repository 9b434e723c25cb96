"""Shared fixtures: one DynamoDB Local per test session, a fresh table (from template.yaml) per test.

Set ``DYNAMODB_ENDPOINT`` to use an already running DynamoDB Local instead of starting one. Under
pytest-xdist each worker is a process of its own with its own DynamoDB Local.

Set ``BILLING_TEST_NOW`` (``2028-02-29T12:00:00Z``) to run the suite at another date (tests/travel.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import boto3
import pytest
import time_machine

from billing.domain.catalog import PriceCatalog, load_catalog
from billing.store.ledger import Ledger
from localsam.dynamodb_local import DynamoDBLocal
from localsam.runner import StackRunner
from localsam.stripe_local import LocalStripe
from localsam.template import create_table, load_template
from tests.travel import travel_from_env

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "CreditBillingTests")


_TRAVEL = pytest.StashKey[time_machine.travel]()


def pytest_configure(config: pytest.Config) -> None:
    """Before collection, so that times tests compute at import are travelled too."""
    traveller = travel_from_env()
    if traveller is not None:
        config.stash[_TRAVEL] = traveller


def pytest_unconfigure(config: pytest.Config) -> None:
    traveller = config.stash.get(_TRAVEL, None)
    if traveller is not None:
        traveller.stop()


def pytest_report_header(config: pytest.Config) -> str | None:
    return f"BILLING_TEST_NOW: the clock starts at {os.environ['BILLING_TEST_NOW']}" \
        if config.stash.get(_TRAVEL, None) is not None else None


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
def local_stripe() -> Iterator[LocalStripe]:
    """The Stripe stand-in (localstripe) on a free loopback port for the session, as DynamoDB Local;
    ``STRIPE_API_BASE`` (billing.config) points the Stripe adapter at it. Never the real Stripe."""
    with LocalStripe() as stand_in, pytest.MonkeyPatch.context() as mp:
        mp.setenv("STRIPE_API_BASE", stand_in.url)
        yield stand_in


@pytest.fixture(scope="session")
def _template() -> dict:
    return load_template()


@pytest.fixture()
def table_name(dynamodb_endpoint: str, _template: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"billing-{uuid.uuid4().hex[:12]}"
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    create_table(client, name, _template, stream=False)
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
def module_ledger(dynamodb_endpoint: str, _template: dict) -> Iterator[Ledger]:
    """A table for a whole module (and ``TABLE_NAME`` naming it), for tests that only read one
    scenario: built once instead of once per test."""
    name = f"billing-{uuid.uuid4().hex[:12]}"
    client = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint)
    create_table(client, name, _template, stream=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TABLE_NAME", name)
        yield Ledger(table_name=name, catalog=load_catalog(), sleep=lambda _: None)
    client.delete_table(TableName=name)


@pytest.fixture(scope="module")
def local_stack(dynamodb_endpoint: str) -> Iterator[StackRunner]:
    """The whole template running locally (see tools/localsam/runner.py) on the session's DynamoDB
    Local, with a table of its own; one per test module."""
    with StackRunner(dynamodb_endpoint=dynamodb_endpoint) as stack:
        yield stack
