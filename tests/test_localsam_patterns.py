"""EventBridge pattern matching of the local runner, and the template's own rules."""

from __future__ import annotations

import pytest

from localsam.patterns import matches
from localsam.runtime import Resolver, functions
from localsam.template import load_template


def event(detail_type: str = "Container Started", source: str = "platform.containers", **detail: object) -> dict:
    return {
        "version": "0",
        "id": "1",
        "source": source,
        "detail-type": detail_type,
        "account": "1",
        "time": "2026-11-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"source": ["platform.containers"]}, True),
        ({"source": ["platform.ai", "platform.containers"]}, True),
        ({"source": ["platform.ai"]}, False),
        ({"source": ["platform.containers"], "detail-type": ["Container Stopped"]}, False),
        ({"source": [{"prefix": "platform."}]}, True),
        ({"source": [{"prefix": "billing"}]}, False),
        ({"source": [{"suffix": ".containers"}]}, True),
        ({"detail-type": [{"equals-ignore-case": "container started"}]}, True),
        ({"source": [{"anything-but": "platform.ai"}]}, True),
        ({"source": [{"anything-but": ["platform.ai", "platform.containers"]}]}, False),
        ({"source": [{"anything-but": {"prefix": "platform."}}]}, False),
        ({"detail": {"tier": ["small"]}}, True),
        ({"detail": {"tier": ["large"]}}, False),
        ({"detail": {"tier": [{"exists": True}]}}, True),
        ({"detail": {"tier": [{"exists": False}]}}, False),
        ({"detail": {"missing": [{"exists": False}]}}, True),
        ({"detail": {"missing": [{"exists": True}]}}, False),
        ({"detail": {"missing": ["x"]}}, False),
        ({"detail": {"code_supporter": [True]}}, True),
        ({"detail": {"code_supporter": ["true"]}}, False),  # types matter
        ({"detail": {"storage_gb": [20]}}, True),
        ({"detail": {"storage_gb": [{"numeric": [">", 10, "<=", 20]}]}}, True),
        ({"detail": {"storage_gb": [{"numeric": [">", 20]}]}}, False),
        ({"detail": {"nested": {"deep": ["v"]}}}, True),
        ({"detail": {"nested": {"deep": ["w"]}}}, False),
        ({"detail": {"tags": ["b"]}}, True),  # an array in the event: any element matches
        ({"detail": {"tags": [{"anything-but": "c"}]}}, True),
        ({"detail": {"tags": [{"anything-but": "a"}]}}, False),
        ({"detail": {"gone": [None]}}, False),
        ({"detail": {"nothing": [None]}}, True),
        ({"$or": [{"source": ["platform.ai"]}, {"detail": {"tier": ["small"]}}]}, True),
    ],
)
def test_pattern(pattern: dict, expected: bool) -> None:
    e = event(tier="small", code_supporter=True, storage_gb=20, nested={"deep": "v"}, tags=["a", "b"], nothing=None)
    assert matches(pattern, e) is expected


def test_template_rules_route_each_contract_event_to_one_function() -> None:
    template = load_template()
    resolver = Resolver(template)
    rules = [
        (spec.logical_id, resolver.resolve(props["Pattern"]))
        for spec in functions(template).values()
        for props in spec.events_of_type("EventBridgeRule").values()
    ]
    contract = {
        "platform.accounts": ["Account Created", "Plan Changed"],
        "platform.containers": [
            "Container Created",
            "Container Started",
            "Container Stopped",
            "Container Traffic Reported",
            "Container Resized",
            "Container Inactivated",
            "Container Reactivated",
            "Container Deleted",
        ],
        "platform.ai": ["AI Usage Recorded"],
    }
    for source, detail_types in contract.items():
        for detail_type in detail_types:
            hit = [fn for fn, pattern in rules if matches(pattern, event(detail_type, source))]
            assert len(hit) == 1, (source, detail_type, hit)
    # what the functions publish themselves must not loop back into them
    assert not [fn for fn, p in rules if matches(p, event("Credits Exhausted", "billing"))]
