"""``meshclient score`` against the real MLflow scoring server and KServe behind the sandbox's
proxy: Parquet, CSV and JSON lines in and out, predictions equal the models' own, a progress
line only on a terminal, usage errors exit 2, a wrong identity exits 1."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")

from meshclient.cli.main import main  # noqa: E402
from meshclient_sandbox.apps.model_servers import local_predictions  # noqa: E402
from meshclient_sandbox.runner import Sandbox  # noqa: E402

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture
def material(model_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    c = model_sandbox.info["client"]
    monkeypatch.setenv("MESHCLIENT_CERT", c["cert"])
    monkeypatch.setenv("MESHCLIENT_KEY", c["key"])
    monkeypatch.setenv("MESHCLIENT_TRUST_ANCHORS", model_sandbox.info["trust_anchors"])


def table(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(42)
    pdf = pd.DataFrame(rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(n, 4)), columns=COLUMNS)
    pdf.insert(0, "id", np.arange(n))
    return pdf


def write(pdf: pd.DataFrame, path: Path) -> None:
    if path.suffix == ".parquet":
        pdf.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        pdf.to_csv(path, index=False)
    else:
        pdf.to_json(path, orient="records", lines=True)


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path, float_precision="round_trip")
    return pd.read_json(path, lines=True, precise_float=True)


@pytest.mark.parametrize("suffix_in, suffix_out", [(".parquet", ".parquet"), (".csv", ".jsonl"), (".jsonl", ".csv")])
def test_mlflow_file_to_file(model_sandbox: Sandbox, material: None, tmp_path: Path, suffix_in: str, suffix_out: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    svc = model_sandbox.service("mlflow-scoring")
    pdf = table(2500)
    src, out = tmp_path / f"in{suffix_in}", tmp_path / f"out{suffix_out}"
    write(pdf, src)
    status = main(["score", str(src), "--endpoint", svc["url"], "--server-identity", svc["identity"],
                   "--protocol", "mlflow", "--input-cols", ",".join(COLUMNS), "--batch-size", "300", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    assert "scored 2500 rows in 9 requests" in capsys.readouterr().err
    scored = read(out)
    assert list(scored.columns) == ["id", *COLUMNS, "prediction"]
    expected = local_predictions("mlflow", model_sandbox.workdir, read(src)[COLUMNS])["prediction"]
    assert scored["prediction"].tolist() == expected.tolist()


def test_v2_with_two_outputs(model_sandbox: Sandbox, material: None, tmp_path: Path) -> None:
    svc = model_sandbox.service("kserve")
    pdf = table(1200)
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pdf.to_parquet(src, index=False)
    assert main(["score", str(src), "--endpoint", svc["url"], "--server-identity", svc["identity"], "--protocol", "v2",
                 "--model", "iris", "--input-cols", ",".join(COLUMNS), "--out", str(out)]) == 0
    scored = pd.read_parquet(out)
    expected = local_predictions("kserve", model_sandbox.workdir, pdf[COLUMNS])
    assert scored["label"].tolist() == expected["label"].tolist()
    assert [list(p) for p in scored["proba"]] == expected["proba"].tolist()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_terminal(model_sandbox: Sandbox, material: None, tmp_path: Path) -> None:
    from meshclient.cli import score as score_cli
    from meshclient.cli.main import build_parser

    svc = model_sandbox.service("mlflow-scoring")
    src = tmp_path / "in.parquet"
    table(3000).drop(columns="id").to_parquet(src, index=False)
    argv = ["score", str(src), "--endpoint", svc["url"], "--server-identity", svc["identity"], "--batch-size", "250",
            "--max-in-flight", "1", "--out", str(tmp_path / "out.parquet")]
    terminal, pipe = _Terminal(), io.StringIO()
    assert score_cli.run(build_parser().parse_args(argv), stderr=terminal) == 0
    assert score_cli.run(build_parser().parse_args(argv), stderr=pipe) == 0
    assert "\r[" in terminal.getvalue() and "3000/3000 rows (100%)" in terminal.getvalue()
    assert "\r" not in pipe.getvalue() and "scored 3000 rows" in pipe.getvalue()


def test_usage_and_identity_errors(model_sandbox: Sandbox, material: None, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    svc = model_sandbox.service("mlflow-scoring")
    src = tmp_path / "in.parquet"
    table(10).drop(columns="id").to_parquet(src, index=False)
    base = ["score", str(src), "--endpoint", svc["url"], "--out", str(tmp_path / "o.parquet")]
    assert main([*base, "--server-identity", svc["identity"], "--protocol", "v2"]) == 2  # no --model
    assert "--model" in capsys.readouterr().err
    assert main([*base[:-1], str(tmp_path / "o.xlsx"), "--server-identity", svc["identity"]]) == 2
    wrong = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
    assert main([*base, "--server-identity", wrong]) == 1
    err = capsys.readouterr().err
    assert "rows 0-9" in err and "TLSHandshakeError" in err
    assert not (tmp_path / "o.parquet").exists()
