"""EventBridge event-pattern matching (the subset a rule in ``template.yaml`` can use locally).

Supported: exact values (strings, numbers, booleans, null) in lists, nested keys (``detail``...),
arrays in the event (any element may match), ``prefix``, ``suffix``, ``equals-ignore-case``,
``anything-but`` (a value, a list, or ``{"prefix": ...}`` / ``{"suffix": ...}``), ``exists`` and
``numeric`` comparisons, and ``$or``.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def matches(pattern: dict[str, Any], event: Any) -> bool:
    """Whether ``event`` (a dict) matches the EventBridge ``pattern``."""
    if not isinstance(pattern, dict):
        raise ValueError("an event pattern is a JSON object")
    if not isinstance(event, dict):
        return False
    for key, condition in pattern.items():
        if key == "$or":
            if not any(matches(alternative, event) for alternative in condition):
                return False
            continue
        value = event.get(key, _MISSING)
        if isinstance(condition, dict):
            if value is _MISSING or not isinstance(value, dict):
                # a nested pattern whose fields all say "exists: false" matches a missing object
                if not _only_absent(condition):
                    return False
                continue
            if not matches(condition, value):
                return False
        elif isinstance(condition, list):
            if not _field_matches(condition, value):
                return False
        else:
            raise ValueError(f"pattern field {key!r} must be a list or an object, not {condition!r}")
    return True


def _only_absent(pattern: dict[str, Any]) -> bool:
    for condition in pattern.values():
        if isinstance(condition, dict):
            if not _only_absent(condition):
                return False
        elif not (isinstance(condition, list) and any(_is_exists_false(c) for c in condition)):
            return False
    return True


def _is_exists_false(rule: Any) -> bool:
    return isinstance(rule, dict) and rule.get("exists") is False


def _field_matches(rules: list[Any], value: Any) -> bool:
    if value is _MISSING:
        return any(_is_exists_false(rule) for rule in rules)
    values = value if isinstance(value, list) else [value]
    for rule in rules:
        if isinstance(rule, dict) and "exists" in rule:
            if bool(rule["exists"]) == (value is not _MISSING):
                return True
            continue
        if isinstance(rule, dict) and "anything-but" in rule:
            # for an array, anything-but holds when no element is excluded
            if values and all(_anything_but(rule["anything-but"], v) for v in values):
                return True
            continue
        if any(_rule_matches(rule, v) for v in values):
            return True
    return False


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return float(expected) == float(actual)
    if isinstance(expected, str) and isinstance(actual, str):
        return str(expected) == str(actual)
    return False


def _rule_matches(rule: Any, value: Any) -> bool:
    if not isinstance(rule, dict):
        return _same(rule, value)
    if "prefix" in rule:
        prefix = rule["prefix"]
        if isinstance(prefix, dict):  # {"prefix": {"equals-ignore-case": "..."}}
            return isinstance(value, str) and value.lower().startswith(str(prefix["equals-ignore-case"]).lower())
        return isinstance(value, str) and value.startswith(prefix)
    if "suffix" in rule:
        suffix = rule["suffix"]
        if isinstance(suffix, dict):
            return isinstance(value, str) and value.lower().endswith(str(suffix["equals-ignore-case"]).lower())
        return isinstance(value, str) and value.endswith(suffix)
    if "equals-ignore-case" in rule:
        return isinstance(value, str) and value.lower() == str(rule["equals-ignore-case"]).lower()
    if "numeric" in rule:
        return _numeric(rule["numeric"], value)
    if "anything-but" in rule:
        return _anything_but(rule["anything-but"], value)
    raise ValueError(f"unsupported pattern rule {rule!r}")


def _anything_but(excluded: Any, value: Any) -> bool:
    if isinstance(excluded, dict):
        return not _rule_matches(excluded, value)
    options = excluded if isinstance(excluded, list) else [excluded]
    return not any(_same(option, value) for option in options)


def _numeric(spec: list[Any], value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    ops = {
        "=": lambda a, b: a == b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    return all(ops[spec[i]](value, spec[i + 1]) for i in range(0, len(spec), 2))


__all__ = ["matches"]
