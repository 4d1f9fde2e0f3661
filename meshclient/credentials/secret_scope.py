"""Read mesh material from a Databricks secret scope.

In a notebook the runtime's ``dbutils.secrets`` is used (it works without any configuration);
elsewhere — jobs, local development, tests — a ``databricks-sdk`` ``WorkspaceClient`` with
unified authentication (profiles, environment, PAT, OAuth M2M). Values come back as bytes.
Errors name the scope and key and say what to check; a secret value never appears in one.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from typing import Any, Protocol

from ..errors import SecretScopeError

__all__ = ["SecretReader", "notebook_dbutils", "DbutilsSecretReader", "WorkspaceSecretReader", "default_secret_reader", "read_secrets"]


class SecretReader(Protocol):
    """Reads one secret's bytes; raises :class:`SecretScopeError` naming scope and key."""

    description: str

    def get_bytes(self, scope: str, key: str) -> bytes: ...


def notebook_dbutils() -> Any | None:
    """The notebook's ``dbutils`` when running on a Databricks driver, else None."""
    if not os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return None
    try:
        import IPython  # type: ignore[import-not-found]

        shell = IPython.get_ipython()
    except Exception:  # not an IPython process (a job's wheel task)
        shell = None
    if shell is not None and "dbutils" in shell.user_ns:
        return shell.user_ns["dbutils"]
    return None


def _classify(exc: BaseException) -> str:
    """'not_found', 'permission' or 'other', across databricks-sdk versions (0.20 onwards)."""
    name = type(exc).__name__
    code = str(getattr(exc, "error_code", "") or "")
    text = str(exc)
    if name in ("NotFound", "ResourceDoesNotExist") or code == "RESOURCE_DOES_NOT_EXIST" or "does not exist" in text:
        return "not_found"
    if name in ("PermissionDenied", "Unauthenticated") or code in ("PERMISSION_DENIED", "UNAUTHENTICATED") \
            or "permission" in text.lower():
        return "permission"
    return "other"


def _scope_error(scope: str, key: str, kind: str, where: str, detail: str = "") -> SecretScopeError:
    if kind == "no_scope":
        return SecretScopeError(
            f"Secret scope '{scope}' does not exist ({where}).",
            hint="Check the scope name (databricks secrets list-scopes), and that this is the right workspace.",
            scope=scope, key=key,
        )
    if kind == "no_key":
        return SecretScopeError(
            f"Secret scope '{scope}' has no key '{key}' ({where}).",
            hint=f"Check with `databricks secrets list-secrets {scope}`; the platform team stores the identity "
            "under tls.crt, tls.key and ca.crt (or pass cert_key=/key_key=/anchors_key=).",
            scope=scope, key=key,
        )
    if kind == "not_found":
        return SecretScopeError(
            f"Secret scope '{scope}' has no key '{key}', or the scope does not exist ({where}).",
            hint=f"Check with `databricks secrets list-secrets {scope}`; the platform team stores the identity under "
            "tls.crt, tls.key and ca.crt (or pass cert_key=/key_key=/anchors_key=).",
            scope=scope, key=key,
        )
    if kind == "permission":
        return SecretScopeError(
            f"This principal may not read key '{key}' of secret scope '{scope}' ({where}).",
            hint=f"Ask the scope's owner for READ on '{scope}' (databricks secrets put-acl {scope} <principal> READ).",
            scope=scope, key=key,
        )
    return SecretScopeError(
        f"Reading key '{key}' of secret scope '{scope}' failed ({where}): {detail}",
        hint="Check the workspace host and authentication (DATABRICKS_HOST, a profile, or OAuth M2M settings).",
        scope=scope, key=key,
    )


class DbutilsSecretReader:
    """The notebook runtime's ``dbutils.secrets``."""

    description = "dbutils.secrets"

    def __init__(self, dbutils: Any) -> None:
        self._dbutils = dbutils

    def get_bytes(self, scope: str, key: str) -> bytes:
        try:
            secrets = self._dbutils.secrets
            if hasattr(secrets, "getBytes"):
                return bytes(secrets.getBytes(scope, key))
            return str(secrets.get(scope, key)).encode("utf-8")
        except Exception as exc:  # py4j errors carry no useful type
            raise _scope_error(scope, key, _classify(exc), self.description, type(exc).__name__) from None


class WorkspaceSecretReader:
    """``databricks-sdk`` ``WorkspaceClient().secrets.get_secret`` (base64 values)."""

    def __init__(self, workspace_client: Any | None = None) -> None:
        if workspace_client is None:
            try:
                from databricks.sdk import WorkspaceClient
            except ImportError:
                raise SecretScopeError(
                    "Reading a secret scope outside a notebook needs the databricks-sdk package.",
                    hint="pip install 'meshclient[databricks]'",
                    scope="", key="",
                ) from None
            try:
                workspace_client = WorkspaceClient()
            except Exception as exc:  # the SDK raises ValueError for missing config
                raise SecretScopeError(
                    f"No Databricks workspace is configured for reading secret scopes: {type(exc).__name__}.",
                    hint="Set DATABRICKS_HOST plus DATABRICKS_TOKEN (or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET), "
                    "or a profile in ~/.databrickscfg, or pass workspace_client=.",
                    scope="", key="",
                ) from None
        self._w = workspace_client
        host = getattr(getattr(workspace_client, "config", None), "host", None)
        self.description = f"workspace {host}" if host else "workspace API"

    def get_bytes(self, scope: str, key: str) -> bytes:
        try:
            response = self._w.secrets.get_secret(scope=scope, key=key)
        except Exception as exc:  # mapped by class name across SDK versions
            kind = _classify(exc)
            if kind == "not_found":
                kind = self._which_is_missing(scope)
            raise _scope_error(scope, key, kind, self.description, type(exc).__name__) from None
        value = getattr(response, "value", None)
        if value is None:
            raise _scope_error(scope, key, "not_found", self.description)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise SecretScopeError(
                f"Key '{key}' of secret scope '{scope}' did not come back base64-encoded ({self.description}).",
                hint="Upgrade databricks-sdk, or report the workspace's answer format.",
                scope=scope, key=key,
            ) from None


    def _which_is_missing(self, scope: str) -> str:
        """After a not-found: is it the scope or the key? (Listing a scope needs only READ.)"""
        try:
            list(self._w.secrets.list_secrets(scope=scope))
        except Exception as exc:  # the scope itself is missing (or unlistable)
            return "no_scope" if _classify(exc) == "not_found" else "not_found"
        return "no_key"


def default_secret_reader(workspace_client: Any | None = None) -> SecretReader:
    """``dbutils`` on a Databricks driver notebook; otherwise a ``WorkspaceClient``."""
    if workspace_client is None:
        dbutils = notebook_dbutils()
        if dbutils is not None:
            return DbutilsSecretReader(dbutils)
    return WorkspaceSecretReader(workspace_client)


def read_secrets(scope: str, keys: Iterable[str], reader: SecretReader) -> dict[str, bytes]:
    """Read several keys of one scope; the first failure raises with scope and key named."""
    if not scope or not isinstance(scope, str):
        raise SecretScopeError("A secret scope name is required.", hint="e.g. Credentials.from_secret_scope('ml-mesh')",
                               scope=str(scope), key="")
    values: dict[str, bytes] = {}
    for key in keys:
        data = reader.get_bytes(scope, key)
        if not data.strip():
            raise SecretScopeError(
                f"Key '{key}' of secret scope '{scope}' is empty ({reader.description}).",
                hint="Store the PEM text there (databricks secrets put-secret --binary-file ...).",
                scope=scope, key=key,
            )
        values[key] = data
    return values
