"""``Sandbox``: the whole local mesh — PKI, the meshed services (``services.py``), an OIDC issuer and a
Databricks workspace emulator — started together and described in ``sandbox.json``.

``meshclient sandbox`` runs it in the foreground; tests use :func:`meshclient_sandbox.pytest_plugin.mesh_sandbox`;
``meshclient demo`` tells the story on it. Everything listens on loopback. The material it
writes is sandbox-only test material: never trust its CA for anything real.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import re
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from meshclient.credentials import Credentials
from meshclient.identity import Identity
from meshclient.pki import not_after

from .apps import App
from .oidc import OIDCIssuer, TokenValidator
from .pki import CertificateAuthority, IssuedLeaf, SandboxPKI
from .policy import ServerPolicy
from .proxy import InboundProxy
from .services import DEFAULT_SERVICES, ServiceContext, service_spec
from .vault import SandboxVault
from .workspace import WorkspaceEmulator

__all__ = ["Sandbox", "SandboxSettings", "DEFAULT_ALLOW", "CLIENT_IDENTITY", "OUTSIDER_IDENTITY", "SERVICE_NAMESPACE"]

log = logging.getLogger("meshclient_sandbox")

SERVICE_NAMESPACE = "ml-platform"
CLIENT_IDENTITY = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
OUTSIDER_IDENTITY = "etl.finance.serviceaccount.identity.linkerd.cluster.local"
DEFAULT_ALLOW = ("*.ml-team.serviceaccount.identity.linkerd.cluster.local",)
SECRET_SCOPE = "ml-mesh"
AUDIENCE = "mesh-services"
VAULT_ROLE = "ml-team"


#: written last by a started sandbox (its pid), removed when it stops: see ready.py
READY_FILE = "sandbox.pid"


@dataclass(frozen=True)
class SandboxSettings:
    """What a sandbox looks like: where it writes, who may call its services, how long leaves live."""

    workdir: Path
    allow: tuple[str, ...] = DEFAULT_ALLOW
    default_policy: str = "deny"
    host: str = "127.0.0.1"
    leaf_lifetime: _dt.timedelta = _dt.timedelta(hours=24)
    token_lifetime: float = 600.0
    services: tuple[str, ...] = DEFAULT_SERVICES
    extra: dict[str, Any] = field(default_factory=dict)


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically (a temporary file, then rename): a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _load_or_create_pki(pki_dir: Path) -> SandboxPKI:
    """Reuse the workdir's PKI across restarts (so issued material stays valid), else make one."""
    files = {name: pki_dir / name for name in ("ca.crt", "ca.key", "issuer.crt", "issuer.key")}
    if all(p.is_file() for p in files.values()):
        try:
            def ca(cert: str, key: str) -> CertificateAuthority:
                k = serialization.load_pem_private_key(files[key].read_bytes(), password=None)
                assert isinstance(k, ec.EllipticCurvePrivateKey)
                return CertificateAuthority(x509.load_pem_x509_certificate(files[cert].read_bytes()), k)

            pki = SandboxPKI(ca("ca.crt", "ca.key"), ca("issuer.crt", "issuer.key"))
            if not_after(pki.issuer.cert) > _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=2):
                return pki
        except (ValueError, AssertionError, OSError):
            log.warning("the sandbox PKI in %s is unreadable; making a new one", pki_dir)
    pki = SandboxPKI.create()
    pki_dir.mkdir(parents=True, exist_ok=True)
    files["ca.crt"].write_bytes(pki.root.cert_pem)
    _write_private(files["ca.key"], pki.root.key_pem)
    files["issuer.crt"].write_bytes(pki.issuer.cert_pem)
    _write_private(files["issuer.key"], pki.issuer.key_pem)
    return pki


def _write_identity(leaf: IssuedLeaf, directory: Path) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    cert, key, anchors = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    cert.write_bytes(leaf.chain_pem)
    _write_private(key, leaf.key_pem)
    anchors.write_bytes(leaf.trust_anchors_pem)  # kubernetes.io/tls shape: Credentials.from_directory reads it
    return {"cert": str(cert), "key": str(key), "identity": leaf.identity.value}


class Sandbox:
    """A local Linkerd-like mesh: start it, read :attr:`info` (the ``sandbox.json`` document), stop it.

    Services ``echo``, ``results`` and ``artifacts`` each sit behind their own
    :class:`InboundProxy` with identity ``<name>.ml-platform.serviceaccount.identity.linkerd.cluster.local``,
    authorizing ``*.ml-team...`` by default (``settings.allow``; others get 403 + ``l5d-proxy-error``).
    The apps validate bearer JWTs from the sandbox :class:`OIDCIssuer` when one is sent.
    """

    def __init__(self, workdir: str | os.PathLike[str] | SandboxSettings, *, allow: Sequence[str] | None = None,
                 default_policy: str | None = None) -> None:
        settings = workdir if isinstance(workdir, SandboxSettings) else SandboxSettings(Path(workdir))
        if allow is not None:
            settings = SandboxSettings(**{**settings.__dict__, "allow": tuple(allow)})
        if default_policy is not None:
            settings = SandboxSettings(**{**settings.__dict__, "default_policy": default_policy})
        self.settings = settings
        self.workdir = Path(settings.workdir).resolve()
        self.pki: SandboxPKI | None = None
        self.issuer: OIDCIssuer | None = None
        self.workspace: WorkspaceEmulator | None = None
        self.vault: SandboxVault | None = None
        self.apps: dict[str, App] = {}
        self.proxies: dict[str, InboundProxy] = {}
        self.info: dict[str, Any] = {}
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Sandbox:
        if self._started:
            return self
        for name in self.settings.services:  # an unknown name fails before anything starts
            service_spec(name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in (READY_FILE, "sandbox.json", "env.sh"):  # a reader never takes an old run's files for this one
            with contextlib.suppress(FileNotFoundError):
                (self.workdir / name).unlink()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self._started = True
        return self

    def _start(self) -> None:
        s = self.settings
        pki = self.pki = _load_or_create_pki(self.workdir / "pki")
        # OIDC issuer: a confidential client for client-credentials tokens the services accept.
        self.issuer = OIDCIssuer(audience=AUDIENCE, token_lifetime=s.token_lifetime, host=s.host).start()
        oidc_client_id, oidc_secret = "ml-pipeline", secrets.token_urlsafe(24)
        self.issuer.register_client(oidc_client_id, secret=oidc_secret, audience=AUDIENCE)
        validator = TokenValidator(self.issuer, AUDIENCE)

        # A Vault-PKI-compatible issuer signing short-lived leaves from the sandbox issuer CA,
        # for JWTs from the OIDC issuer (role ml-team may only sign ml-team identities).
        self.vault = SandboxVault(pki, self.issuer, audience=AUDIENCE, host=s.host).start()
        self.vault.add_role(VAULT_ROLE, allowed_identities=[*DEFAULT_ALLOW])

        # Client identities: the notebook (inside the policy) and an outsider (outside it).
        client = pki.issue(CLIENT_IDENTITY, lifetime=s.leaf_lifetime)
        outsider = pki.issue(OUTSIDER_IDENTITY, lifetime=s.leaf_lifetime)
        client_files = _write_identity(client, self.workdir / "identities" / "notebook")
        outsider_files = _write_identity(outsider, self.workdir / "identities" / "outsider")
        anchors_path = self.workdir / "pki" / "ca.crt"

        # Databricks workspace: a PAT user, an M2M service principal, and the identity in a scope.
        ws = self.workspace = WorkspaceEmulator(host=s.host).start()
        user = ws.add_user("sandbox-user@example.com", admin=True)
        sp = ws.add_service_principal("ml-pipeline-sp")
        ws.create_scope(SECRET_SCOPE, manage_principal=user.name)
        ws.seed_mesh_identity(SECRET_SCOPE, client.chain_pem, client.key_pem, pki.trust_anchors_pem,
                              readers=[sp.name])

        # Services: app + its own inbound proxy each.
        policy = ServerPolicy(s.default_policy, allow=list(s.allow))
        services: dict[str, Any] = {}
        for name in s.services:
            app = self._make_app(name, validator)
            app.start()
            self.apps[name] = app
            leaf = pki.issue(Identity.linkerd(name, SERVICE_NAMESPACE), lifetime=s.leaf_lifetime)
            creds = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem,
                                         source=f"sandbox service {name}")
            proxy = InboundProxy(creds, app.port, policy=policy, host=s.host).start()
            self.proxies[name] = proxy
            services[name] = proxy.service_entry()

        self.info = {
            "trust_anchors": str(anchors_path),
            "issuer": {"cert": str(self.workdir / "pki" / "issuer.crt"), "key": str(self.workdir / "pki" / "issuer.key")},
            "client": client_files,
            "outsider": outsider_files,
            "services": services,
            "policy": {"default": s.default_policy, "allow": list(s.allow)},
            "oidc": {
                "issuer": self.issuer.issuer,
                "token_url": self.issuer.token_url,
                "client_id": oidc_client_id,
                "client_secret": oidc_secret,
                "audience": AUDIENCE,
            },
            "vault": {
                "address": self.vault.url,
                "role": VAULT_ROLE,
                "pki_mount": "pki",
                "auth_mount": "jwt",
                "audience": AUDIENCE,
            },
            "workspace": {
                "host": ws.url,
                "token": user.token,
                "secret_scope": SECRET_SCOPE,
                "client_id": sp.application_id,
                "client_secret": sp.client_secret,
            },
        }
        self._write_files()

    def _make_app(self, name: str, validator: TokenValidator) -> App:
        options = dict(self.settings.extra.get(name) or {})
        context = ServiceContext(self.workdir, self.settings.host, validator.validate, options)
        return service_spec(name).build(context)

    def _write_files(self) -> None:
        _write_private(self.workdir / "sandbox.json", (json.dumps(self.info, indent=2) + "\n").encode())
        _write_private(self.workdir / "env.sh", self.shell_exports().encode())
        # last: `meshclient sandbox wait DIR` takes this (with a live pid) as "everything is written"
        _write_private(self.workdir / READY_FILE, f"{os.getpid()}\n".encode())

    def shell_exports(self) -> str:
        """``export`` lines for MESHCLIENT_* and DATABRICKS_* (``source DIR/env.sh``)."""
        i = self.info
        pairs = {
            "MESHCLIENT_CERT": i["client"]["cert"],
            "MESHCLIENT_KEY": i["client"]["key"],
            "MESHCLIENT_TRUST_ANCHORS": i["trust_anchors"],
            "MESHCLIENT_SANDBOX": str(self.workdir / "sandbox.json"),
            "DATABRICKS_HOST": i["workspace"]["host"],
            "DATABRICKS_TOKEN": i["workspace"]["token"],
            "MESH_OIDC_TOKEN_URL": i["oidc"]["token_url"],
            "MESH_OIDC_CLIENT_ID": i["oidc"]["client_id"],
            "MESH_OIDC_CLIENT_SECRET": i["oidc"]["client_secret"],
            "MESH_OIDC_AUDIENCE": i["oidc"]["audience"],
        }
        for name, svc in i["services"].items():  # MESH_ECHO_URL, MESH_ECHO_ID, ...: what README snippets use
            var = "MESH_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
            pairs[f"{var}_URL"] = svc["url"]
            pairs[f"{var}_ID"] = svc["identity"]
            if svc.get("direct"):
                pairs[f"{var}_DIRECT"] = svc["direct"]
        lines = ["# meshclient sandbox: source this file (sandbox-only credentials)"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in pairs.items()]
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """A few lines for a human: where things are and what to try."""
        i = self.info
        echo = i["services"].get("echo")
        out = [f"meshclient sandbox running (workdir {self.workdir})"]
        for name, svc in i["services"].items():
            out.append(f"  {name:<9} {svc['url']:<26} identity {svc['identity']}  (direct {svc['direct']})")
        out.append(f"  oidc      {i['oidc']['issuer']}")
        out.append(f"  workspace {i['workspace']['host']}  (secret scope '{i['workspace']['secret_scope']}')")
        out.append(f"  vault     {i['vault']['address']}  (PKI role '{i['vault']['role']}', JWT auth)")
        out.append(f"  policy    {i['policy']['default']} except {', '.join(i['policy']['allow'])}")
        out.append(f"client identity {i['client']['identity']}")
        if echo:
            out.append("try:")
            out.append(f"  source {self.workdir / 'env.sh'}")
            out.append(f"  meshclient request -i GET {echo['url']}/hello --server-identity {echo['identity']}")
        out.append("stop with Ctrl-C")
        return "\n".join(out)

    def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.workdir / READY_FILE).unlink()
        for proxy in self.proxies.values():
            proxy.stop()
        for app in self.apps.values():
            app.stop()
        for server in (self.vault, self.issuer, self.workspace):
            if server is not None:
                server.stop()
        self.proxies.clear()
        self.apps.clear()
        self._started = False

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- conveniences for tests and the demo --------------------------------------------
    def service(self, name: str) -> dict[str, Any]:
        return dict(self.info["services"][name])

    def client_credentials(self, which: str = "client") -> Credentials:
        files = self.info[which]
        return Credentials.from_files(files["cert"], files["key"], self.info["trust_anchors"])

    def issue(self, identity: str, directory: str | os.PathLike[str] | None = None) -> Credentials:
        """Issue another client identity from the sandbox issuer (optionally written to a directory)."""
        assert self.pki is not None, "start() the sandbox first"
        leaf = self.pki.issue(identity, lifetime=self.settings.leaf_lifetime)
        if directory is not None:
            _write_identity(leaf, Path(directory))
        return Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem, source=f"sandbox {identity}")


def run_foreground(settings: SandboxSettings, *, out: Any = None) -> None:
    """Start, print the summary, wait for SIGINT/SIGTERM, stop cleanly (``meshclient sandbox``)."""
    import signal
    import sys
    import threading

    stream = out or sys.stdout
    stop = threading.Event()

    def _handle(signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    sandbox = Sandbox(settings)
    try:
        sandbox.start()
        print(sandbox.summary(), file=stream, flush=True)
        while not stop.wait(0.5):
            pass
        print("stopping the sandbox...", file=stream, flush=True)
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
