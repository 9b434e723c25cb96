"""Secrets from AWS Secrets Manager, through Powertools Parameters (cached for 5 minutes).

A secret's value is the secret itself, or, during a rotation, ``{"current": "...", "previous":
"..."}``: both are valid until the operator drops ``previous`` (README, "Deploying").
"""

from __future__ import annotations

import json

from aws_lambda_powertools.utilities import parameters

from billing.domain.errors import NotConfigured, ServiceBusy
from billing.observability import logger

MAX_AGE_SECONDS = 300


def secret_values(arn: str | None, name: str) -> list[str]:
    """The valid values of a secret, the current one first."""
    if not arn:
        raise NotConfigured(f"{name} is not configured")
    try:
        raw = str(parameters.get_secret(arn, max_age=MAX_AGE_SECONDS))
    except parameters.exceptions.GetParameterError as exc:
        logger.error("secret not readable", secret=name, reason=str(exc))
        raise ServiceBusy(f"{name} could not be read; retry shortly") from None
    values = parse_secret(raw)
    if not values:
        raise NotConfigured(f"{name} holds no secret")
    return values


def parse_secret(raw: str) -> list[str]:
    """The rotation form is a JSON object with ``current`` (or ``previous``); any other text, one that
    starts with ``{`` included, is the secret itself (a secret may be any text)."""
    value = _json_object(raw) if raw.lstrip().startswith("{") else None
    if value is None or not {"current", "previous"} & value.keys():
        return [raw] if raw else []
    values = [value.get("current"), value.get("previous")]
    return [v for v in values if isinstance(v, str) and v]


def _json_object(raw: str) -> dict[str, object] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON: the text is the secret
        return None
    return value if isinstance(value, dict) else None
