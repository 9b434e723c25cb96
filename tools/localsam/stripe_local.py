"""The Stripe stand-in: ``localstripe`` (PyPI) on a free loopback port, started like DynamoDB Local.

It answers Stripe's API for what the stack uses (customers, PaymentIntents confirmed with test cards,
off-session too, SetupIntents, refunds), serves a fake Stripe.js at ``/js.stripe.com/v3/``, and
sends the events it produces to a registered webhook (``POST /_config/webhooks/<name>``) signed with
``Stripe-Signature`` the way Stripe does. It has no disputes and no Checkout: those are tested with
event payloads of Stripe's documented shape (README, "Payments"). Never the real Stripe.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from localsam.dynamodb_local import free_port

SECRET_KEY = "sk_test_local_stand_in"  # localstripe takes any sk_ key
WEBHOOK_SECRET = "whsec_local_stand_in_0123456789"  # what it signs the events it sends with


class LocalStripe:
    """Starts localstripe on a free loopback port; use as a context manager."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> LocalStripe:
        # --from-scratch: never load another run's objects (it keeps them in /tmp/localstripe.pickle)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "localstripe", "--port", str(self.port), "--from-scratch"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("localstripe exited at start")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("localstripe did not start in time")

    def register_webhook(self, name: str, url: str, secret: str = WEBHOOK_SECRET) -> None:
        """Have the stand-in send its events to ``url``, signed with ``secret``."""
        data = urllib.parse.urlencode({"url": url, "secret": secret}).encode()
        request = urllib.request.Request(f"{self.url}/_config/webhooks/{name}", data=data, method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None

    def __enter__(self) -> LocalStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # a crashed run must not leave it behind
        self.stop()


__all__ = ["SECRET_KEY", "WEBHOOK_SECRET", "LocalStripe"]
