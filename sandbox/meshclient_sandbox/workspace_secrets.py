"""Workspace emulator secret scopes and ACLs: seeding from code and the secrets API routes.

Why apart: the scope/secret/ACL store is one job; the emulator's identity, OAuth and
plumbing are another (``workspace.py`` mixes this class in).
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .httpserver import ApiRequest, Response
from .workspace_model import _GROUPS, _LEVEL, _MAX_SECRET_BYTES, _NAME_RE, PERMISSIONS, Principal, _api_error, _Scope

logger = logging.getLogger("meshclient_sandbox.workspace")


class SecretScopeStore:
    """Secret scopes with per-principal ACLs (READ < WRITE < MANAGE; admins hold MANAGE)."""

    name: str
    clock: Callable[[], float]
    _lock: threading.RLock
    _scopes: dict[str, _Scope]
    _principals: dict[str, Principal]
    _by_app_id: dict[str, str]

    def _caller(self, request: ApiRequest) -> Principal:
        raise NotImplementedError  # the emulator authenticates the caller

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

    # -- scope/ACL checks -------------------------------------------------------------

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
