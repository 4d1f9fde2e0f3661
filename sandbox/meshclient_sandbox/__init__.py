"""A local Linkerd-like mesh for the demo, the tests and users' local work.

Start everything with :class:`Sandbox` (or ``meshclient sandbox``); the pieces are usable on
their own: :class:`SandboxPKI`, :class:`InboundProxy` and :class:`ServerPolicy`, the apps
(:class:`EchoApp`, :class:`ArtifactStore`, :class:`ResultsSink`), :class:`OIDCIssuer` and
:class:`TokenValidator`, :class:`WorkspaceEmulator`, and the real TLS peers
:class:`NginxPeer` / :class:`StunnelPeer`. The material it makes is for local use only.
Submodules import lazily so ``import meshclient`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Sandbox", "SandboxSettings", "SandboxPKI", "IssuedLeaf", "InboundProxy", "ServerPolicy", "EchoApp",
    "ArtifactStore", "ResultsSink", "OIDCIssuer", "TokenValidator", "WorkspaceEmulator", "NginxPeer", "StunnelPeer",
]

_WHERE = {
    "Sandbox": "runner", "SandboxSettings": "runner", "SandboxPKI": "pki", "IssuedLeaf": "pki",
    "InboundProxy": "proxy", "ServerPolicy": "policy", "EchoApp": "apps", "ArtifactStore": "apps",
    "ResultsSink": "apps", "OIDCIssuer": "oidc", "TokenValidator": "token_validator", "WorkspaceEmulator": "workspace",
    "NginxPeer": "nginx", "StunnelPeer": "stunnel",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'meshclient_sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
