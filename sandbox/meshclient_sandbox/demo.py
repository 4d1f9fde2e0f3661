"""``make demo`` / ``meshclient demo``: a narrated end-to-end walk on the local sandbox mesh.

It starts the sandbox (meshed services behind Linkerd-like inbound proxies — echo, a results
receiver, an artifact store, a real MLflow server and a real MLflow model server — an OIDC
issuer, a Databricks workspace emulator). First the mesh, with the real ``meshclient`` command
line as subprocesses, exactly what a user would type: doctor reading the identity from the
secret scope, a request showing both identities, a wrong server refused before any byte is
sent, a policy denial (403 + ``l5d-proxy-error``), Linkerd's direct mode, a token-authenticated
request. Then the ML job in-process, as a notebook runs it (:mod:`.demo_ml`): a model and its
run logged through ``mesh+https``, a Spark DataFrame scored against the model server, the scores
pushed exactly once while a task dies, the audit trail. Every step checks its outcome; a
summary table closes. Exit status 0 means every step did. ``--mesh-only`` skips the ML half.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meshclient.credentials.loaders import ENV_CERT, ENV_KEY, ENV_KEY_PASSWORD, ENV_TRUST_ANCHORS
from meshclient.tokens import ClientCredentials

from . import demo_ml
from .runner import CLIENT_IDENTITY, OUTSIDER_IDENTITY, Sandbox, SandboxSettings

__all__ = ["main", "CLIENT_ID", "ECHO_ID"]

CLIENT_ID = CLIENT_IDENTITY
ECHO_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
WRONG_ID = "scorer.ml-serving.serviceaccount.identity.linkerd.cluster.local"
TOKEN_VAR = "MESHCLIENT_DEMO_TOKEN"
_MESH_ENV = (ENV_CERT, ENV_KEY, ENV_TRUST_ANCHORS, ENV_KEY_PASSWORD)


@dataclass
class _Step:
    title: str
    argv: list[str]
    expect_status: int
    expect_text: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    no_request: bool = False  # the service must see no request during this step


def _say(text: str = "") -> None:
    print(text, flush=True)


def _heading(text: str) -> None:
    _say()
    _say(f"-- {text} " + "-" * max(3, 76 - len(text)))


def _command_env(base: Mapping[str, str], mesh: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in _MESH_ENV}
    env.update(mesh)
    # the subprocess must import this very copy of meshclient, installed or not
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, base.get("PYTHONPATH", "")) if p)
    return env


def _run_step(step: _Step, base_env: dict[str, str], sandbox: Sandbox, *, show_env: Sequence[str] = ()) -> bool:
    shown = " ".join(f"{k}={shlex.quote(step.env[k])}" for k in show_env if k in step.env)
    _say(f"$ {shown + ' ' if shown else ''}meshclient {shlex.join(step.argv)}")
    echo_proxy = sandbox.proxies["echo"]
    seen_before = echo_proxy.stats.requests
    proc = subprocess.run([sys.executable, "-m", "meshclient", *step.argv], env={**base_env, **step.env},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=False)
    output = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
    _say(output.rstrip("\n"))
    problems = []
    if proc.returncode != step.expect_status:
        problems.append(f"exit status {proc.returncode}, expected {step.expect_status}")
    problems += [f"output lacks {text!r}" for text in step.expect_text if text not in output]
    if step.no_request:
        sent = echo_proxy.stats.requests - seen_before
        if sent:
            problems.append(f"the echo service's proxy received {sent} request(s)")
        else:
            _say(f"(exit status {proc.returncode}; the echo service's proxy received no request during this step)")
    elif proc.returncode and not problems:
        _say(f"(exit status {proc.returncode}, as expected)")
    if problems:
        _say(f"!! step '{step.title}' did not go as expected: {'; '.join(problems)}")
        return False
    return True


def _story(workdir: Path, mesh_only: bool = False) -> int:
    started = time.monotonic()
    _say("meshclient demo: mutual TLS with verified identities to Linkerd-meshed services, no proxy")
    _say(f"(everything lives in {workdir}; nothing outside it is touched)")
    services: tuple[str, ...] = ("echo", "results", "artifacts")
    if not mesh_only:
        gaps = demo_ml.missing()
        if gaps:
            _say(f"The ML half of the demo needs {', '.join(gaps)}: run 'make demo' in the meshclient checkout "
                 "(it installs them), or 'meshclient demo --mesh-only' for the mesh half.")
            return 1
        services = ("echo", *demo_ml.ML_SERVICES)
    summary: list[tuple[str, str, float]] = []

    with Sandbox(SandboxSettings(workdir, services=services)) as sandbox:
        info = sandbox.info
        echo = info["services"]["echo"]
        url = echo["url"]
        _heading("1. A local mesh")
        _say(sandbox.summary())
        _say("The command line finds this notebook's material in the environment (sandbox env.sh):")
        mesh_env = {ENV_CERT: info["client"]["cert"], ENV_KEY: info["client"]["key"],
                    ENV_TRUST_ANCHORS: info["trust_anchors"]}
        for name, value in mesh_env.items():
            _say(f"  export {name}={shlex.quote(value)}")
        base_env = _command_env(os.environ, mesh_env)
        outsider_env = {ENV_CERT: info["outsider"]["cert"], ENV_KEY: info["outsider"]["key"]}
        body_file = workdir / "features.json"
        body_file.write_text(json.dumps({"inputs": [[0.1, 0.7, 3.2], [1.5, 0.2, 0.9]]}) + "\n")

        oidc = info["oidc"]
        token = ClientCredentials(token_url=oidc["token_url"], client_id=oidc["client_id"],
                                  client_secret=oidc["client_secret"], audience=oidc["audience"]).token()
        direct_url = f"https://127.0.0.1:{echo['app_port']}/direct"
        workspace = {"DATABRICKS_HOST": info["workspace"]["host"], "DATABRICKS_TOKEN": info["workspace"]["token"]}
        steps = [
            ("2. Check everything first", "doctor reads the identity from the workspace's secret scope ml-mesh "
             "(tls.crt, tls.key, ca.crt), checks it, then makes a live handshake and one request.",
             _Step("doctor", ["doctor", "--secret-scope", "ml-mesh", "--target", f"{url}/health",
                              "--server-identity", ECHO_ID], 0,
                   ["TLSv1.3", f"proved '{ECHO_ID}'", "200", "ml-mesh"], env=workspace), ()),
            ("3. One request, both identities", "The proxy verified this notebook's certificate and passed its "
             "identity to the app as l5d-client-id; meshclient verified the service's.",
             _Step("request -i", ["request", "-i", "GET", f"{url}/hello", "--server-identity", ECHO_ID], 0,
                   ["HTTP/1.1 200", f'"l5d-client-id": "{CLIENT_ID}"']), ()),
            ("4. Send a file", "--data @FILE streams the file; -H adds headers.",
             _Step("request POST", ["request", "POST", f"{url}/invocations", "--server-identity", ECHO_ID,
                                    "-H", "Content-Type: application/json", "-H", "X-Request-Id: demo-1",
                                    "--data", f"@{body_file}"], 0,
                   [f'"length": {body_file.stat().st_size}', "demo-1"]), ()),
            ("5. The wrong server is refused", f"Asking for {WRONG_ID} at the echo service's address: meshclient "
             "sends that identity as SNI, and like a Linkerd proxy the echo service's proxy only terminates TLS for "
             "its own identity, so the handshake fails and no request byte is sent.",
             _Step("wrong identity (SNI)", ["request", "GET", f"{url}/secret", "--server-identity", WRONG_ID], 1,
                   ["handshake", "only terminates TLS for its own identity"], no_request=True), ()),
            ("6. A server proving another identity is refused", "Even when the TLS name is accepted (here forced "
             "with --server-name), the certificate proves echo, not the identity asked for: meshclient closes the "
             "connection right after the handshake, before any request byte.",
             _Step("wrong identity (certificate)", ["request", "GET", f"{url}/secret", "--server-identity", WRONG_ID,
                                                   "--server-name", ECHO_ID], 1,
                   ["not the expected identity", "No request was sent"], no_request=True), ()),
            ("7. The mesh policy says no", f"{OUTSIDER_IDENTITY} has valid mesh material, but the services only "
             "authorize the ml-team namespace: the proxy answers 403 with l5d-proxy-error (exit status 22).",
             _Step("policy denied", ["request", "-i", "GET", f"{url}/hello", "--server-identity", ECHO_ID], 22,
                   ["403", "l5d-proxy-error", OUTSIDER_IDENTITY], env=outsider_env), (ENV_CERT, ENV_KEY)),
            ("8. Linkerd's direct mode", f"TLS to the proxy's inbound port {echo['direct']} with ALPN "
             "transport.l5d.io/v1, then a transport header naming the app port (Linkerd's default since edge-25.3).",
             _Step("direct mode", ["request", "GET", direct_url, "--direct", echo["direct"],
                                   "--server-identity", ECHO_ID], 0,
                   [f'"client_id": "{CLIENT_ID}"', '"path": "/direct"']), ()),
            ("9. A token rides along", "A client-credentials token from the OIDC issuer (the job's identity) goes "
             "with the mesh identity; the service validates it and sees its subject. The token never appears.",
             _Step("token", ["request", "GET", f"{url}/whoami", "--server-identity", ECHO_ID,
                             "--token-env", TOKEN_VAR], 0,
                   [f'"subject": "{oidc["client_id"]}"', '"token": "verified"'],
                   env={TOKEN_VAR: token.value}), ()),
        ]
        failed = []
        for heading, explanation, step, show_env in steps:
            _heading(heading)
            _say(explanation)
            step_started = time.monotonic()
            ok = _run_step(step, base_env, sandbox, show_env=show_env)
            if not ok:
                failed.append(step.title)
            summary.append((heading.split(". ", 1)[1], "as expected" if ok else "FAILED",
                            time.monotonic() - step_started))
        if not mesh_only:
            story = demo_ml.MLStory(sandbox, _say, _heading)
            story.run(first_number=len(steps) + 2)
            failed += story.failures
            summary += story.summary

    elapsed = time.monotonic() - started
    _heading("Summary")
    demo_ml.write_summary(_say, summary)
    _say()
    if failed:
        _say(f"DEMO FAILED ({elapsed:.1f} s): {', '.join(failed)} did not behave as expected.")
        return 1
    _say(f"Demo complete in {elapsed:.1f} s: every step behaved as expected.")
    _say("Next: 'meshclient sandbox' keeps this local mesh up for your own code; notebooks/ has the same stories as "
         "Databricks notebooks; on a cluster, put the wheel in a volume (make wheels) or deploy bundle/, store the "
         "workload's tls.crt, tls.key and ca.crt in a secret scope, and start with 'meshclient doctor "
         "--secret-scope <scope>'.")
    return 0


def main(argv: Sequence[str] | None = None, *, workdir: str | None = None, mesh_only: bool = False) -> int:
    """Run the demo; ``argv`` is ``python -m meshclient_sandbox.demo``'s command line (``--workdir DIR``)."""
    if argv is not None:
        parser = argparse.ArgumentParser(prog="python -m meshclient_sandbox.demo", description=__doc__,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--workdir", metavar="DIR",
                            help="keep the sandbox here (default: a temporary directory, removed afterwards)")
        parser.add_argument("--mesh-only", action="store_true", help="skip the ML half (MLflow, scoring, results)")
        parsed = parser.parse_args(argv)
        workdir, mesh_only = parsed.workdir, parsed.mesh_only
    if workdir:
        path = Path(workdir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return _story(path, mesh_only)
    with tempfile.TemporaryDirectory(prefix="meshclient-demo-") as tmp:
        return _story(Path(tmp), mesh_only)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
