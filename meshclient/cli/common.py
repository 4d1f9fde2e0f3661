"""Material and token options and error reporting shared by every ``meshclient`` subcommand.

Every subcommand finds the workload's certificate, key and trust anchors the same way:
``--secret-scope NAME`` (a Databricks secret scope), else ``--cert/--key/--trust-anchors``
paths, else ``MESHCLIENT_CERT``, ``MESHCLIENT_KEY``, ``MESHCLIENT_TRUST_ANCHORS`` (each a path
or the PEM text itself). Resolution is done per item here (not with ``Credentials.from_env``)
so that ``doctor`` can report each one.

Secrets (key passwords, OAuth client secrets, tokens) are read from the environment only,
never from the command line, where other users could see them in the process list.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import textwrap
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..credentials import Credentials, SameSubjectIssuerWarning
from ..credentials.loaders import ENV_CERT, ENV_KEY, ENV_KEY_PASSWORD, ENV_TRUST_ANCHORS, read_file
from ..credentials.secret_scope import DbutilsSecretReader, SecretReader, WorkspaceSecretReader, notebook_dbutils
from ..errors import (
    ConfigurationError,
    CredentialsError,
    EncryptedKeyError,
    MaterialNotFoundError,
    MeshError,
    SecretScopeError,
)
from ..redaction import redact_text, redact_url
from ..tokens import (
    ClientCredentials,
    DatabricksOAuth,
    EnvironmentToken,
    FileToken,
    OutboundRetryPolicy,
    OutboundSettings,
    TokenProvider,
)

__all__ = [
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_HTTP",
    "MaterialItem",
    "CERT",
    "KEY",
    "TRUST_ANCHORS",
    "Found",
    "add_material_options",
    "add_token_options",
    "add_debug_option",
    "ScopeSpec",
    "secret_scope_spec",
    "positive_seconds",
    "positive_int",
    "workspace_client",
    "databricks_config",
    "secret_reader",
    "sdk_message",
    "OIDCSettings",
    "oidc_settings",
    "token_source",
    "simple_token_provider",
    "client_credentials",
    "outbound_settings",
    "ENV_OIDC_CLIENT_SECRET",
    "DEFAULT_SECRET_KEYS",
    "resolve",
    "key_password",
    "load_credentials",
    "report_error",
    "report_warning",
    "MATERIAL_HELP",
    "UsageError",
    "HelpFormatter",
    "for_command_line",
    "group_or_world_readable",
]

EXIT_OK = 0
EXIT_ERROR = 1  # material, connection, TLS or identity problems; doctor failures
EXIT_USAGE = 2  # argparse's code for bad command lines
EXIT_HTTP = 22  # the server answered, but not with 2xx (like ``curl -f``)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps identities, URLs and hyphenated names whole when wrapping option help."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)


class UsageError(Exception):
    """A command line that parses but makes no sense (exit 2, like argparse's own errors)."""


@dataclass(frozen=True)
class MaterialItem:
    """One of the three pieces of mesh material and where a user can give it."""

    what: str  # "certificate", used in messages
    dest: str  # argparse attribute
    option: str  # command-line option
    env: str  # environment variable


CERT = MaterialItem("certificate", "cert", "--cert", ENV_CERT)
KEY = MaterialItem("private key", "key", "--key", ENV_KEY)
TRUST_ANCHORS = MaterialItem("trust anchors", "trust_anchors", "--trust-anchors", ENV_TRUST_ANCHORS)

#: The OAuth client secret for --oidc-client-id (never an option: the process list is public).
ENV_OIDC_CLIENT_SECRET = "MESHCLIENT_OIDC_CLIENT_SECRET"
#: Key names in a secret scope: the kubernetes.io/tls layout (``Credentials.from_secret_scope``'s default).
DEFAULT_SECRET_KEYS = ("tls.crt", "tls.key", "ca.crt")
#: Environment variables whose values databricks-sdk may echo back in an error (masked anyway).
_DATABRICKS_SECRET_VARS = ("DATABRICKS_TOKEN", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_PASSWORD",
                           "ARM_CLIENT_SECRET", "GOOGLE_CREDENTIALS")
_WORKSPACE_HINT = ("Set DATABRICKS_HOST plus DATABRICKS_TOKEN (a PAT) or DATABRICKS_CLIENT_ID and "
                   "DATABRICKS_CLIENT_SECRET (OAuth M2M), or pick a ~/.databrickscfg profile with "
                   "DATABRICKS_CONFIG_PROFILE (databricks-sdk unified authentication).")

MATERIAL_HELP = f"""\
mesh material:
  With --secret-scope NAME, meshclient reads the keys tls.crt, tls.key and ca.crt of that
  Databricks secret scope (--secret-keys to rename them): through dbutils in a notebook,
  else through databricks-sdk unified authentication (DATABRICKS_HOST with DATABRICKS_TOKEN
  or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET, or a ~/.databrickscfg profile).
  Without it and without --cert/--key/--trust-anchors, meshclient reads {ENV_CERT},
  {ENV_KEY} and {ENV_TRUST_ANCHORS}: each is a file path or the PEM text itself. An
  encrypted key's password is read from {ENV_KEY_PASSWORD} (never from the command line,
  where other users could see it in the process list). Key material is never printed.
"""


@dataclass(frozen=True)
class Found:
    """Bytes of one material item and a printable description of where they came from."""

    data: bytes
    where: str  # e.g. "--cert /w/tls.crt", "$MESHCLIENT_KEY=/w/tls.key" or "PEM text in $MESHCLIENT_KEY"
    path: Path | None = None

    def __repr__(self) -> str:  # never show the bytes (they may be a key)
        return f"Found(where={self.where!r})"


def positive_seconds(text: str) -> float:
    """argparse type for durations: a positive, finite number of seconds (else a usage error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (e.g. 10 or 2.5)") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number of seconds (e.g. 10)")
    return value


def positive_int(text: str) -> int:
    """argparse type for counts: a whole number of at least 1 (else a usage error, exit 2)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def add_material_options(parser: argparse.ArgumentParser) -> None:
    """The ``--cert/--key/--trust-anchors`` options every subcommand takes."""
    group = parser.add_argument_group("mesh material (default: the MESHCLIENT_* environment variables)")
    group.add_argument("--cert", metavar="PATH",
                       help=f"this workload's certificate chain: the leaf, then its issuer (tls.crt) [${ENV_CERT}]")
    group.add_argument("--key", metavar="PATH", help=f"the private key of that leaf (tls.key) [${ENV_KEY}]")
    group.add_argument("--trust-anchors", metavar="PATH",
                       help=f"the mesh trust anchors (ca.crt / Linkerd's ca-bundle.crt) [${ENV_TRUST_ANCHORS}]")
    group.add_argument("--secret-scope", metavar="NAME",
                       help="read all three from this Databricks secret scope instead (keys tls.crt, tls.key, "
                       "ca.crt): dbutils in a notebook, else databricks-sdk unified auth (DATABRICKS_HOST + "
                       "DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET, or a profile)")
    group.add_argument("--secret-keys", metavar="CERT,KEY,ANCHORS",
                       help="the key names in --secret-scope (default tls.crt,tls.key,ca.crt)")


def add_token_options(parser: argparse.ArgumentParser) -> None:
    """Options naming one bearer-token source; secrets come from the environment only."""
    group = parser.add_argument_group(
        "bearer token (optional; the token and any secret are never printed)")
    source = group.add_mutually_exclusive_group()
    source.add_argument("--token-env", metavar="VAR",
                        help="the token is in environment variable VAR (never on the command line)")
    source.add_argument("--token-file", metavar="PATH",
                        help="the token is in file PATH (e.g. a projected service-account token)")
    source.add_argument("--oidc-token-url", metavar="URL",
                        help=f"get a token with the OAuth client credentials grant from this token endpoint, as "
                        f"--oidc-client-id with the secret in ${ENV_OIDC_CLIENT_SECRET}")
    source.add_argument("--oidc-issuer", metavar="URL",
                        help="like --oidc-token-url, with the token endpoint found in the issuer's discovery "
                        "document (/.well-known/openid-configuration)")
    source.add_argument("--databricks-oauth", action="store_true",
                        help="a Databricks token through databricks-sdk unified auth (OAuth M2M with "
                        "DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET, a PAT, a profile, notebook auth)")
    group.add_argument("--oidc-client-id", metavar="ID", help="the OAuth client id for --oidc-token-url/--oidc-issuer")
    group.add_argument("--oidc-audience", metavar="AUD",
                       help="the audience to ask for (client credentials) and that the token must carry")
    group.add_argument("--oidc-scope", metavar="SCOPE", help="the OAuth scope(s) to ask for, space-separated")


@dataclass(frozen=True)
class ScopeSpec:
    """A secret scope and the key name of each material item in it."""

    scope: str
    cert_key: str = DEFAULT_SECRET_KEYS[0]
    key_key: str = DEFAULT_SECRET_KEYS[1]
    anchors_key: str = DEFAULT_SECRET_KEYS[2]

    def key_for(self, item: MaterialItem) -> str:
        return {CERT.dest: self.cert_key, KEY.dest: self.key_key, TRUST_ANCHORS.dest: self.anchors_key}[item.dest]


def secret_scope_spec(args: argparse.Namespace) -> ScopeSpec | None:
    """The ``--secret-scope``/``--secret-keys`` choice, or ``None``; contradictions are usage errors."""
    scope: str | None = getattr(args, "secret_scope", None)
    keys_arg: str | None = getattr(args, "secret_keys", None)
    if not scope:
        if keys_arg:
            raise UsageError("--secret-keys names keys inside a secret scope: add --secret-scope NAME.")
        return None
    given = [item.option for item in (CERT, KEY, TRUST_ANCHORS) if getattr(args, item.dest, None)]
    if given:
        raise UsageError(f"--secret-scope and {'/'.join(given)} are two sources for the same material: give one.")
    keys = DEFAULT_SECRET_KEYS if not keys_arg else tuple(k.strip() for k in keys_arg.split(","))
    if len(keys) != 3 or not all(keys):
        raise UsageError("--secret-keys takes three key names, certificate,key,anchors: e.g. tls.crt,tls.key,ca.crt.")
    return ScopeSpec(scope, *keys)


def sdk_message(exc: BaseException, extra_secrets: Iterable[str | None] = ()) -> str:
    """databricks-sdk's error text without its ``Config: ...`` dump, with any secret masked."""
    text = str(exc).split(". Config:")[0].strip() or type(exc).__name__
    known = [os.environ.get(name) for name in _DATABRICKS_SECRET_VARS]
    return redact_text(text, [*known, *extra_secrets])


def databricks_config(timeout: float | None = None) -> Any:
    """A databricks-sdk ``Config`` from unified auth, with retries bounded by ``timeout``.

    The SDK retries unreachable hosts for 5 minutes by default; a command line (and doctor
    above all) should fail within its own ``--timeout`` instead.
    """
    try:
        from databricks.sdk.core import Config
    except ImportError:
        raise ConfigurationError("This needs the databricks-sdk package, which is not installed.",
                                 hint="pip install 'meshclient[databricks]'") from None
    kwargs: dict[str, Any] = {}
    if timeout is not None:
        seconds = max(1, int(round(timeout)))
        kwargs = {"http_timeout_seconds": seconds, "retry_timeout_seconds": seconds}
    try:
        return Config(**kwargs)
    except Exception as exc:  # the SDK raises ValueError for missing or unusable settings
        raise ConfigurationError(f"No usable Databricks workspace configuration: {sdk_message(exc)}.",
                                 hint=_WORKSPACE_HINT) from None


def workspace_client(scope: str, timeout: float | None = None) -> Any:
    """A ``WorkspaceClient`` from unified auth, or a :class:`SecretScopeError` saying how to configure one."""
    try:
        from databricks.sdk import WorkspaceClient

        return WorkspaceClient(config=databricks_config(timeout))
    except ImportError:
        raise SecretScopeError(f"Reading secret scope '{scope}' outside a notebook needs the databricks-sdk package.",
                               hint="pip install 'meshclient[databricks]'", scope=scope, key="") from None
    except ConfigurationError as err:
        raise SecretScopeError(f"Cannot read secret scope '{scope}': {err.message}", hint=err.hint,
                               scope=scope, key="") from None


def secret_reader(spec: ScopeSpec, timeout: float | None = None) -> tuple[SecretReader, Any]:
    """The notebook's ``dbutils.secrets`` on a Databricks driver, else a ``WorkspaceClient``.

    Returns the reader and the ``WorkspaceClient`` (``None`` for dbutils).
    """
    dbutils = notebook_dbutils()
    if dbutils is not None:
        return DbutilsSecretReader(dbutils), None
    w = workspace_client(spec.scope, timeout)
    return WorkspaceSecretReader(w), w


@dataclass(frozen=True, repr=False)
class OIDCSettings:
    """The client credentials options; ``repr`` never shows the secret."""

    client_id: str
    token_url: str | None
    issuer: str | None
    client_secret: str | None
    audience: str | None
    scope: str | None

    def __repr__(self) -> str:
        return f"OIDCSettings(client_id={self.client_id!r}, token_url={redact_url(self.token_url) if self.token_url else None!r}, issuer={self.issuer!r})"


def token_source(args: argparse.Namespace) -> str | None:
    """Which token option was given: ``env``, ``file``, ``oidc``, ``databricks`` or ``None``."""
    oidc_only = [opt for opt, dest in (("--oidc-client-id", "oidc_client_id"), ("--oidc-scope", "oidc_scope"))
                 if getattr(args, dest, None)]
    if getattr(args, "token_env", None):
        kind = "env"
    elif getattr(args, "token_file", None):
        kind = "file"
    elif getattr(args, "oidc_token_url", None) or getattr(args, "oidc_issuer", None):
        kind = "oidc"
        if not getattr(args, "oidc_client_id", None):
            raise UsageError("--oidc-token-url/--oidc-issuer need --oidc-client-id ID (the secret is read from "
                             f"${ENV_OIDC_CLIENT_SECRET}).")
    elif getattr(args, "databricks_oauth", False):
        kind = "databricks"
    else:
        kind = None
    if oidc_only and kind != "oidc":
        raise UsageError(f"{' and '.join(oidc_only)} go with --oidc-token-url URL or --oidc-issuer URL.")
    if getattr(args, "oidc_audience", None) and kind is None:
        raise UsageError("--oidc-audience needs a token source: --oidc-token-url, --oidc-issuer, --token-env, "
                         "--token-file or --databricks-oauth.")
    return kind


def oidc_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> OIDCSettings:
    secret = environ.get(ENV_OIDC_CLIENT_SECRET)
    return OIDCSettings(client_id=args.oidc_client_id, token_url=getattr(args, "oidc_token_url", None),
                        issuer=getattr(args, "oidc_issuer", None), client_secret=secret or None,
                        audience=getattr(args, "oidc_audience", None), scope=getattr(args, "oidc_scope", None))


def outbound_settings(timeout: float | None) -> OutboundSettings | None:
    """With a command's ``--timeout``: that timeout and one attempt per call, so the command
    fails within its own limit instead of retrying behind the user's back; else the defaults."""
    if timeout is None:
        return None
    return OutboundSettings(timeout=(timeout, timeout), retries=OutboundRetryPolicy(attempts=1))


def client_credentials(settings: OIDCSettings, token_url: str, timeout: float | None = None) -> ClientCredentials:
    """The client credentials provider for these settings (one attempt per fetch when ``timeout`` is set)."""
    if not settings.client_secret:
        raise ConfigurationError(
            f"No client secret for OAuth client '{settings.client_id}': ${ENV_OIDC_CLIENT_SECRET} is not set.",
            hint=f"export {ENV_OIDC_CLIENT_SECRET}=<the client secret> (it is never read from the command line, "
            "where other users could see it in the process list).",
        )
    return ClientCredentials(token_url=token_url, client_id=settings.client_id, client_secret=settings.client_secret,
                             audience=settings.audience, scope=settings.scope, outbound=outbound_settings(timeout))


def simple_token_provider(args: argparse.Namespace, kind: str, timeout: float | None = None) -> TokenProvider:
    """The provider for ``env``, ``file`` and ``databricks`` sources (``oidc`` needs :func:`client_credentials`)."""
    if kind == "env":
        return EnvironmentToken(var=args.token_env)
    if kind == "file":
        return FileToken(args.token_file)
    if kind == "databricks":
        return DatabricksOAuth(config=databricks_config(timeout), retries=OutboundRetryPolicy(attempts=1))
    raise ValueError(f"no simple provider for token source {kind!r}")


def add_debug_option(parser: argparse.ArgumentParser, *, default: object = False) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show Python tracebacks for errors (for bug reports)")


def resolve(item: MaterialItem, args: argparse.Namespace, environ: Mapping[str, str]) -> Found:
    """Find one item: the command-line path, else the environment variable (path or PEM text)."""
    path_arg: str | None = getattr(args, item.dest, None)
    if path_arg:
        path = Path(path_arg)
        return Found(read_file(path, f"{item.what} ({item.option})"), f"{item.option} {path}", path)
    value = environ.get(item.env)
    if value is None or not value.strip():
        raise MaterialNotFoundError(
            f"No {item.what} given: neither {item.option} nor ${item.env} is set.",
            hint=f"Pass {item.option} PATH, or set {item.env} to the file's path or to its PEM text "
            f"(all three: {ENV_CERT}, {ENV_KEY}, {ENV_TRUST_ANCHORS}).",
        )
    if "-----BEGIN" in value:
        return Found(value.encode("utf-8"), f"PEM text in ${item.env}")
    path = Path(value.strip())
    return Found(read_file(path, f"{item.what} (${item.env})"), f"${item.env}={path}", path)


def for_command_line(err: MeshError) -> MeshError:
    """The same error with a fix a command-line user can apply (library hints name Python arguments)."""
    if isinstance(err, EncryptedKeyError):
        return EncryptedKeyError(err.message, hint=f"Set {ENV_KEY_PASSWORD} to the key's password (it is never read "
                                 "from the command line), or store the key unencrypted in a secret store.")
    return err


def key_password(environ: Mapping[str, str]) -> str | None:
    return environ.get(ENV_KEY_PASSWORD) or None


def group_or_world_readable(path: Path) -> int | None:
    """The file mode if others than the owner may read ``path``, else ``None``."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def _refuse_swapped(cert: Found, key: Found) -> None:
    """A key where the certificate belongs and a certificate where the key belongs: say so plainly."""
    cert_data, key_data = cert.data, key.data
    if b"PRIVATE KEY-----" in cert_data and b"-----BEGIN CERTIFICATE-----" in key_data:
        raise CredentialsError(
            f"The certificate ({cert.where}) is a private key and the key ({key.where}) is a certificate: "
            "--cert and --key look swapped.",
            hint="Swap them: --cert takes the certificate chain (tls.crt), --key the private key (tls.key).",
        )


def load_credentials(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
                     *, stderr: TextIO | None = None, timeout: float | None = None) -> Credentials:
    """A validated :class:`Credentials` snapshot from the options or the environment.

    With ``--secret-scope`` the material comes from that Databricks secret scope (``environ``
    then only supplies the key password: databricks-sdk reads ``os.environ`` itself).
    Soft warnings (profile deviations, the same-DN issuer workaround) go to stderr as
    ``meshclient: warning: ...`` lines instead of Python's warnings machinery.
    """
    env = os.environ if environ is None else environ
    spec = secret_scope_spec(args)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SameSubjectIssuerWarning)
            if spec is not None:
                w = None if notebook_dbutils() is not None else workspace_client(spec.scope, timeout)
                creds = Credentials.from_secret_scope(spec.scope, cert_key=spec.cert_key, key_key=spec.key_key,
                                                      anchors_key=spec.anchors_key, workspace_client=w,
                                                      password=key_password(env))
            else:
                cert = resolve(CERT, args, env)
                key = resolve(KEY, args, env)
                anchors = resolve(TRUST_ANCHORS, args, env)
                _refuse_swapped(cert, key)
                source = f"certificate {cert.where}, key {key.where}, trust anchors {anchors.where}"
                creds = Credentials.from_pem(cert.data, key.data, anchors.data, password=key_password(env),
                                             source=source)
    except MeshError as err:
        converted = for_command_line(err)
        if converted is err:
            raise
        raise converted from None
    for note in creds.warnings:
        report_warning(note, stderr)
    return creds


def report_error(err: MeshError, stream: TextIO | None = None) -> None:
    """``meshclient: error: <message>`` and the fix on the next line."""
    out = stream or sys.stderr
    print(f"meshclient: error: {err.message}", file=out)
    if err.hint:
        print(f"  fix: {err.hint}", file=out)


def report_warning(text: str, stream: TextIO | None = None) -> None:
    print(f"meshclient: warning: {text}", file=stream or sys.stderr)
