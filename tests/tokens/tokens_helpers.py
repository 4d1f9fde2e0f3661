"""Helpers for the token-provider tests: a fake clock, a recording sleep, a gated issuer.

Kept out of conftest.py so that objects holding them (a provider with a fake clock) pickle:
pickle finds classes by module name, and every test directory has its own ``conftest``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from meshclient_sandbox.httpserver import ApiRequest, Response
from meshclient_sandbox.oidc import OIDCIssuer

#: A secret with characters that need form-urlencoding in client_secret_basic (RFC 6749 §2.3.1).
SECRET = "s3cr+t/with=odd%chars-0123456789"
CLIENT_ID = "etl-job"
#: Token lifetime of the sandbox issuer in these tests (seconds).
LIFETIME = 300.0


class FakeClock:
    """Epoch seconds under test control: expiry without sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """Stands in for time.sleep between token-endpoint retries: records, never waits."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class GatedIssuer(OIDCIssuer):
    """An OIDCIssuer whose token endpoint can be held shut, to catch requests in flight."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = 0
        self._arrived_cond = threading.Condition()
        self.add_route("POST", "/token", self._gated_token)

    def _gated_token(self, request: ApiRequest) -> Response:
        with self._arrived_cond:
            self.arrived += 1
            self._arrived_cond.notify_all()
        self.gate.wait(60)
        return self._token(request)

    def wait_arrived(self, n: int, timeout: float = 30.0) -> None:
        with self._arrived_cond:
            if not self._arrived_cond.wait_for(lambda: self.arrived >= n, timeout):
                raise AssertionError(f"expected {n} token requests at the gate, saw {self.arrived}")


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll until ``predicate()``; the timeout only bounds a hang, it is not a threshold."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
