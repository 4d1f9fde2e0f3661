"""The sandbox's services, one registry: what each one is, what it needs installed, and how to
build its app (the plain-HTTP server the service's inbound proxy fronts). The runner, the CLI
(``meshclient sandbox --service NAME``) and the error for an unknown name all read it; a new
service is one :class:`ServiceSpec` here (see ``docs/architecture.md``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .apps import App

__all__ = ["ServiceContext", "ServiceSpec", "SERVICES", "DEFAULT_SERVICES", "service_spec", "missing_for"]


@dataclass(frozen=True)
class ServiceContext:
    """What a service's app is built from: the sandbox's workdir and host, the token check the
    apps apply, and the service's own options (``SandboxSettings.extra[name]``)."""

    workdir: Path
    host: str
    validate_token: Callable[[str], Mapping[str, Any]]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    summary: str
    build: Callable[[ServiceContext], App]
    #: Python modules that must be importable here (a subprocess server's own venv is checked by its app)
    requires: tuple[str, ...] = ()
    install_hint: str = ""


def _echo(ctx: ServiceContext) -> App:
    from .apps import EchoApp

    return EchoApp(host=ctx.host, token_validator=ctx.validate_token)


def _results(ctx: ServiceContext) -> App:
    from .apps import ResultsSink

    return ResultsSink(ctx.workdir / "data" / "results", host=ctx.host, token_validator=ctx.validate_token)


def _artifacts(ctx: ServiceContext) -> App:
    from .apps import ArtifactStore

    return ArtifactStore(ctx.workdir / "data" / "artifacts", host=ctx.host, token_validator=ctx.validate_token)


def _mlflow(ctx: ServiceContext) -> App:
    from .apps.mlflow_server import MlflowServer

    command = ctx.options.get("command")
    return MlflowServer(ctx.workdir / "data" / "mlflow", host=ctx.host, command=command)  # type: ignore[return-value]


def _model_server(kind: str) -> Callable[[ServiceContext], App]:
    def build(ctx: ServiceContext) -> App:
        from .apps.model_servers import sandbox_model_server

        return sandbox_model_server(kind, ctx.workdir, dict(ctx.options), host=ctx.host)

    return build


SERVICES: dict[str, ServiceSpec] = {spec.name: spec for spec in (
    ServiceSpec("echo", "echoes each request as JSON (identities, headers, body length)", _echo),
    ServiceSpec("results", "the results receiver: staged, idempotent, durable batches, job-keyed commits", _results),
    ServiceSpec("artifacts", "a WebDAV-style artifact store (PUT, GET, HEAD, DELETE, PROPFIND, digests)", _artifacts),
    ServiceSpec("mlflow", "a real `mlflow server` (SQLite, --serve-artifacts)", _mlflow, requires=("mlflow", "flask"),
                install_hint="pip install mlflow"),
    ServiceSpec("mlflow-scoring", "a real MLflow scoring server (`mlflow models serve`) for a scikit-learn model",
                _model_server("mlflow"), install_hint="make model-servers (.venv-mlflow)"),
    ServiceSpec("kserve", "a real KServe model server (Open Inference Protocol v2)", _model_server("kserve"),
                install_hint="make model-servers (.venv-kserve)"),
)}

DEFAULT_SERVICES = ("echo", "results", "artifacts")


def service_spec(name: str) -> ServiceSpec:
    try:
        return SERVICES[name]
    except KeyError:
        raise ValueError(f"unknown sandbox service {name!r} (known: {', '.join(SERVICES)})") from None


def missing_for(name: str) -> list[str]:
    """The Python modules service ``name`` needs that this environment lacks."""
    return [m for m in service_spec(name).requires if importlib.util.find_spec(m) is None]
