"""``meshclient score``: score a Parquet, CSV or JSON-lines table against a meshed model server.

Reads INPUT, scores it with :func:`meshclient.scoring.score` (MLflow ``/invocations`` or the
Open Inference Protocol) and writes the input's columns plus the predictions to ``--out`` in
the format its extension names. On a terminal, a progress line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from ..client import DEFAULT_TIMEOUT, MeshClient
from ..errors import ScoringError
from ..identity import Identity
from ..scoring import DEFAULT_BATCH_SIZE, PROTOCOLS, Scorer, ScoringStats, to_pandas
from ..scoring.invocations import json_value
from .common import (
    EXIT_OK,
    MATERIAL_HELP,
    HelpFormatter,
    UsageError,
    add_debug_option,
    add_material_options,
    add_token_options,
    load_credentials,
    positive_int,
    positive_seconds,
)
from .request import token_provider

__all__ = ["register", "run", "read_table", "write_table"]

_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
            ".json": "jsonl"}
_HELP = "score a Parquet/CSV/JSON-lines table against a meshed model server"
_DESCRIPTION = """\
Score every row of INPUT against a model server inside the mesh and write INPUT's columns plus
the predictions to --out (one prediction per row, in row order). --protocol mlflow posts to an
MLflow scoring server's /invocations; --protocol v2 to an Open Inference Protocol server
(KServe, Triton, MLServer) as /v2/models/MODEL/infer. Rows go in batches; a batch the server
answers with 429/502/503/504 is retried within the client's retry budget (inference is
idempotent; --no-retry-posts sends each batch once)."""
_EPILOG = f"""\
examples:
  meshclient score features.parquet --endpoint https://10.0.3.9:8080 \\
      --server-identity fraud-model.ml-serving.serviceaccount.identity.linkerd.cluster.local \\
      --protocol mlflow --out scores.parquet
  meshclient score rows.csv --endpoint https://kserve.ml-serving:8080 --server-identity ID \\
      --protocol v2 --model iris --out scores.jsonl

formats: by extension: .parquet/.pq, .csv, .jsonl/.ndjson (JSON lines); --format overrides.

{MATERIAL_HELP}"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("score", help=_HELP, description=_DESCRIPTION, epilog=_EPILOG, formatter_class=HelpFormatter)
    p.add_argument("input", metavar="INPUT", help="the table to score: a Parquet, CSV or JSON-lines file")
    p.add_argument("--endpoint", metavar="URL", required=True, help="the model server's https:// base URL")
    p.add_argument("--server-identity", metavar="ID", required=True, help="the mesh identity that must serve it")
    p.add_argument("--protocol", choices=PROTOCOLS, default="mlflow", help="mlflow (/invocations) or v2 (OIP)")
    p.add_argument("--model", metavar="NAME", help="the v2 model name (required with --protocol v2)")
    p.add_argument("--model-version", metavar="V", help="the v2 model version")
    p.add_argument("--out", metavar="OUTPUT", required=True, help="where to write the scored table")
    p.add_argument("--format", choices=["parquet", "csv", "jsonl"], help="input and output format (default: by extension)")
    p.add_argument("--input-cols", metavar="A,B,...", help="the columns sent to the model (default: all)")
    p.add_argument("--output-col", metavar="NAME", default="prediction", help="the prediction column (default: prediction)")
    p.add_argument("--param", metavar="KEY=JSON", action="append", default=[],
                   help="an MLflow params / v2 parameters entry; the value is JSON if it parses, else text")
    p.add_argument("--batch-size", metavar="N", type=positive_int, default=DEFAULT_BATCH_SIZE, help="rows per request")
    p.add_argument("--max-in-flight", metavar="N", type=positive_int, default=4, help="requests at once (default 4)")
    p.add_argument("--json-tensors", action="store_true", help="v2: JSON tensors instead of the binary extension")
    p.add_argument("--body-format", choices=["json", "parquet"], default="json",
                   help="mlflow: dataframe_split JSON (default; takes --param) or Parquet (faster for wide numeric tables)")
    p.add_argument("--no-retry-posts", action="store_true", help="send each batch once (a model with side effects)")
    p.add_argument("--timeout", metavar="SECONDS", type=positive_seconds, help="seconds per attempt (connect and between reads)")
    p.add_argument("--no-progress", action="store_true", help="no progress line, even on a terminal")
    add_token_options(p)
    add_material_options(p)
    add_debug_option(p, default=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _format(path: str, given: str | None) -> str:
    if given:
        return given
    fmt = _FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot tell the format of {path!r} from its extension; pass --format parquet|csv|jsonl.")
    return fmt


def read_table(path: str, fmt: str) -> Any:
    """A pandas DataFrame from a Parquet, CSV or JSON-lines file."""
    import pandas as pd

    if not Path(path).is_file():
        raise UsageError(f"INPUT {path!r} is not a file.")
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "csv":
        return pd.read_csv(path, float_precision="round_trip")  # the default parser may be 1 ulp off
    return pd.read_json(path, lines=True, precise_float=True)


def write_table(pdf: Any, path: str, fmt: str) -> None:
    if fmt == "parquet":
        pdf.to_parquet(path, index=False)
    elif fmt == "csv":
        pdf.to_csv(path, index=False)
    else:  # by hand: pandas' to_json rounds floats to 15 digits
        with open(path, "w", encoding="utf-8") as fh:
            for record in pdf.to_dict(orient="records"):
                fh.write(json.dumps({str(k): json_value(v) for k, v in record.items()}, allow_nan=False) + "\n")


def _params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param takes KEY=VALUE, got {item!r}.")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


class _Progress:
    """``scored 12000/50000 rows (24%)`` rewritten in place on a terminal; silent elsewhere."""

    def __init__(self, total: int, stream: TextIO, enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self.started = time.monotonic()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        pct = 100 * done // max(1, self.total)
        rate = done / max(1e-9, time.monotonic() - self.started)
        width = 30
        bar = "#" * (width * done // max(1, self.total))
        self.stream.write(f"\r[{bar:<{width}}] {done}/{self.total} rows ({pct}%) {rate:,.0f} rows/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _merge(pdf: Any, predictions: Any, output_col: str) -> Any:
    import pandas as pd

    if isinstance(predictions, pd.Series):
        return pdf.assign(**{output_col: predictions})
    renamed = {c: (f"{output_col}_{c}" if c in pdf.columns else c) for c in predictions.columns}
    return pd.concat([pdf, predictions.rename(columns=renamed)], axis=1)


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None, stderr: TextIO | None = None) -> int:
    """Score INPUT into OUTPUT; errors raise (MeshError: exit 1; UsageError: exit 2)."""
    err = stderr or sys.stderr
    in_fmt, out_fmt = _format(args.input, args.format), _format(args.out, args.format)
    if args.protocol == "v2" and not args.model:
        raise UsageError("--protocol v2 needs --model NAME.")
    if args.batch_size < 1 or args.max_in_flight < 1:
        raise UsageError("--batch-size and --max-in-flight must be at least 1.")
    identity = Identity.parse(args.server_identity)
    try:
        pdf = read_table(args.input, in_fmt)
    except ImportError:
        raise ScoringError("meshclient score needs pandas and pyarrow.",
                           hint="pip install 'meshclient[pandas]'.") from None
    inputs = [c.strip() for c in args.input_cols.split(",")] if args.input_cols else list(pdf.columns)
    missing = [c for c in inputs if c not in pdf.columns]
    if missing:
        raise UsageError(f"--input-cols {missing} are not columns of {args.input}.")
    creds = load_credentials(args, environ, timeout=args.timeout)
    timeout = DEFAULT_TIMEOUT if args.timeout is None else (args.timeout, args.timeout)
    stats = ScoringStats()
    progress = _Progress(len(pdf), err, err.isatty() and not args.no_progress)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(MeshClient(creds, timeout=timeout, token=token_provider(args, environ, args.timeout)))
        scorer = Scorer(client, args.endpoint, str(identity), protocol=args.protocol, model=args.model,
                        version=args.model_version, params=_params(args.param), batch_size=args.batch_size,
                        max_in_flight=args.max_in_flight, idempotent=not args.no_retry_posts,
                        binary=not args.json_tensors, body_format=args.body_format)
        chunk = args.batch_size * args.max_in_flight * 4
        parts: list[Any] = []
        try:
            for start in range(0, len(pdf), chunk):
                piece = pdf[inputs].iloc[start:start + chunk]
                predictions, _ = scorer.predict(piece, start=start, stats=stats)
                parts.append(to_pandas(predictions, piece.index, args.output_col))
                progress.update(min(len(pdf), start + chunk))
        finally:
            progress.close()
    import pandas as pd

    scored = pd.concat(parts) if parts else to_pandas([], pdf.index, args.output_col)
    write_table(_merge(pdf, scored, args.output_col), args.out, out_fmt)
    print(f"meshclient: scored {stats} -> {args.out}", file=err)
    return EXIT_OK
