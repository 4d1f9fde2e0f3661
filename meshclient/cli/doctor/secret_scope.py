"""Doctor's Databricks checks: the workspace it reaches and each secret read from the scope.

One line per item: scope, key and size, never the content.
"""

from __future__ import annotations

from ...credentials.secret_scope import SecretReader
from ...errors import MeshError
from ...outbound import is_network_error
from ..common import CERT, KEY, TRUST_ANCHORS, Found, MaterialItem, ScopeSpec, sdk_message, secret_reader
from .report import plural
from .state import CheckupState

__all__ = ["SecretScopeChecks"]


class SecretScopeChecks(CheckupState):
    """``--secret-scope``: who the workspace says we are, then each key's size."""

    def secret_scope(self, spec: ScopeSpec) -> None:
        """One line for the workspace, then one per key: scope, key and size, never the content."""
        self.scope_found = {}
        items = (CERT, KEY, TRUST_ANCHORS)
        try:
            reader, workspace = secret_reader(spec, self.args.timeout)
        except MeshError as err:
            self.r.error("workspace", err)
            for item in items:
                self.r.skip("secret", f"scope '{spec.scope}' key '{spec.key_for(item)}': needs a workspace")
            return
        if not self._workspace_line(reader, workspace):
            for item in items:
                self.r.skip("secret", f"scope '{spec.scope}' key '{spec.key_for(item)}': needs a usable workspace")
            return
        for item in items:
            self._read_secret(reader, spec, item)

    def _workspace_line(self, reader: SecretReader, workspace: object) -> bool:
        """Who the workspace says we are; ``False`` when it is unreachable or refuses us."""
        if workspace is None:
            self.r.ok("workspace", f"{reader.description} (Databricks notebook)")
            return True
        cfg = getattr(workspace, "config", None)
        host, auth = getattr(cfg, "host", None), getattr(cfg, "auth_type", None)
        where = f"{host} (databricks-sdk, auth type {auth})"
        try:
            me = workspace.current_user.me()  # type: ignore[attr-defined]
        except Exception as exc:  # typed SDK errors differ across versions: classify by name
            text = sdk_message(exc)
            if type(exc).__name__ in ("Unauthenticated", "Unauthorized") or "UNAUTHENTICATED" in str(exc):
                self.r.fail("workspace", f"{where} refused these credentials: {text}",
                            f"The credentials databricks-sdk found (auth type {auth}) are wrong or expired: renew "
                            "DATABRICKS_TOKEN, or check DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET or the profile.")
                return False
            if is_network_error(exc):
                self.r.fail("workspace", f"{where} cannot be reached: {type(exc).__name__}: {text}",
                            "Check DATABRICKS_HOST (the workspace URL) and the network path from here (proxy "
                            "variables, firewalls).")
                return False
            self.r.warn("workspace", f"{where}: could not ask who this principal is: {type(exc).__name__}: {text}",
                        "Reading the secrets below tells whether the workspace can be used.")
            return True
        who = getattr(me, "user_name", None) or getattr(me, "display_name", None) or "?"
        self.r.ok("workspace", f"{where} as '{who}'")
        return True

    def _read_secret(self, reader: SecretReader, spec: ScopeSpec, item: MaterialItem) -> None:
        key = spec.key_for(item)
        try:
            data = reader.get_bytes(spec.scope, key)
        except MeshError as err:
            self.r.error("secret", err)
            return
        if not data.strip():
            self.r.fail("secret", f"scope '{spec.scope}' key '{key}' is empty ({reader.description})",
                        f"Store the {item.what} there as PEM text: databricks secrets put-secret {spec.scope} {key} "
                        "--binary-file FILE.")
            return
        self.r.ok("secret", f"scope '{spec.scope}' key '{key}': {plural(len(data), 'byte')} ({reader.description})")
        self.scope_found[item.dest] = Found(data, f"secret scope '{spec.scope}' key '{key}'")  # type: ignore[index]
