"""``meshclient.results`` against the sandbox results receiver, asserting on the receiver's side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
pd = pytest.importorskip("pandas")

from meshclient import MeshClient, results  # noqa: E402
from meshclient.errors import ResultsError, ServerIdentityError, TLSHandshakeError  # noqa: E402
from meshclient_sandbox.runner import Sandbox  # noqa: E402


def _frame(n: int, offset: int = 0) -> Any:
    return pd.DataFrame({"id": range(offset, offset + n), "score": [i / 7 for i in range(n)],
                         "label": [f"ü-{i % 3}" for i in range(n)]})


def _stored(mesh_sandbox: Sandbox, dataset: str) -> list[Path]:
    return sorted((mesh_sandbox.workdir / "data" / "results" / "datasets" / dataset / "batches").glob("*.data"))


@pytest.mark.parametrize("fmt", ["arrow", "parquet", "jsonl"])
def test_push_then_read_round_trips_every_row(client: MeshClient, sink: dict[str, Any], fmt: str) -> None:
    frame = _frame(5000)
    receipt = results.push(client, frame, url=sink["url"], server_identity=sink["identity"],
                           dataset=f"rt-{fmt}", format=fmt)
    assert receipt.rows == 5000 and receipt.version == 1 and not receipt.replayed
    back = results.read(client, url=sink["url"], server_identity=sink["identity"], dataset=f"rt-{fmt}").to_pandas()
    assert back["id"].tolist() == list(range(5000))
    assert back["label"].tolist() == frame["label"].tolist()
    assert back["score"].tolist() == pytest.approx(frame["score"].tolist())


def test_the_same_batch_pushed_twice_is_stored_once(client: MeshClient, sink: dict[str, Any],
                                                    mesh_sandbox: Sandbox) -> None:
    frame = _frame(1000)
    first = results.push(client, frame, url=sink["url"], server_identity=sink["identity"], dataset="twice")
    second = results.push(client, frame, url=sink["url"], server_identity=sink["identity"], dataset="twice")
    assert second.replayed and second.batch_id == first.batch_id and second.version == first.version
    assert len(_stored(mesh_sandbox, "twice")) == 1  # the receiver holds one copy
    manifest = json.loads((mesh_sandbox.workdir / "data" / "results" / "datasets" / "twice" / "manifest.json").read_text())
    assert [b["batch_id"] for b in manifest["batches"]] == [first.batch_id]
    back = results.read(client, url=sink["url"], server_identity=sink["identity"], dataset="twice")
    assert back.num_rows == 1000


def test_staged_batches_are_invisible_until_committed(client: MeshClient, sink: dict[str, Any]) -> None:
    ids = []
    for part in range(3):
        bid, _, _ = results.stage(client, _frame(100, part * 100), url=sink["url"], server_identity=sink["identity"],
                                  dataset="staged", batch_id=results.batch_id_for("staged", "job-1", part))
        ids.append(bid)
    with pytest.raises(ResultsError) as err:  # nothing committed yet: no dataset to read
        results.read(client, url=sink["url"], server_identity=sink["identity"], dataset="staged")
    assert err.value.status == 404
    results.commit(client, ids, url=sink["url"], server_identity=sink["identity"], dataset="staged")
    again = results.commit(client, ids, url=sink["url"], server_identity=sink["identity"], dataset="staged")
    assert again["version"] == 1 and again["added"] == []  # a re-sent commit changes nothing
    back = results.read(client, url=sink["url"], server_identity=sink["identity"], dataset="staged").to_pandas()
    assert sorted(back["id"]) == list(range(300))


def test_files_of_every_kind_push(client: MeshClient, sink: dict[str, Any], tmp_path: Path) -> None:
    frame = _frame(200)
    frame.to_parquet(tmp_path / "r.parquet")
    frame.to_csv(tmp_path / "r.csv", index=False)
    frame.to_json(tmp_path / "r.jsonl", orient="records", lines=True, force_ascii=False)
    for name in ("r.parquet", "r.csv", "r.jsonl"):
        receipt = results.push(client, tmp_path / name, url=sink["url"], server_identity=sink["identity"],
                               dataset=f"file-{name.split('.')[1]}")
        assert receipt.rows == 200


def test_a_wrong_identity_stores_nothing(client: MeshClient, sink: dict[str, Any], mesh_sandbox: Sandbox) -> None:
    with pytest.raises((ServerIdentityError, TLSHandshakeError)):  # refused before any byte of the batch
        results.push(client, _frame(10), url=sink["url"], dataset="wrong-id",
                     server_identity="echo.ml-platform.serviceaccount.identity.linkerd.cluster.local")
    assert _stored(mesh_sandbox, "wrong-id") == []


def test_bad_input_is_a_clear_error(client: MeshClient, sink: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="pandas DataFrame, a pyarrow Table"):
        results.push(client, [1, 2, 3], url=sink["url"], server_identity=sink["identity"], dataset="bad")
    with pytest.raises(ResultsError, match="unknown type"):
        (tmp_path / "x.txt").write_text("hi")
        results.push(client, tmp_path / "x.txt", url=sink["url"], server_identity=sink["identity"], dataset="bad")
    with pytest.raises(ResultsError, match="Unknown results format"):
        results.push(client, _frame(1), url=sink["url"], server_identity=sink["identity"], dataset="bad",
                     format="xml")
    with pytest.raises(Exception, match="dataset name"):
        results.push(client, _frame(1), url=sink["url"], server_identity=sink["identity"], dataset="../etc")


def test_the_cli_pushes_a_file_exactly_once(mesh_sandbox: Sandbox, sink: dict[str, Any], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from meshclient.cli.main import main

    _frame(300).to_parquet(tmp_path / "scores.parquet")
    c = mesh_sandbox.info["client"]
    argv = ["push", "results", str(tmp_path / "scores.parquet"), "--to", sink["url"], "--server-identity",
            sink["identity"], "--dataset", "cli", "--cert", c["cert"], "--key", c["key"],
            "--trust-anchors", mesh_sandbox.info["trust_anchors"]]
    assert main(argv) == 0
    assert "committed 300 row(s)" in capsys.readouterr().out
    assert main(argv) == 0
    assert "stored once" in capsys.readouterr().out
    assert len(_stored(mesh_sandbox, "cli")) == 1
    assert main([*argv[:3], "--to", "http://x", *argv[5:]]) == 2


def test_a_large_table_goes_in_batches_committed_together_and_once(client: MeshClient, sink: dict[str, Any],
                                                                    mesh_sandbox: Sandbox) -> None:
    frame, seen = _frame(2500), []
    kw = dict(url=sink["url"], server_identity=sink["identity"], dataset="split")
    first = results.push(client, frame, batch_rows=1000, progress=lambda done, total: seen.append((done, total)), **kw)
    assert len(first.batch_ids) == 3 and first.rows == 2500 and first.version == 1
    assert seen == [(1000, 2500), (2000, 2500), (2500, 2500)]
    again = results.push(client, frame, batch_rows=1000, **kw)
    assert again.replayed and again.batch_ids == first.batch_ids and again.version == 1
    assert len(_stored(mesh_sandbox, "split")) == 3
    assert sorted(results.read(client, **kw).column("id").to_pylist()) == list(range(2500))


def test_the_cli_shows_progress_on_a_terminal(mesh_sandbox: Sandbox, sink: dict[str, Any], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from meshclient.cli.main import main

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    _frame(2500).to_parquet(tmp_path / "big.parquet")
    c = mesh_sandbox.info["client"]
    argv = ["push", "results", str(tmp_path / "big.parquet"), "--to", sink["url"], "--server-identity",
            sink["identity"], "--dataset", "cli-progress", "--batch-rows", "1000", "--cert", c["cert"], "--key",
            c["key"], "--trust-anchors", mesh_sandbox.info["trust_anchors"]]
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(argv) == 0
    assert "staged 1,000/2,500 rows (40 %)" in terminal.getvalue()
    assert "staged 2,500/2,500 rows (100 %)" in terminal.getvalue()
    assert "committed 2500 row(s)" in capsys.readouterr().out and len(_stored(mesh_sandbox, "cli-progress")) == 3
    assert main([*argv[:9], "0", *argv[10:]]) == 2  # --batch-rows 0: a usage error
