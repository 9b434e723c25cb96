"""What each module loads at import.

* The event-driven functions (EventBridge, schedule, SQS) stay free of the HTTP side of the layer,
  and no function loads pydantic, which keeps their cold start close to that of boto3
  (bench/import_bench.py measures it; this only guards the boundaries, it times nothing).
* The domain (``billing.domain``) is pure: none of its modules loads boto3, PynamoDB or pydantic.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from localsam.runtime import FunctionSpec, functions
from tests.helpers import ROOT

SPECS = functions()
HTTP = {name for name, spec in SPECS.items() if spec.events_of_type("HttpApi")}
EVENT_DRIVEN = sorted(set(SPECS) - HTTP)
API_FUNCTIONS = ("UsageApiFunction", "AccountApiFunction", "PaymentWebhookFunction")

# Loads the handler by file path, as the Lambda runtime does, and lists what got imported.
PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec); sys.modules["app"] = module; spec.loader.exec_module(module)
print(json.dumps(sorted(sys.modules)))
"""

DATA_CLASSES = "aws_lambda_powertools.utilities.data_classes"
HTTP_ONLY = ("pydantic", "pydantic_core", "aws_lambda_powertools.event_handler", "billing.api")
DOMAIN = sorted(
    f"billing.domain.{path.stem}"
    for path in (ROOT / "layers/billing/billing/domain").glob("*.py")
    if path.stem != "__init__"
)
NOT_IN_DOMAIN = ("boto3", "botocore", "pynamodb", "pydantic", "aws_lambda_powertools")


def imported_by(spec: FunctionSpec) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWERTOOLS_")}
    env.update({k: str(v) for k, v in spec.environment.items() if isinstance(v, str | int)})
    out = subprocess.run([sys.executable, "-c", PROBE, str(spec.handler_path)], env=env,
                         cwd=spec.code_uri, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_template_has_both_kinds_of_function():
    assert "SettlementFunction" in EVENT_DRIVEN and "UsageApiFunction" in HTTP
    assert len(EVENT_DRIVEN) == 6 and len(HTTP) == 4  # usage, account, payment webhook, the page


@pytest.mark.parametrize("logical_id", EVENT_DRIVEN)
def test_event_driven_handler_imports_nothing_of_the_http_side(logical_id):
    modules = imported_by(SPECS[logical_id])
    assert "billing.store.ledger" in modules and "msgspec" in modules  # the probe did load the handler
    assert sorted(m for m in modules if m.split(".")[0] in HTTP_ONLY or m.startswith(HTTP_ONLY)) == []


@pytest.mark.parametrize("logical_id", API_FUNCTIONS)
def test_api_handlers_validate_with_msgspec_and_load_one_resolver(logical_id):
    """The HTTP API's handlers validate with msgspec structs (billing.api.routes), not Powertools'
    pydantic validation; of Powertools' Event Handler they load the API Gateway resolver alone (not
    AppSync's and the others: billing.api.powertools); the OpenAPI document waits for its request."""
    modules = imported_by(SPECS[logical_id])
    assert {"aws_lambda_powertools.event_handler.api_gateway", "billing.api.routes", "msgspec"} <= modules
    assert sorted(m for m in modules if m.split(".")[0] in ("pydantic", "pydantic_core")) == []
    assert "aws_lambda_powertools.event_handler.appsync" not in modules
    assert "billing.api.openapi" not in modules
    # of Powertools' event data classes, the four modules the resolver asks for (issue 19: the
    # package's __init__ loads ~60, ~10 ms of the cold start); and no argparse (a command line's)
    data_classes = {m.rsplit(".", 1)[1] for m in modules if m.startswith(DATA_CLASSES + ".")}
    assert data_classes == {"alb_event", "api_gateway_proxy_event", "bedrock_agent_event", "common",
                            "lambda_function_url_event", "shared_functions", "vpc_lattice"}
    assert "argparse" not in modules


def test_the_probe_sees_pydantic_when_it_is_loaded():
    """pydantic is installed in the dev environment (the SAM tools use it): the probe would see it."""
    pytest.importorskip("pydantic")
    assert "pydantic" in imported_with("pydantic")


def test_the_page_handler_loads_neither_the_sdk_nor_the_validation_stack():
    """WebPageFunction serves files: its cold start is the standard library and billing.api.static."""
    modules = imported_by(SPECS["WebPageFunction"])
    assert "billing.api.static" in modules
    heavy = ("boto3", "botocore", "pynamodb", "pydantic", "aws_lambda_powertools", "msgspec")
    assert sorted(m for m in modules if m.split(".")[0] in heavy) == []


def imported_with(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


@pytest.mark.parametrize("module", DOMAIN)
def test_the_domain_is_pure(module):
    modules = imported_with(module)
    assert module in modules
    assert sorted(m for m in modules if m.split(".")[0] in NOT_IN_DOMAIN) == []


def test_the_purity_probe_sees_the_sdk_when_it_is_there():
    assert {"pynamodb", "botocore"} <= imported_with("billing.store.ledger")


# ---------------------------------------------------------------------- the layer's import graph

LAYER = ROOT / "layers/billing/billing"


def _module_name(path: Any) -> str:
    parts = path.relative_to(LAYER.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_imports() -> dict[str, set[str]]:
    """Every module of the layer and the layer's modules it names in an import, wherever the import
    is (at the top, in a function, under TYPE_CHECKING): the static graph, not what one run loads."""
    modules = {_module_name(path): path for path in LAYER.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        named: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                named.add(base)
                named.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in named if m in modules and m != name}
    return graph


def test_the_layer_has_no_import_cycle() -> None:
    graph = layer_imports()
    assert "billing.api.views" in graph and "billing.services.purchases" in graph  # the walk found the layer
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(module):], module]))
        if module in done:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_services_store_and_domain_never_import_the_api() -> None:
    """Arrows point down: the services return domain records and the API renders them."""
    graph = layer_imports()
    below = sorted(m for m in graph if m.startswith(("billing.services", "billing.store", "billing.domain")))
    assert below
    assert {m: sorted(i for i in graph[m] if i.startswith("billing.api")) for m in below if any(
        i.startswith("billing.api") for i in graph[m])} == {}
