"""The plain-HTTP apps the sandbox proxies front: echo, artifact store, results sink.

Each is an :class:`App` on loopback with ``start()``/``stop()`` (or ``with``), ``port`` and
``url``, and an optional ``token_validator`` (a callable returning a bearer token's claims
or raising), so the OIDC validator can be wired in by whoever assembles the sandbox.
"""

from ._base import App, AppError, Body, Request, TokenValidator
from .artifacts import ArtifactStore
from .echo import EchoApp, pattern_bytes
from .results import ResultsSink

__all__ = ["App", "AppError", "Body", "Request", "TokenValidator", "EchoApp", "ArtifactStore", "ResultsSink",
           "pattern_bytes"]
