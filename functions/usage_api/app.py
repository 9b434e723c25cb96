"""The credit-usage page's reads: balance, monthly usage, container log, AI log and audit log
(:class:`billing.api.reports.UsageReports`).

The account is the JWT's ``sub`` claim and nothing else; nothing here writes. Query parameters are
typed and validated by the resolver (a bad one is a 400); domain errors map in ``billing.api.http``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing import wiring
from billing.api.http import caller_account, make_resolver
from billing.api.reports import UsageReports
from billing.observability import logger, metrics, tracer
from billing.services.usage import UsageQuery

app = make_resolver()
deps = wiring.Wiring()

Cursor = Annotated[str | None, Query(min_length=1, max_length=2048)]
Limit = Annotated[int, Query(ge=1, le=100)]


def reports() -> UsageReports:
    return UsageReports(deps.get(wiring.ledger), deps.get(wiring.cursor_codec), deps.get(wiring.clock))


@app.get("/v1/balance")
def get_balance() -> dict[str, Any]:
    return reports().balance(caller_account(app)).model_dump(mode="json")


@app.get("/v1/usage")
def get_usage(
    month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
    granularity: Annotated[Literal["day"], Query()] = "day",
    cumulative: Annotated[bool, Query()] = False,
    unit: Annotated[Literal["credits", "usd"], Query()] = "credits",
    resource: Annotated[Literal["container", "storage", "traffic", "ai"] | None, Query()] = None,
    container_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> dict[str, Any]:
    filters = {k: v for k, v in {"resource": resource, "container": container_id}.items() if v}
    query = UsageQuery(month=month, cumulative=cumulative, unit=unit, filters=filters)
    return reports().usage(caller_account(app), query)


@app.get("/v1/usage/containers")
def get_container_usage(date: Annotated[str, Query(pattern=r"^\d{4}-\d{2}-\d{2}$")]) -> dict[str, Any]:
    return reports().container_log(caller_account(app), date).model_dump(mode="json")


@app.get("/v1/usage/ai")
def get_ai_usage(limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    return reports().ai_log(caller_account(app), limit, cursor).model_dump(mode="json")


@app.get("/v1/ledger")
def get_ledger(
    from_: Annotated[str | None, Query(alias="from", min_length=1, max_length=40)] = None,
    to: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
    limit: Annotated[int | None, Query(ge=1, le=100)] = None,
    cursor: Cursor = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Response[Any]:
    account_id = caller_account(app)
    if format == "csv":
        export = reports().audit_csv(account_id, from_, to, limit, cursor)
        headers = {"Content-Disposition": 'attachment; filename="ledger.csv"'}
        if export.next_cursor:
            headers["X-Next-Cursor"] = export.next_cursor
        return Response(status_code=200, content_type="text/csv", body=export.body, headers=headers)
    page = reports().audit_log(account_id, from_, to, limit or 50, cursor)
    return Response(status_code=200, content_type="application/json", body=page.model_dump_json(by_alias=True))


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
