"""The credit-usage page: ``GET /`` (``index.html``) and ``GET /page/{file+}`` (its styles, modules and
vendored libraries), served by :class:`billing.api.static.StaticSite` without any authorizer: the
page holds no data, and every call it makes to the API carries the user's token.

Where the files come from: ``site/`` next to this module, which ``sam build`` fills from ``web/dist``
(this directory's Makefile builds ``web/`` with ``npm ci && node build.mjs``); run locally without a
build (``make api``, the tests), the repository's ``web/dist`` is served instead. To embed the page
in another site's frame, ``PAGE_FRAME_ANCESTORS`` names the origins allowed to (default: none).
``STRIPE_JS_URL`` and ``STRIPE_PUBLISHABLE_KEY`` (both empty: no card payments on the page) say where
the page loads Stripe.js from (js.stripe.com, or the local Stripe stand-in) and with which key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from billing.api.static import StaticSite

HERE = Path(__file__).resolve().parent
SITE = StaticSite(
    [HERE / "site", HERE.parent.parent / "web" / "dist"],
    frame_ancestors=os.environ.get("PAGE_FRAME_ANCESTORS", "'none'"),
    stripe_js=os.environ.get("STRIPE_JS_URL", ""),
    stripe_key=os.environ.get("STRIPE_PUBLISHABLE_KEY", ""),
)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return SITE.respond(event)
