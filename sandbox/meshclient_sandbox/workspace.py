"""A Databricks workspace API emulator that the real ``databricks-sdk`` talks to.

Why: ``Credentials.from_secret_scope`` and the token providers must be tested against the
SDK itself — its URL building, its unified auth (PAT and OAuth M2M), its typed errors —
not against mocks of it. The emulator serves plain HTTP on loopback; the SDK accepts an
``http://127.0.0.1:PORT`` host as is (``_fix_host_if_needed`` only adds ``https://``
when the scheme is missing, and its default ``requests`` session handles ``http://``).

What it serves, in Databricks' shapes (errors are ``{"error_code", "message"}`` so the
SDK raises ``NotFound``/``ResourceDoesNotExist``, ``PermissionDenied``,
``Unauthenticated``):

- secrets: ``/api/2.0/secrets/{get,list,put,delete}``, ``/api/2.0/secrets/scopes/
  {list,create,delete}``, ``/api/2.0/secrets/acls/{get,list,put,delete}`` with READ <
  WRITE < MANAGE per principal (by name, a service principal also by application id,
  and the ``users`` group for everyone); workspace admins have MANAGE everywhere;
- ``/api/2.0/preview/scim/v2/Me`` (``w.current_user.me()``);
- auth: personal access tokens (``dapi…``) and OAuth M2M for service principals:
  ``/.well-known/databricks-config`` (host metadata, which databricks-sdk ≥ 0.7x reads to
  find its OIDC discovery URL), ``/oidc/.well-known/oauth-authorization-server`` (what
  older SDKs fetch directly), ``/oidc/v1/token`` (client credentials, basic or post,
  scope ``all-apis``) and ``/oidc/v1/keys``. OAuth tokens are ES256 JWTs.

Secret values never appear in logs or error messages; nor do tokens or client secrets.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from .httpserver import ApiRequest, HTTPError, Response, SandboxHTTPServer
from .jose import JWTError, public_jwk, sign_jwt, verify_jwt
from .oidc import oauth_response
from .oidc_clients import OAuthError, basic_credentials, invalid_client
from .workspace_model import (
    _GROUPS,
    _OAUTH_SCOPES,
    MESH_IDENTITY_KEYS,
    PERMISSIONS,
    Principal,
    _api_error,
    _digest,
    _Scope,
)
from .workspace_secrets import SecretScopeStore

__all__ = ["WorkspaceEmulator", "Principal", "PERMISSIONS", "MESH_IDENTITY_KEYS"]

logger = logging.getLogger("meshclient_sandbox.workspace")


class WorkspaceEmulator(SecretScopeStore, SandboxHTTPServer):
    """A Databricks workspace on loopback for the real ``databricks-sdk``.

    Seed it from code (:meth:`add_user`, :meth:`add_service_principal`,
    :meth:`create_scope`, :meth:`put_secret`, :meth:`put_acl`,
    :meth:`seed_mesh_identity`) or through the API with an admin's token. ``clock``
    (epoch seconds) drives token expiry.
    """

    name = "workspace"

    def __init__(
        self,
        *,
        workspace_id: str = "1234567890123456",
        oauth_token_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.workspace_id = workspace_id
        self.oauth_token_lifetime = float(oauth_token_lifetime)
        self.clock = clock
        self._lock = threading.RLock()
        self._principals: dict[str, Principal] = {}
        self._by_app_id: dict[str, str] = {}
        self._pats: dict[bytes, tuple[str, float | None]] = {}  # sha256(token) -> (principal, expiry)
        self._sp_secrets: dict[str, bytes] = {}  # application_id -> sha256(secret)
        self._scopes: dict[str, _Scope] = {}
        self._ids = itertools.count(7_000_000_000_000_001)
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._kid = public_jwk(self._key)["kid"]
        self._outage: tuple[int, int | None] | None = None
        self.api_requests = 0
        self.token_requests = 0
        for method, path, handler in (
            ("GET", "/.well-known/databricks-config", self._host_metadata),
            ("GET", "/oidc/.well-known/oauth-authorization-server", self._oidc_discovery),
            ("GET", "/oidc/v1/keys", self._oidc_keys),
            ("POST", "/oidc/v1/token", self._oidc_token),
            ("GET", "/api/2.0/preview/scim/v2/Me", self._scim_me),
            ("GET", "/api/2.0/secrets/scopes/list", self._list_scopes),
            ("POST", "/api/2.0/secrets/scopes/create", self._create_scope),
            ("PUT", "/api/2.0/secrets/scopes/create", self._create_scope),
            ("POST", "/api/2.0/secrets/scopes/delete", self._delete_scope),
            ("GET", "/api/2.0/secrets/list", self._list_secrets),
            ("GET", "/api/2.0/secrets/get", self._get_secret),
            ("POST", "/api/2.0/secrets/put", self._put_secret),
            ("PUT", "/api/2.0/secrets/put", self._put_secret),
            ("POST", "/api/2.0/secrets/delete", self._delete_secret),
            ("GET", "/api/2.0/secrets/acls/list", self._list_acls),
            ("GET", "/api/2.0/secrets/acls/get", self._get_acl),
            ("POST", "/api/2.0/secrets/acls/put", self._put_acl),
            ("PUT", "/api/2.0/secrets/acls/put", self._put_acl),
            ("POST", "/api/2.0/secrets/acls/delete", self._delete_acl),
        ):
            self.add_route(method, path, handler)

    # -- identifiers -------------------------------------------------------------------

    @property
    def oidc_issuer(self) -> str:
        return f"{self.url}/oidc"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oidc/v1/token"

    # -- principals --------------------------------------------------------------------

    def add_user(
        self, name: str, *, token: str | None = None, admin: bool = False, token_lifetime: float | None = None
    ) -> Principal:
        """Add a user with a personal access token (generated ``dapi…`` unless given)."""
        token = token or "dapi" + secrets.token_hex(16)
        principal = Principal(name=name, kind="user", id=str(next(self._ids)), admin=admin, token=token)
        with self._lock:
            self._add(principal)
            self._pats[_digest(token)] = (name, None if token_lifetime is None else self.clock() + token_lifetime)
        return principal

    def add_service_principal(
        self, name: str, *, client_id: str | None = None, client_secret: str | None = None, admin: bool = False
    ) -> Principal:
        """Add an OAuth service principal (M2M: ``client_id``/``client_secret``)."""
        app_id = client_id or str(uuid.uuid4())
        secret = client_secret or "dose" + secrets.token_hex(16)
        principal = Principal(
            name=name, kind="service_principal", id=str(next(self._ids)), admin=admin,
            application_id=app_id, client_secret=secret,
        )
        with self._lock:
            self._add(principal)
            self._by_app_id[app_id] = name
            self._sp_secrets[app_id] = _digest(secret)
        return principal

    def _add(self, principal: Principal) -> None:
        if principal.name in self._principals or principal.name in _GROUPS:
            raise ValueError(f"principal {principal.name!r} already exists")
        self._principals[principal.name] = principal

    def create_token(self, principal: str, *, lifetime: float | None = None) -> str:
        """Another PAT for an existing principal (optionally expiring)."""
        with self._lock:
            if principal not in self._principals:
                raise KeyError(f"no principal {principal!r}")
            token = "dapi" + secrets.token_hex(16)
            self._pats[_digest(token)] = (principal, None if lifetime is None else self.clock() + lifetime)
        return token

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._pats.pop(_digest(token), None)

    def principal(self, name: str) -> Principal:
        with self._lock:
            return self._principals[self._by_app_id.get(name, name)]


    def seed_mesh_identity(
        self,
        scope: str,
        chain_pem: bytes | str,
        key_pem: bytes | str,
        anchors_pem: bytes | str,
        *,
        readers: Iterable[str] = (),
    ) -> None:
        """Store a mesh client identity the way ``Credentials.from_secret_scope`` reads it:
        ``tls.crt`` (leaf then issuer), ``tls.key``, ``ca.crt``; grant READ to ``readers``."""
        self.put_secret(scope, MESH_IDENTITY_KEYS["cert"], chain_pem)
        self.put_secret(scope, MESH_IDENTITY_KEYS["key"], key_pem)
        self.put_secret(scope, MESH_IDENTITY_KEYS["trust_anchors"], anchors_pem)
        for reader in readers:
            self.put_acl(scope, reader, "READ")
        logger.debug("%s: seeded mesh identity into scope %s", self.name, scope)

    # -- test hooks --------------------------------------------------------------------

    def set_outage(self, enabled: bool = True, *, status: int = 503, retry_after: int | None = None) -> None:
        """Answer every API request with ``status`` (``TEMPORARILY_UNAVAILABLE``)."""
        with self._lock:
            self._outage = (status, retry_after) if enabled else None

    # -- plumbing ----------------------------------------------------------------------

    def error_response(self, status: int, message: str, *, code: str | None = None) -> Response:
        default = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                   404: "ENDPOINT_NOT_FOUND", 405: "BAD_REQUEST", 413: "INVALID_PARAMETER_VALUE"}.get(
            status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
        if code is not None and (code.isupper() or code == "MALFORMED_REQUEST"):
            default = code
        return Response.json({"error_code": default, "message": message}, status,
                             headers={"x-databricks-org-id": self.workspace_id})

    def handle(self, request: ApiRequest) -> Response:
        if request.path.startswith("/api/"):
            with self._lock:
                self.api_requests += 1
                outage = self._outage
            if outage is not None:
                status, retry_after = outage
                headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
                raise HTTPError(status, "the workspace is unavailable (sandbox outage)",
                                code="TEMPORARILY_UNAVAILABLE", headers=headers)
        response = super().handle(request)
        response.headers.append(("x-databricks-org-id", self.workspace_id))
        return response

    def _caller(self, request: ApiRequest) -> Principal:
        token = request.bearer_token()
        if token is None:
            raise _api_error(401, "UNAUTHENTICATED",
                             "Credential was not sent or was of an unsupported type for this API.")
        now = self.clock()
        with self._lock:
            pat = self._pats.get(_digest(token))
            if pat is not None:
                name, expiry = pat
                if expiry is not None and now >= expiry:
                    raise _api_error(401, "UNAUTHENTICATED", f"Token for {name} is expired.")
                return self._principals[name]
        if token.count(".") == 2:
            try:
                claims = verify_jwt(token, self._key, issuer=self.oidc_issuer, audience=self.url, now=now,
                                    leeway=0)
            except JWTError as err:
                raise _api_error(401, "UNAUTHENTICATED", f"Invalid access token: {err.message}") from None
            with self._lock:
                sp_name = self._by_app_id.get(str(claims.get("sub")))
                principal = self._principals.get(sp_name) if sp_name else None
            if principal is None:
                raise _api_error(401, "UNAUTHENTICATED", "Invalid access token: the service principal is gone.")
            return principal
        raise _api_error(401, "UNAUTHENTICATED", "Invalid access token.")


    def _host_metadata(self, request: ApiRequest) -> Response:
        return Response.json({"oidc_endpoint": self.oidc_issuer, "workspace_id": self.workspace_id})

    def _oidc_discovery(self, request: ApiRequest) -> Response:
        return Response.json({
            "issuer": self.oidc_issuer,
            "authorization_endpoint": f"{self.oidc_issuer}/v1/authorize",
            "token_endpoint": self.token_url,
            "jwks_uri": f"{self.oidc_issuer}/v1/keys",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": list(_OAUTH_SCOPES),
            "response_types_supported": ["code"],
        })

    def _oidc_keys(self, request: ApiRequest) -> Response:
        return Response.json({"keys": [public_jwk(self._key, kid=self._kid, alg="ES256")]})

    def _oidc_token(self, request: ApiRequest) -> Response:
        with self._lock:
            self.token_requests += 1
        try:
            try:
                form = request.form()
            except HTTPError as err:
                raise OAuthError("invalid_request", err.message) from None
            basic = basic_credentials(request)
            if basic is not None and "client_secret" in form:
                raise OAuthError("invalid_request", "more than one client authentication method used")
            client_id, secret = basic if basic is not None else (form.get("client_id"), form.get("client_secret"))
            if not client_id or secret is None:
                raise invalid_client("client authentication is required (client_secret_basic or client_secret_post)")
            with self._lock:
                expected = self._sp_secrets.get(client_id)
            if expected is None:
                raise invalid_client(f"unknown client {client_id!r}")
            if not secrets.compare_digest(expected, _digest(secret)):
                raise invalid_client(f"wrong client secret for client {client_id!r}")
            grant = form.get("grant_type")
            if not grant:
                raise OAuthError("invalid_request", "grant_type is required")
            if grant != "client_credentials":
                raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
            scopes = (form.get("scope") or "all-apis").split()
            unknown = [s for s in scopes if s not in _OAUTH_SCOPES]
            if unknown or "all-apis" not in scopes:
                raise OAuthError("invalid_scope", f"scope must include all-apis (unknown: {' '.join(unknown) or '-'})")
        except OAuthError as err:
            logger.debug("%s: OAuth token request rejected: %s (%s)", self.name, err.error, err.description)
            return oauth_response(err.error, err.description, err.status, err.headers)
        now = self.clock()
        claims = {
            "iss": self.oidc_issuer, "sub": client_id, "aud": self.url, "client_id": client_id,
            "scope": " ".join(scopes), "iat": int(now), "nbf": int(now),
            "exp": int(now + self.oauth_token_lifetime), "jti": uuid.uuid4().hex,
        }
        token = sign_jwt(claims, self._key, kid=self._kid, alg="ES256", typ="at+jwt")
        logger.debug("%s: issued OAuth token to service principal %s", self.name, client_id)
        return Response.json(
            {"access_token": token, "token_type": "Bearer", "expires_in": int(self.oauth_token_lifetime),
             "scope": " ".join(scopes)},
            headers={"Cache-Control": "no-store"},
        )

    # -- SCIM --------------------------------------------------------------------------

    def _scim_me(self, request: ApiRequest) -> Response:
        p = self._caller(request)
        groups = [{"display": "users", "type": "direct"}] + ([{"display": "admins", "type": "direct"}] if p.admin
                                                             else [])
        if p.kind == "service_principal":
            body: dict[str, Any] = {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal"],
                "id": p.id, "userName": p.application_id, "applicationId": p.application_id,
                "displayName": p.name, "active": True, "groups": groups,
            }
        else:
            body = {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "id": p.id, "userName": p.name, "displayName": p.name, "active": True,
                "emails": [{"type": "work", "value": p.name, "primary": True}], "groups": groups,
            }
        return Response.json(body)
