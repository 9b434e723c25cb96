"""Every route of the HTTP API, as data: the one table the handlers route with and the OpenAPI
document is generated from, so neither can drift from the other.

A handler registers its function with ``@route(app, "GET /v1/balance")`` (:func:`billing.api.http.route`),
which takes everything else from here: the Powertools rule, the caller's identity (JWT ``sub``,
IAM principal, or none), the query struct (validated, unknown parameters refused), the body struct
(strict), and the success status the response is sent with. :mod:`billing.api.openapi` documents the
same table: parameters and request bodies from the query and body structs, responses from
``response`` and ``errors``. The tests check that the table matches ``template.yaml``'s HttpApi
events and that every real response of every route matches the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from billing.api import models as m
from billing.api import requests as r
from billing.domain.roster import Role

Auth = Literal["jwt", "iam", "signature", "none"]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # as in template.yaml and OpenAPI: /v1/purchases/{purchase_id}/refund
    function: str  # the template's logical id of the function that serves it
    operation: str  # OpenAPI operationId (the handler's name)
    summary: str
    tag: str
    auth: Auth  # jwt: the token's sub is the account; iam: operators; signature: Billing-Signature
    response: Any  # the success body's type
    status: int = 200
    query: type[r.Query] | None = r.NoQuery  # None: the query string is not read
    body: type[r.Body] | None = None
    errors: tuple[int, ...] = ()  # besides what auth, query, body and the table imply (see statuses)
    idempotent: bool = False  # takes an Idempotency-Key header
    csv: bool = False  # may answer text/csv instead (format=csv)
    reads_table: bool = True  # may answer 503 (DynamoDB throttling, a secret not readable)
    label_filters: bool = False  # label.<key>=<value> parameters besides the query struct's
    csv_only: bool = False  # answers text/csv only (response: the JSON it is made from, for the document)
    description: str = ""
    # jwt routes: the least role the caller needs in the account the request acts on (their own, or
    # the one named by ``Billing-Account``); see billing.domain.members and README "Organizations".
    role: Role | None = None

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def rule(self) -> str:
        """The path as a Powertools rule: ``{purchase_id}`` -> ``<purchase_id>``."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r"\{(\w+)\}", self.path)

    def statuses(self) -> list[int]:
        """Every status the route answers: its success, then the errors it can give."""
        implied = set(self.errors)
        if self.query is not None or self.body is not None or self.idempotent:
            implied.add(400)
        if self.auth in ("jwt", "signature"):
            implied.add(401)
        if self.role is not None:
            implied.update((403, 404))  # a role too low; not a member of the account named
        if self.auth == "iam":
            implied.add(403)
        if self.reads_table:
            implied.add(503)
        return [self.status, *sorted(implied)]


USAGE_DESCRIPTION = (
    "A month (`month`, this month by default) or any range of whole UTC days (`from`, `to`: up to 366 days). "
    "Filters: `resource`, `container`, `tier`, `model`, `feature`, `user`, and `label.<key>=<value>` for any label "
    "key (e.g. `label.team=ml`; several filters all apply). `group_by` one of resource, container, tier, model, "
    "feature, user or `label:<key>`; usage without the attribution grouped is the group `\"\"`. Each point's "
    "`amount` is its period's own, `cumulative` the running sum. A report "
    "over 5 MB (or reading over 1,000 items) is a 400 that says how to narrow it.")

USAGE, ACCOUNT, WEBHOOK = "UsageApiFunction", "AccountApiFunction", "PaymentWebhookFunction"

ROUTES: tuple[Route, ...] = (
    # ------------------------------------------------------------ the credit-usage page's reads
    Route("GET", "/v1/balance", USAGE, "get_balance", "The balance: lots, accrued usage, burn, hours left",
          "usage", "jwt", m.BalanceView, errors=(404,), role="member"),
    Route("GET", "/v1/usage", USAGE, "get_usage", "Usage of a range, by hour, day or month; grouped and filtered",
          "usage", "jwt", m.UsageView, query=r.UsageParams, errors=(404, 422), label_filters=True,
          description=USAGE_DESCRIPTION, role="member"),
    Route("GET", "/v1/usage.csv", USAGE, "get_usage_csv", "The same usage report as CSV", "usage", "jwt",
          m.UsageView, query=r.UsageParams, errors=(404, 422), label_filters=True, csv_only=True,
          description="The parameters of `GET /v1/usage`; one row per period (and group): `period`, the group's "
                      "key (with `group_by`), `amount_<unit>`, `cumulative_<unit>`. Dollars as `12.34`.",
          role="member"),
    Route("GET", "/v1/usage/containers", USAGE, "get_container_usage", "The container log of a UTC day", "usage",
          "jwt", m.ContainerLog, query=r.ContainerLogParams, role="member"),
    Route("GET", "/v1/usage/ai", USAGE, "get_ai_usage", "The AI usage log, newest first, paged", "usage", "jwt",
          m.AiLog, query=r.AiLogParams, role="member"),
    Route("GET", "/v1/ledger", USAGE, "get_ledger", "The audit log (ledger entries) of a range, paged; JSON or CSV",
          "usage", "jwt", m.LedgerPage, query=r.LedgerParams, csv=True,
          description="With `format=csv` the answer is `text/csv` (at most 1,000 rows and 5 MB); `X-Next-Cursor` "
                      "then carries the next page's cursor.", role="billing"),
    Route("GET", "/v1/openapi.json", USAGE, "get_openapi", "This OpenAPI 3.1 document", "meta", "none",
          m.OpenApiDocument, query=None, reads_table=False),
    # ------------------------------------------------------------ purchases and refunds
    Route("POST", "/v1/purchases", ACCOUNT, "create_purchase", "Buy credits: a pending purchase with its price",
          "purchases", "jwt", m.PurchaseCreated, status=201, body=r.PurchaseRequest, errors=(404, 409, 422),
          idempotent=True, role="billing"),
    Route("GET", "/v1/purchases", ACCOUNT, "list_purchases", "Purchase and refund history", "purchases", "jwt",
          m.PurchaseList, role="billing"),
    Route("GET", "/v1/purchases/{purchase_id}", ACCOUNT, "get_purchase", "One purchase, with its receipt once paid",
          "purchases", "jwt", m.PurchaseDetail, errors=(404,), role="billing"),
    Route("POST", "/v1/purchases/{purchase_id}/refund", ACCOUNT, "refund", "Refund a paid purchase's unused credits",
          "purchases", "jwt", m.RefundResult, errors=(404, 409, 422), idempotent=True,
          description="Within the refund window; the body is ignored (it only fingerprints a keyed request).",
          role="billing"),
    # ------------------------------------------------------------ free credits and settings
    Route("POST", "/v1/check-in", ACCOUNT, "check_in", "The daily check-in: a lot of event credits", "credits",
          "jwt", m.LotGrant, status=201, errors=(404, 409, 422), idempotent=True,
          description="409 when the account has checked in today (UTC). The body is ignored.", role="billing"),
    Route("POST", "/v1/coupons/redeem", ACCOUNT, "redeem_coupon", "Redeem a coupon code", "credits", "jwt",
          m.LotGrant, status=201, body=r.RedeemRequest, errors=(404, 409, 422), idempotent=True, role="billing"),
    Route("POST", "/v1/payment-methods", ACCOUNT, "save_payment_method",
          "Save a card for auto top-up: a Stripe SetupIntent's client_secret", "purchases", "jwt", m.SetupView,
          status=201, errors=(404, 422),
          description="Stripe only (422 otherwise). Confirm the SetupIntent with Stripe.js; the card it saves "
                      "becomes the customer's default, charged off-session by auto top-up. The body is ignored.",
          role="billing"),
    Route("GET", "/v1/settings", ACCOUNT, "get_settings", "The account's settings", "settings", "jwt",
          m.SettingsView, errors=(404,), role="billing"),
    Route("PUT", "/v1/settings", ACCOUNT, "update_settings", "Change any of the settings", "settings", "jwt",
          m.SettingsView, body=r.SettingsRequest, errors=(404, 409, 422),
          description="Any of `credit_mail`, `auto_top_up`, `spend_cap`, `locale`, `time_zone` and `currency`; what "
                      "the body leaves out stays as it is, `null` turns auto top-up or the spend cap off. An empty "
                      "body is a 400. The currency changes only while no purchase is pending (else a 409).",
          role="billing"),
    Route("GET", "/v1/alerts", ACCOUNT, "list_alerts", "The account's alert rules", "settings", "jwt", m.AlertList,
          errors=(404,), role="billing"),
    Route("POST", "/v1/alerts", ACCOUNT, "create_alert", "Add an alert rule (at most 10)", "settings", "jwt",
          m.AlertView, status=201, body=r.AlertRequest, errors=(404, 409, 422), idempotent=True, role="billing"),
    Route("DELETE", "/v1/alerts/{alert_id}", ACCOUNT, "delete_alert", "Remove an alert rule", "settings", "jwt",
          m.AlertDeleted, errors=(404, 409), role="billing"),
    # ------------------------------------------------------------ organizations: members and activity
    Route("GET", "/v1/members", ACCOUNT, "list_members", "The account's members: roles, limits, spending this month",
          "members", "jwt", m.MemberList, errors=(404,), role="billing",
          description="Every member with their `role`, `monthly_limit` (credits or null) and `spent_this_month` "
                      "(what their usage deducted this calendar month, after corrections); the account's own "
                      "user is listed as its owner."),
    Route("PUT", "/v1/members/{user_id}/limit", ACCOUNT, "set_member_limit", "Set or remove a member's monthly limit",
          "members", "jwt", m.MemberView, body=r.MemberLimitRequest, errors=(404, 409, 422), role="admin",
          description="`{\"monthly_limit\": \"200\"}` (credits, at least 0) or `null` (no limit). When the "
                      "member's deductions this month reach it, their running containers are asked to stop "
                      "(`member_limit`). 404 when the user is not a member of the account."),
    Route("GET", "/v1/activity", USAGE, "list_activity", "Who changed what, newest first, paged", "members",
          "jwt", m.ActivityPage, query=r.ActivityParams, errors=(404,), role="billing",
          description="Every change a person made (purchases, refunds, settings, alerts, coupons, check-ins, "
                      "member roles and limits) with its `actor`, `at`, `action` and `details`; `from`/`to` "
                      "are UTC days (inclusive)."),
    # ------------------------------------------------------------ operators (IAM)
    Route("POST", "/v1/admin/grants", ACCOUNT, "admin_grant", "Grant credits to an account (operators)", "operators",
          "iam", m.LotGrant, status=201, body=r.GrantRequest, errors=(404, 409, 422), idempotent=True),
    Route("POST", "/v1/admin/coupons", ACCOUNT, "admin_coupon", "Create a coupon (operators)", "operators", "iam",
          m.CouponView, status=201, body=r.CouponRequest, errors=(409, 422), idempotent=True),
    # ------------------------------------------------------------ the payment provider
    Route("POST", "/v1/webhooks/payments", WEBHOOK, "payment_notice", "The payment provider's signed notice",
          "webhooks", "signature", m.PaymentResult, query=None, body=r.PaymentNoticeBody, errors=(404, 409, 422),
          description="Verified by `Billing-Signature` before anything is read: a missing or wrong signature, or a "
                      "`t` more than 5 minutes from now, is a 401. Applied once per notice `id`; an amount that "
                      "differs from the purchase's price is a 422."),
    Route("POST", "/v1/webhooks/stripe", WEBHOOK, "stripe_event", "Stripe's events, verified by Stripe-Signature",
          "webhooks", "signature", m.StripeEventResult, query=None, errors=(400, 404, 409, 422),
          description="Verified with Stripe's library (`stripe.Webhook.construct_event`) against the endpoint's "
                      "signing secret (current or previous during a rotation), `t` within 300 s: an unverifiable "
                      "request is a 400 and changes nothing. Handled exactly once: `payment_intent.succeeded`, "
                      "`payment_intent.payment_failed`, `charge.refunded`, `charge.dispute.created`, "
                      "`charge.dispute.closed`; any other type is answered 200 (`handled: false`) and ignored."),
)

BY_KEY: dict[str, Route] = {route.key: route for route in ROUTES}


def routes_of(function: str) -> list[Route]:
    """The routes one function serves."""
    return [route for route in ROUTES if route.function == function]
