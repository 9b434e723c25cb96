"""Powertools' Event Handler as the HTTP functions use it: the API Gateway HTTP API resolver and its
response, without the cost of the ``aws_lambda_powertools.event_handler`` package's ``__init__``.

That ``__init__`` imports every resolver Powertools has (AppSync's pulls in ``asyncio``, Bedrock
agents', VPC Lattice's...), about 8 ms of each HTTP function's cold start for code it never runs
(bench/import_bench.py). Here the package is registered without running its ``__init__``, so that
importing ``aws_lambda_powertools.event_handler.api_gateway`` loads only what the API Gateway
resolver needs. The package stays complete for anyone else: the first attribute asked of it that
is not a submodule (``from aws_lambda_powertools.event_handler import AppSyncResolver``) runs its
``__init__`` then. When the package is already imported, nothing changes.

The same for ``aws_lambda_powertools.utilities.data_classes``, whose ``__init__`` imports every event
data class Powertools has (Kinesis, S3, Cognito... about 60 modules, ~10 ms) while the resolver asks
for seven classes of four modules: a name its ``__init__`` imports from a submodule (read from its
source) loads that submodule only; any other name runs the ``__init__`` (issue 19: the usage API's
import was 1.56x boto3's).

Import Powertools' Event Handler through this module (or :mod:`billing.api.http`) in the HTTP
functions, before anything else imports it; ``tests/test_import_boundaries.py`` checks that their
handlers do not load the other resolvers.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from typing import Any

PACKAGE = "aws_lambda_powertools.event_handler"
DATA_CLASSES = "aws_lambda_powertools.utilities.data_classes"


def names_of_init(spec: importlib.machinery.ModuleSpec) -> dict[str, str]:
    """What a package's ``__init__`` imports from its own submodules (``from .x import A, B``):
    {"A": "x", "B": "x"}, read from its source without running it."""
    import ast  # loaded already by the resolver's imports (inspect)

    source = spec.loader.get_source(spec.name) if isinstance(spec.loader, importlib.abc.InspectLoader) else None
    names: dict[str, str] = {}
    for node in ast.parse(source or "").body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            names.update((alias.asname or alias.name, node.module) for alias in node.names)
    return names


def defer_package_init(name: str, by_submodule: bool = False) -> None:
    """Register package ``name`` in ``sys.modules`` with its ``__init__`` run on first need only;
    with ``by_submodule``, a name its ``__init__`` imports from a submodule is taken from that
    submodule alone (so a submodule that imports a sibling's name from the package, as Powertools'
    ``sqs_event`` does ``S3Event``, never runs the ``__init__`` halfway through its own import)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    submodules: dict[str, str] = {}

    def complete(attribute: str) -> Any:
        if by_submodule and not submodules:
            submodules.update(names_of_init(spec))
        if attribute in submodules:
            value = getattr(importlib.import_module(f"{name}.{submodules[attribute]}"), attribute)
            setattr(package, attribute, value)
            return value
        if importlib.util.find_spec(f"{name}.{attribute}") is not None:
            raise AttributeError(attribute)  # a submodule: the import system loads it as usual
        del package.__dict__["__getattr__"]
        loader.exec_module(package)  # the package's own __init__, once
        return getattr(package, attribute)

    package.__dict__["__getattr__"] = complete  # PEP 562: asked only for names the module lacks
    sys.modules[name] = package


defer_package_init(PACKAGE)
defer_package_init(DATA_CLASSES, by_submodule=True)

from aws_lambda_powertools.event_handler.api_gateway import APIGatewayHttpResolver, Response  # noqa: E402
from aws_lambda_powertools.event_handler.exceptions import NotFoundError  # noqa: E402

__all__ = ["APIGatewayHttpResolver", "NotFoundError", "Response", "defer_package_init"]
