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

import base64
import binascii
import hashlib
import itertools
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from .httpserver import ApiRequest, HTTPError, Response, SandboxHTTPServer
from .jose import JWTError, public_jwk, sign_jwt, verify_jwt
from .oidc import _basic_credentials, _invalid_client, _oauth_response, _OAuthError

__all__ = ["WorkspaceEmulator", "Principal", "PERMISSIONS", "MESH_IDENTITY_KEYS"]

logger = logging.getLogger("meshclient_sandbox.workspace")

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


class WorkspaceEmulator(SandboxHTTPServer):
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

    # -- secrets (seeding from code) ---------------------------------------------------

    def create_scope(self, scope: str, *, manage_principal: str | None = None) -> None:
        """Create a scope; ``manage_principal`` (a principal or ``users``) gets MANAGE."""
        if not _NAME_RE.match(scope):
            raise ValueError(f"invalid scope name {scope!r}")
        with self._lock:
            if scope in self._scopes:
                raise ValueError(f"scope {scope!r} already exists")
            s = _Scope(scope)
            if manage_principal:
                s.acls[manage_principal] = "MANAGE"
            self._scopes[scope] = s

    def put_secret(self, scope: str, key: str, value: str | bytes) -> None:
        """Store a secret (``str`` is stored as UTF-8); creates the scope if needed."""
        if not _NAME_RE.match(key):
            raise ValueError(f"invalid secret key {key!r}")
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        with self._lock:
            if scope not in self._scopes:
                self.create_scope(scope)
            self._scopes[scope].secrets[key] = (data, int(self.clock() * 1000))

    def get_secret_bytes(self, scope: str, key: str) -> bytes:
        with self._lock:
            return self._scopes[scope].secrets[key][0]

    def put_acl(self, scope: str, principal: str, permission: str) -> None:
        if permission not in _LEVEL:
            raise ValueError(f"permission must be one of {', '.join(PERMISSIONS)}")
        with self._lock:
            self._scopes[scope].acls[principal] = permission

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

    def _scope(self, name: str | None) -> _Scope:
        if not name:
            raise _api_error(400, "INVALID_PARAMETER_VALUE", "Missing required field: scope")
        scope = self._scopes.get(name)
        if scope is None:
            raise _api_error(404, "RESOURCE_DOES_NOT_EXIST", f"Scope {name} does not exist!")
        return scope

    @staticmethod
    def _level(principal: Principal, scope: _Scope) -> int:
        if principal.admin:
            return _LEVEL["MANAGE"]
        return max((_LEVEL.get(scope.acls.get(n, ""), 0) for n in principal.acl_names()), default=0)

    def _require(self, principal: Principal, scope: _Scope, permission: str) -> None:
        if self._level(principal, scope) < _LEVEL[permission]:
            logger.debug("%s: %s denied %s on scope %s", self.name, principal.name, permission, scope.name)
            raise _api_error(403, "PERMISSION_DENIED", f"User {principal.name} does not have {permission} "
                             f"permission on scope {scope.name} to perform this action.")

    @staticmethod
    def _field(body: Mapping[str, Any] | ApiRequest, name: str) -> str:
        value = body.param(name) if isinstance(body, ApiRequest) else body.get(name)
        if value is None or value == "":
            raise _api_error(400, "INVALID_PARAMETER_VALUE", f"Missing required field: {name}")
        if not isinstance(value, str):
            raise _api_error(400, "INVALID_PARAMETER_VALUE", f"Field {name} must be a string")
        return value

    def _known_principal(self, name: str) -> bool:
        return name in _GROUPS or name in self._principals or name in self._by_app_id

    # -- OAuth (M2M) -------------------------------------------------------------------

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
                raise _OAuthError("invalid_request", err.message) from None
            basic = _basic_credentials(request)
            if basic is not None and "client_secret" in form:
                raise _OAuthError("invalid_request", "more than one client authentication method used")
            client_id, secret = basic if basic is not None else (form.get("client_id"), form.get("client_secret"))
            if not client_id or secret is None:
                raise _invalid_client("client authentication is required (client_secret_basic or client_secret_post)")
            with self._lock:
                expected = self._sp_secrets.get(client_id)
            if expected is None:
                raise _invalid_client(f"unknown client {client_id!r}")
            if not secrets.compare_digest(expected, _digest(secret)):
                raise _invalid_client(f"wrong client secret for client {client_id!r}")
            grant = form.get("grant_type")
            if not grant:
                raise _OAuthError("invalid_request", "grant_type is required")
            if grant != "client_credentials":
                raise _OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
            scopes = (form.get("scope") or "all-apis").split()
            unknown = [s for s in scopes if s not in _OAUTH_SCOPES]
            if unknown or "all-apis" not in scopes:
                raise _OAuthError("invalid_scope", f"scope must include all-apis (unknown: {' '.join(unknown) or '-'})")
        except _OAuthError as err:
            logger.debug("%s: OAuth token request rejected: %s (%s)", self.name, err.error, err.description)
            return _oauth_response(err.error, err.description, err.status, err.headers)
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

    # -- secrets API -------------------------------------------------------------------

    def _list_scopes(self, request: ApiRequest) -> Response:
        self._caller(request)
        with self._lock:
            scopes = [{"name": n, "backend_type": "DATABRICKS"} for n in sorted(self._scopes)]
        return Response.json({"scopes": scopes} if scopes else {})

    def _create_scope(self, request: ApiRequest) -> Response:
        caller = self._caller(request)
        body = request.json_object()
        name = self._field(body, "scope")
        if not _NAME_RE.match(name):
            raise _api_error(400, "INVALID_PARAMETER_VALUE", f"Scope name {name!r} is invalid: use letters, digits, "
                             "'-', '_' and '.', at most 128 characters.")
        initial = body.get("initial_manage_principal")
        if initial not in (None, "", "users"):
            raise _api_error(400, "INVALID_PARAMETER_VALUE", "initial_manage_principal must be 'users' or omitted")
        backend = body.get("scope_backend_type")
        if backend not in (None, "DATABRICKS"):
            raise _api_error(400, "INVALID_PARAMETER_VALUE", f"scope_backend_type {backend!r} is not supported here")
        with self._lock:
            if name in self._scopes:
                raise _api_error(400, "RESOURCE_ALREADY_EXISTS", f"Scope {name} already exists!")
            self.create_scope(name, manage_principal=initial or caller.name)
        logger.debug("%s: %s created scope %s", self.name, caller.name, name)
        return Response.json({})

    def _delete_scope(self, request: ApiRequest) -> Response:
        caller = self._caller(request)
        body = request.json_object()
        with self._lock:
            scope = self._scope(self._field(body, "scope"))
            self._require(caller, scope, "MANAGE")
            del self._scopes[scope.name]
        return Response.json({})

    def _list_secrets(self, request: ApiRequest) -> Response:
        caller = self._caller(request)
        with self._lock:
            scope = self._scope(self._field(request, "scope"))
            self._require(caller, scope, "READ")
            items = [{"key": k, "last_updated_timestamp": ts} for k, (_, ts) in sorted(scope.secrets.items())]
        return Response.json({"secrets": items} if items else {})

    def _get_secret(self, request: ApiRequest) -> Response:
        caller = self._caller(request)
        key = self._field(request, "key")
        with self._lock:
            scope = self._scope(self._field(request, "scope"))
            self._require(caller, scope, "READ")
            entry = scope.secrets.get(key)
        if entry is None:
            raise _api_error(404, "RESOURCE_DOES_NOT_EXIST",
                             f"Secret does not exist with scope: {scope.name} and key: {key}")
        logger.debug("%s: %s read secret %s/%s", self.name, caller.name, scope.name, key)
        return Response.json({"key": key, "value": base64.b64encode(entry[0]).decode("ascii")})

    def _put_secret(self, request: ApiRequest) -> Response:
        caller = self._caller(request)
        body = request.json_object()
        key = self._field(body, "key")
        if not _NAME_RE.match(key):
            raise _api_error(400, "INVALID_PARAMETER_VALUE", f"Secret key {key!r} is invalid: use letters, digits, "
                             "'-', '_' and '.', at most 128 characters.")
        string_value, bytes_value = body.get("string_value"), body.get("bytes_value")
        if (string_value is None) == (bytes_value is None):
            raise _api_error(400, "INVALID_PARAMETER_VALUE", "Exactly one of string_value and bytes_value is required")
        if string_value is not None:
            if not isinstance(string_value, str):
                raise _api_error(400, "INVALID_PARAMETER_VALUE", "string_value must be a string")
            data = string_value.encode("utf-8")
        else:
            try:
                data = base64.b64decode(str(bytes_value), validate=True)
            except (binascii.Error, ValueError):
                raise _api_error(400, "INVALID_PARAMETER_VALUE", "bytes_value must be base64") from None
        if len(data) > _MAX_SECRET_BYTES:
            raise _api_error(400, "INVALID_PARAMETER_VALUE", f"Secret value exceeds {_MAX_SECRET_BYTES} bytes")
        with self._lock:
            scope = self._scope(self._field(body, "scope"))
            self._require(caller, scope, "WRITE")
            scope.secrets[key] = (data, int(self.clock() * 1000))
        logger.debug("%s: %s wrote secret %s/%s", self.name, caller.name, scope.name, key)
        return Response.json({})

    def _delete_secret(self, request: ApiRequest) -> Response:
        caller = self._caller(request)
        body = request.json_object()
        key = self._field(body, "key")
        with self._lock:
            scope = self._scope(self._field(body, "scope"))
            self._require(caller, scope, "WRITE")
            if key not in scope.secrets:
                raise _api_error(404, "RESOURCE_DOES_NOT_EXIST",
                                 f"Secret does not exist with scope: {scope.name} and key: {key}")
            del scope.secrets[key]
        return Response.json({})

    def _list_acls(self, request: ApiRequest) -> Response:
        caller = self._caller(request)
        with self._lock:
            scope = self._scope(self._field(request, "scope"))
            self._require(caller, scope, "MANAGE")
            items = [{"principal": p, "permission": perm} for p, perm in sorted(scope.acls.items())]
        return Response.json({"items": items} if items else {})

    def _get_acl(self, request: ApiRequest) -> Response:
        caller = self._caller(request)
        principal = self._field(request, "principal")
        with self._lock:
            scope = self._scope(self._field(request, "scope"))
            self._require(caller, scope, "MANAGE")
            perm = scope.acls.get(principal)
        if perm is None:
            raise _api_error(404, "RESOURCE_DOES_NOT_EXIST",
                             f"No ACL for principal {principal} on scope {scope.name}")
        return Response.json({"principal": principal, "permission": perm})

    def _put_acl(self, request: ApiRequest) -> Response:
        caller = self._caller(request)
        body = request.json_object()
        principal = self._field(body, "principal")
        permission = self._field(body, "permission")
        if permission not in _LEVEL:
            raise _api_error(400, "INVALID_PARAMETER_VALUE",
                             f"Invalid permission {permission!r}: use one of {', '.join(PERMISSIONS)}")
        with self._lock:
            scope = self._scope(self._field(body, "scope"))
            self._require(caller, scope, "MANAGE")
            if not self._known_principal(principal):
                raise _api_error(404, "RESOURCE_DOES_NOT_EXIST", f"Principal {principal} does not exist")
            scope.acls[principal] = permission
        logger.debug("%s: %s set %s for %s on scope %s", self.name, caller.name, permission, principal, scope.name)
        return Response.json({})

    def _delete_acl(self, request: ApiRequest) -> Response:
        caller = self._caller(request)
        body = request.json_object()
        principal = self._field(body, "principal")
        with self._lock:
            scope = self._scope(self._field(body, "scope"))
            self._require(caller, scope, "MANAGE")
            if scope.acls.pop(principal, None) is None:
                raise _api_error(404, "RESOURCE_DOES_NOT_EXIST",
                                 f"No ACL for principal {principal} on scope {scope.name}")
        return Response.json({})
