"""The credit-usage page's first load: files, bytes (as sent, gzip) and API requests.

Serves web/dist through the page's own server code (:class:`billing.api.static.StaticSite`, the
headers a browser gets from WebPageFunction) to headless Debian Chromium driven by Playwright, by
route interception: no socket, no stack. The API answers small contract-shaped bodies (an account
without organizations: GET /v1/members and /v1/activity are 404s) so the page goes through its
whole first load. Prints every request, the page's files with their sizes uncompressed and as
sent, the API calls by route, and what a reload revalidates (files not marked immutable).

    python -m bench.page_bench            # --budget-kb 300 (exit 1 above it); --short: the same (it is quick)
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from billing.api.static import StaticSite

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "web" / "dist"
CHROMIUM = Path("/usr/bin/chromium")
BASE = "http://page.bench"
NOW = "2026-06-15T12:00:00Z"
LOT = {"lot_id": "lot-1", "kind": "monthly", "granted": "100.000000", "remaining": "62.500000",
       "granted_at": "2026-06-01T00:00:00Z", "expires_at": "2026-07-01T00:00:00Z"}
API: dict[str, Any] = {
    "/v1/balance": {"account_id": "bench", "plan": "free", "available": "62.500000", "free": "62.500000",
                    "purchased": "0.000000", "debt": "0.000000", "exhausted": False, "credit_mail": True,
                    "accrued": "1.200000", "remaining": "61.300000", "hourly_burn": "0.640000", "hours_left": 95.78,
                    "next_monthly_grant_at": "2026-07-01T00:00:00Z", "lots": [LOT], "credit_price_usd": "0.02"},
    "/v1/settings": {"credit_mail": True, "auto_top_up": None, "spend_cap": None, "spend_cap_reached": False,
                     "locale": None, "time_zone": None},
    "/v1/usage": {"unit": "credits", "total": "37.500000", "average_daily": "1.250000", "projected_run_out": None,
                  "by_resource": {"container": "30.000000", "storage": "5.000000", "traffic": "0.500000",
                                  "ai": "2.000000"},
                  "series": [{"date": f"2026-06-{d:02d}", "amount": "2.500000", "cumulative": f"{2.5 * d:.6f}"}
                             for d in range(1, 16)]},
    "/v1/usage/containers": {"date": "2026-06-15", "entries": []},
    "/v1/usage/ai": {"entries": [], "next_cursor": None},
    "/v1/ledger": {"entries": [], "next_cursor": None},
    "/v1/purchases": {"purchases": []},
    "/v1/alerts": {"alerts": []},
}


def token() -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part({'sub': 'bench', 'exp': int(time.time()) + 3600})}."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-kb", type=float, default=300.0, help="first load as sent, at most (KB)")
    parser.add_argument("--short", action="store_true", help="CI's smoke run (the bench is short already)")
    args = parser.parse_args(argv)
    if not (DIST / "index.html").exists():
        print("web/dist is not built: run `make web`", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    site = StaticSite([DIST])
    files: list[tuple[str, int, int, str]] = []  # path, bytes, bytes sent, cache-control
    calls: Counter[str] = Counter()

    def serve(route: Any) -> None:
        path = route.request.url.removeprefix(BASE).split("?")[0].split("#")[0]
        if path.startswith("/v1/"):
            calls[f"{route.request.method} {path}"] += 1
            found = API.get(path)
            missing = {"error": {"code": "not_found", "message": "not offered"}}
            route.fulfill(status=200 if found is not None else 404, content_type="application/json",
                          body=json.dumps(found if found is not None else missing))
            return
        event: dict[str, Any] = {"requestContext": {"http": {"method": "GET"}}, "rawPath": path,
                                 "headers": {"accept-encoding": "gzip, deflate, br"}}
        if path.startswith("/page/"):
            event["pathParameters"] = {"file": path.removeprefix("/page/")}
        answer = site.respond(event)
        raw = answer["body"].encode() if not answer.get("isBase64Encoded") else base64.b64decode(answer["body"])
        plain = len((DIST / (path.removeprefix("/page/") if path != "/" else "index.html")).read_bytes())
        files.append((path, plain, len(raw), answer["headers"].get("cache-control", "")))
        headers = {k: v for k, v in answer["headers"].items() if k != "content-encoding"}
        body = raw
        if answer["headers"].get("content-encoding") == "gzip":
            body = gzip.decompress(raw)  # the browser gets it decoded; the size sent is counted above
        route.fulfill(status=answer["statusCode"], headers=headers, body=body)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.route("**/*", serve)
        page.goto(f"{BASE}/#token={token()}")
        page.wait_for_function("() => document.querySelectorAll('#usage-canvas').length && window.Chart"
                               " && Chart.getChart('usage-canvas')")
        page.wait_for_load_state("networkidle")
        browser.close()

    print(f"{'file':58} {'bytes':>9} {'sent':>9}  cache")
    for path, plain, sent, cache in files:
        print(f"{path:58} {plain:9,} {sent:9,}  {cache}")
    total_plain, total_sent = sum(f[1] for f in files), sum(f[2] for f in files)
    print(f"{'first load: ' + str(len(files)) + ' files':58} {total_plain:9,} {total_sent:9,}")
    print(f"\nAPI calls: {sum(calls.values())} ({len(calls)} routes, each asked "
          f"{'once' if max(calls.values()) == 1 else 'more than once'})")
    for call, n in sorted(calls.items()):
        print(f"  {n} x {call}")
    revalidated = [f[0] for f in files if "immutable" not in f[3]]
    print(f"\nrevalidated on reload: {len(revalidated)} ({', '.join(revalidated)})")
    kb = total_sent / 1024
    print(f"\nsent: {kb:.1f} KB of a {args.budget_kb:.0f} KB budget")
    return 0 if kb <= args.budget_kb else 1


if __name__ == "__main__":
    sys.exit(main())
