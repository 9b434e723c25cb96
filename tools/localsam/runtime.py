"""Running a function of ``template.yaml`` in this process, the way ``sam local invoke`` would.

* The environment is Globals + the function's ``Environment`` with intrinsics resolved: ``!Ref`` of
  a parameter gives its default (or an override), ``!Ref``/``!GetAtt`` of a resource gives a local
  name supplied by the caller (the table name, a queue URL or ARN), falling back to the logical id.
* The handler is loaded from ``CodeUri`` + ``Handler`` as a fresh module with a name of its own
  (``localsam_fn_<LogicalId>``), so two functions' ``app.py`` never collide; it is kept for later
  invocations like a warm Lambda container. The layer (``billing``) is importable because the
  project is pip-installed.
* The handler gets a Lambda-like context object.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from localsam.template import ROOT, load_template

REGION = "us-east-1"
ACCOUNT = "123456789012"


class Resolver:
    """Resolves the intrinsic functions a local run needs to a plain value."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: Mapping[str, str] | None = None,
        refs: Mapping[str, str] | None = None,
        attrs: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        self.template = template
        self.parameters = {k: _default(v) for k, v in (template.get("Parameters") or {}).items()}
        self.parameters.update(parameters or {})
        self.refs = dict(refs or {})
        self.attrs = dict(attrs or {})

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": "local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": "",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.refs:
            return self.refs[name]
        if name in self.parameters:
            return self.parameters[name]
        return name

    def get_att(self, logical_id: str, attribute: str) -> str:
        if (logical_id, attribute) in self.attrs:
            return self.attrs[(logical_id, attribute)]
        if attribute == "Arn":
            return f"arn:aws:local:{REGION}:{ACCOUNT}:{logical_id}"
        return logical_id

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref":
                    return self.ref(str(arg))
                if key == "Fn::GetAtt":
                    logical_id, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                    return self.get_att(str(logical_id), str(attribute))
                if key == "Fn::Sub":
                    return self._sub(arg)
                if key == "Fn::Join":
                    sep, items = arg
                    return str(sep).join(str(self.resolve(i)) for i in items)
                if key == "Fn::If":
                    name, when_true, when_false = arg
                    return self.resolve(when_true if self.condition(str(name)) else when_false)
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        # plain builtins, not the decoder's node subclasses (str_node...)
        for kind in (bool, str, int, float):
            if isinstance(value, kind):
                return kind(value)
        return value

    def condition(self, name: str) -> bool:
        """A template condition's value with the parameters given (Equals, Not, And, Or, Condition)."""
        return self._truth((self.template.get("Conditions") or {})[name])

    def _truth(self, value: Any) -> bool:
        ((key, arg),) = value.items()
        if key == "Fn::Equals":
            left, right = (self.resolve(v) for v in arg)
            return bool(str(left) == str(right))
        if key == "Fn::Not":
            return not self._truth(arg[0])
        if key == "Fn::And":
            return all(self._truth(v) for v in arg)
        if key == "Fn::Or":
            return any(self._truth(v) for v in arg)
        if key == "Condition":
            return self.condition(str(arg))
        raise ValueError(f"{key} is not supported in a condition by the local runner")

    def exists(self, resource: Mapping[str, Any]) -> bool:
        """Whether a resource is created with these parameters (its ``Condition``, if any)."""
        name = resource.get("Condition")
        return name is None or self.condition(str(name))

    def _sub(self, arg: Any) -> str:
        import re

        text, variables = (arg[0], arg[1]) if isinstance(arg, list) else (arg, {})

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self.get_att(logical_id, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, str(text))


def _default(parameter: Mapping[str, Any]) -> str:
    default = parameter.get("Default", "")
    if isinstance(default, list):
        return ",".join(str(d) for d in default)
    return str(default)


@dataclass
class FunctionSpec:
    """One ``AWS::Serverless::Function`` of the template, Globals applied."""

    logical_id: str
    code_uri: Path
    handler: str
    memory_mb: int
    timeout: int
    environment: dict[str, Any]
    events: dict[str, dict[str, Any]]
    dead_letter_arn: Any = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def handler_path(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.code_uri / (module.replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rpartition(".")[2]

    def events_of_type(self, event_type: str) -> dict[str, dict[str, Any]]:
        return {name: dict(e.get("Properties") or {}) for name, e in self.events.items() if e.get("Type") == event_type}


def functions(template: dict[str, Any] | None = None, root: Path = ROOT) -> dict[str, FunctionSpec]:
    """The template's serverless functions by logical id."""
    template = template or load_template()
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    specs: dict[str, FunctionSpec] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = dict(resource.get("Properties") or {})
        env = dict(((globals_.get("Environment") or {}).get("Variables")) or {})
        env.update(((props.get("Environment") or {}).get("Variables")) or {})
        dlq = (props.get("DeadLetterQueue") or {}).get("TargetArn")
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            code_uri=(root / str(props.get("CodeUri", globals_.get("CodeUri", ".")))).resolve(),
            handler=str(props.get("Handler", globals_.get("Handler", "app.lambda_handler"))),
            memory_mb=int(props.get("MemorySize", globals_.get("MemorySize", 128))),
            timeout=int(props.get("Timeout", globals_.get("Timeout", 3))),
            environment=env,
            events={k: dict(v) for k, v in (props.get("Events") or {}).items()},
            dead_letter_arn=dlq,
            properties=props,
        )
    return specs


class LambdaContext:
    """The attributes and method of the Lambda Python context object that handlers use."""

    def __init__(self, spec: FunctionSpec, request_id: str | None = None) -> None:
        self.function_name = spec.logical_id
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = spec.memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{spec.logical_id}"
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.logical_id}"
        self.log_stream_name = f"local/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + spec.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class InvocationError(Exception):
    """The handler raised; ``error`` is what it raised."""

    def __init__(self, logical_id: str, error: BaseException) -> None:
        super().__init__(f"{logical_id} failed: {type(error).__name__}: {error}")
        self.logical_id = logical_id
        self.error = error


def load_module(path: Path, name: str) -> ModuleType:
    """A function's handler file, freshly executed as module ``name``; its code directory is on
    ``sys.path`` while it loads, as Lambda has it (sibling modules import by plain name)."""
    if not path.is_file():
        raise FileNotFoundError(f"handler file {path} does not exist")
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module: ModuleType = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(path.parent))
    return module


def function_module(function: str, root: Path = ROOT) -> ModuleType:
    """``functions/<function>/app.py`` as a fresh module (tests and benchmarks call its ``handle``)."""
    return load_module(root / "functions" / function / "app.py", f"fn_{function}")


def load_handler(spec: FunctionSpec) -> Callable[[Any, Any], Any]:
    """The handler function, from a freshly executed module named after the function."""
    module = load_module(spec.handler_path, f"localsam_fn_{spec.logical_id}")
    handler = getattr(module, spec.handler_name, None)
    if not callable(handler):
        raise AttributeError(f"{spec.handler_path} has no handler {spec.handler_name!r}")
    return handler


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Runtime:
    """Invokes the template's functions in this process, one invocation at a time."""

    def __init__(
        self,
        template: dict[str, Any] | None = None,
        resolver: Resolver | None = None,
        env_overrides: Mapping[str, str] | None = None,
        root: Path = ROOT,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.template = template or load_template()
        # The functions' clock (billing.wiring.clock) when not the real one: a simulation (the demo)
        # runs the stack at the moments it simulates.
        self.clock = clock
        self.resolver = resolver or Resolver(self.template)
        self.functions = functions(self.template, root)
        self.env_overrides = dict(env_overrides or {})
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._lock = threading.RLock()

    def spec(self, logical_id: str) -> FunctionSpec:
        try:
            return self.functions[logical_id]
        except KeyError:
            raise KeyError(f"no function {logical_id!r} in the template; have {sorted(self.functions)}") from None

    def environment(self, logical_id: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        spec = self.spec(logical_id)
        env = {k: str(self.resolver.resolve(v)) for k, v in spec.environment.items()}
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": logical_id,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "POWERTOOLS_TRACE_DISABLED": os.environ.get("POWERTOOLS_TRACE_DISABLED", "true"),
            }
        )
        env.update(self.env_overrides)
        env.update(overrides or {})
        return env

    def handler(self, logical_id: str) -> Callable[[Any, Any], Any]:
        if logical_id not in self._handlers:
            with patched_environ(self.environment(logical_id)):
                self._handlers[logical_id] = load_handler(self.spec(logical_id))
            deps = getattr(sys.modules.get(f"localsam_fn_{logical_id}"), "deps", None)
            if self.clock is not None and deps is not None:
                from billing import wiring

                deps.dependency_overrides[wiring.clock] = lambda: self.clock
        return self._handlers[logical_id]

    def invoke(self, logical_id: str, event: Any, env: Mapping[str, str] | None = None) -> Any:
        """The handler's result; raises :class:`InvocationError` when the handler raises."""
        with self._lock:
            spec = self.spec(logical_id)
            handler = self.handler(logical_id)
            # The layer's settings follow the environment, so each function sees its own.
            with patched_environ(self.environment(logical_id, env)):
                try:
                    return handler(event, LambdaContext(spec))
                except Exception as exc:
                    raise InvocationError(logical_id, exc) from exc


__all__ = [
    "FunctionSpec",
    "InvocationError",
    "LambdaContext",
    "Resolver",
    "Runtime",
    "functions",
    "load_handler",
]
