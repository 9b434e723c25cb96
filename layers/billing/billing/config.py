"""The one typed configuration model, built from the environment variables declared in ``template.yaml``.

AWS configuration itself (region, credentials, ``AWS_ENDPOINT_URL_*``) is read by the SDK the
standard way and never here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated

import msgspec


class Config(msgspec.Struct, frozen=True, kw_only=True):
    table_name: str = "billing"
    event_bus_name: str = "default"
    sender_address: str = "billing@example.com"
    ses_configuration_set: str | None = None  # bounces and complaints to CloudWatch (template.yaml)
    buy_credits_url: str = "https://example.com/billing/credits"
    catalog_path: str | None = None  # a JSON file; None: the packaged defaults
    # Secrets Manager secrets (no default: a deployment must provide them; see billing.secrets)
    webhook_secret_arn: str | None = None
    cursor_secret_arn: str | None = None
    # Stripe: set, payments go through Stripe (template.yaml's UsesStripe); unset, through the signed webhook
    stripe_secret_key_arn: str | None = None
    stripe_webhook_secret_arn: str | None = None  # the endpoint's signing secret ({"current", "previous"})
    stripe_api_base: str = "https://api.stripe.com"  # locally, the stand-in (localstripe) the runner starts
    work_queue_url: str | None = None
    settlement_queue_url: str | None = None
    dead_letter_queue_url: str | None = None
    outbox_dead_letter_queue_url: str | None = None  # effects refused for good (OutboxDLQ)
    service_name: str = "credit-billing"
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 8
    reconcile_read_rate: Annotated[float, msgspec.Meta(gt=0)] = 100.0  # read units a second

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        source = os.environ if env is None else env
        values = {field: source[var] for field, var in ENV_NAMES.items() if source.get(var)}
        # strict=False: environment variables are strings, numbers are read from them.
        return msgspec.convert(values, cls, strict=False)


ENV_NAMES = {
    "table_name": "TABLE_NAME",
    "event_bus_name": "EVENT_BUS_NAME",
    "sender_address": "SENDER_ADDRESS",
    "ses_configuration_set": "SES_CONFIGURATION_SET",
    "buy_credits_url": "BUY_CREDITS_URL",
    "catalog_path": "PRICE_CATALOG_PATH",
    "webhook_secret_arn": "PAYMENT_WEBHOOK_SECRET_ARN",
    "cursor_secret_arn": "CURSOR_SECRET_ARN",
    "stripe_secret_key_arn": "STRIPE_SECRET_KEY_ARN",
    "stripe_webhook_secret_arn": "STRIPE_WEBHOOK_SECRET_ARN",
    "stripe_api_base": "STRIPE_API_BASE",
    "work_queue_url": "WORK_QUEUE_URL",
    "settlement_queue_url": "SETTLEMENT_QUEUE_URL",
    "dead_letter_queue_url": "DEAD_LETTER_QUEUE_URL",
    "outbox_dead_letter_queue_url": "OUTBOX_DEAD_LETTER_QUEUE_URL",
    "service_name": "POWERTOOLS_SERVICE_NAME",
    "max_attempts": "SETTLEMENT_MAX_ATTEMPTS",
    "reconcile_read_rate": "RECONCILE_READ_RATE",
}


def get_config() -> Config:
    """The configuration of the current environment (built once per distinct environment: on
    Lambda, once per container; a process whose environment changes gets one that follows it)."""
    return _config_of(tuple(os.environ.get(var) for var in ENV_NAMES.values()))


@lru_cache(maxsize=16)
def _config_of(values: tuple[str | None, ...]) -> Config:
    return Config.from_env({var: value for var, value in zip(ENV_NAMES.values(), values, strict=True) if value})
