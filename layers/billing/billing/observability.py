"""The one observability module: Powertools logger, metrics and tracer shared by every handler."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics(namespace="CreditBilling")
tracer = Tracer()
