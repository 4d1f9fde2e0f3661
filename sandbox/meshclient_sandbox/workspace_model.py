"""Workspace emulator data model: principals, secret scopes, permission levels.

Why apart: the secret store and the HTTP routes both use these shapes; keeping them in a
leaf module lets each be read (and tested) without the other.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from .httpserver import HTTPError

PERMISSIONS = ("READ", "WRITE", "MANAGE")
_LEVEL = {p: i + 1 for i, p in enumerate(PERMISSIONS)}
MESH_IDENTITY_KEYS = {"cert": "tls.crt", "key": "tls.key", "trust_anchors": "ca.crt"}
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_MAX_SECRET_BYTES = 128 * 1024
_OAUTH_SCOPES = ("all-apis", "offline_access", "sql", "clusters", "jobs", "unity-catalog")
_GROUPS = ("users", "admins")


@dataclass(frozen=True)
class Principal:
    """A workspace identity: a PAT user or an OAuth service principal.

    ``token`` (users) and ``client_secret`` (service principals) are hidden from ``repr``.
    """

    name: str
    kind: str  # "user" | "service_principal"
    id: str
    admin: bool = False
    application_id: str | None = None  # service principals: the OAuth client_id
    token: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)

    @property
    def client_id(self) -> str | None:
        return self.application_id

    def acl_names(self) -> tuple[str, ...]:
        """The ACL principals that designate this identity."""
        names = [self.name]
        if self.application_id:
            names.append(self.application_id)
        names.append("users")
        if self.admin:
            names.append("admins")
        return tuple(names)


@dataclass
class _Scope:
    name: str
    secrets: dict[str, tuple[bytes, int]] = field(default_factory=dict)  # key -> (value, updated ms)
    acls: dict[str, str] = field(default_factory=dict)  # principal -> permission


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _api_error(status: int, code: str, message: str) -> HTTPError:
    return HTTPError(status, message, code=code)
