"""The one observability module: Powertools logger, metrics and tracer shared by every handler."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics(namespace="CreditBilling")
# Only botocore is patched: every AWS call (PynamoDB's included) goes through it, and patching all
# the libraries the X-Ray SDK knows (sqlite3, httplib, requests...) costs cold-start time for nothing.
tracer = Tracer(patch_modules=("botocore",))
