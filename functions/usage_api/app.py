"""The credit-usage page's reads: balance, monthly usage, container log, AI log and audit log
(:class:`billing.api.reports.UsageReports`), and the API's OpenAPI document.

The account is the JWT's ``sub`` claim and nothing else; nothing here writes. Each route is an entry
of :mod:`billing.api.routes`: its query parameters are a msgspec struct validated before the handler
runs (a bad or unknown one is a 400 naming it); domain errors map in ``billing.api.http``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.api.http import Caller, Response, make_resolver
from billing.api.models import AiLog, BalanceView, ContainerLog
from billing.api.reports import UsageReports
from billing.api.requests import ActivityParams, AiLogParams, ContainerLogParams, LedgerParams, UsageParams
from billing.observability import logger, metrics, tracer
from billing.services import members
from billing.services.usage import usage_csv

deps = wiring.Wiring()
app = make_resolver(role_of=lambda account_id, user_id: members.role_of(deps.get(wiring.ledger), account_id, user_id))


def reports() -> UsageReports:
    return UsageReports(deps.get(wiring.ledger), deps.get(wiring.cursor_codec), deps.get(wiring.clock))


@app.serves("GET /v1/balance")
def get_balance(account_id: str) -> BalanceView:
    return reports().balance(account_id)


@app.serves("GET /v1/usage")
def get_usage(account_id: str, query: UsageParams, labels: dict[str, str], caller: Caller) -> dict[str, Any]:
    return reports().usage(account_id, query.usage_query(labels), user=caller.own_usage_only)


@app.serves("GET /v1/usage.csv")
def get_usage_csv(account_id: str, query: UsageParams, labels: dict[str, str], caller: Caller) -> Response[Any]:
    report = reports().usage(account_id, query.usage_query(labels), "csv", user=caller.own_usage_only)
    return Response(status_code=200, content_type="text/csv", body=usage_csv(report),
                    headers={"Content-Disposition": 'attachment; filename="usage.csv"'})


@app.serves("GET /v1/usage/containers")
def get_container_usage(account_id: str, query: ContainerLogParams, caller: Caller) -> ContainerLog:
    return reports().container_log(account_id, query.date, user=caller.own_usage_only)


@app.serves("GET /v1/usage/ai")
def get_ai_usage(account_id: str, query: AiLogParams, caller: Caller) -> AiLog:
    return reports().ai_log(account_id, query.limit, query.cursor, user=caller.own_usage_only)


@app.serves("GET /v1/ledger")
def get_ledger(account_id: str, query: LedgerParams) -> Any:
    if query.format == "csv":
        export = reports().audit_csv(account_id, query.from_, query.to, query.limit, query.cursor)
        headers = {"Content-Disposition": 'attachment; filename="ledger.csv"'}
        if export.next_cursor:
            headers["X-Next-Cursor"] = export.next_cursor
        return Response(status_code=200, content_type="text/csv", body=export.body, headers=headers)
    return reports().audit_log(account_id, query.from_, query.to, query.limit or 50, query.cursor)


@app.serves("GET /v1/activity")
def list_activity(account_id: str, query: ActivityParams) -> dict[str, Any]:
    return members.activity_page(deps.get(wiring.ledger), deps.get(wiring.cursor_codec), account_id, query.from_,
                                 query.to, query.limit, query.cursor)


@app.serves("GET /v1/openapi.json")
def get_openapi() -> Response[Any]:
    from billing.api.openapi import document_json  # built on the first request, not at cold start

    return Response(status_code=200, content_type="application/json", body=document_json(),
                    headers={"Cache-Control": "public, max-age=300"})


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
