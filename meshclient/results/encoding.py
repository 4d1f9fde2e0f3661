"""Results as bytes on the wire: any supported input to an Arrow table, and a table to a
spooled, digested body (Arrow IPC stream by default, Parquet or JSON lines on request).

pandas and pyarrow are imported here, lazily: ``import meshclient`` never pulls them in.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import ResultsError

__all__ = ["FORMATS", "CONTENT_TYPES", "EncodedBatch", "to_table", "encode", "decode"]

#: wire formats and their media types (the receiver records the type; ``read`` decodes by it)
CONTENT_TYPES = {
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
    "jsonl": "application/x-ndjson",
}
FORMATS = tuple(CONTENT_TYPES)
#: bodies up to this size stay in memory; larger ones spill to a temporary file
SPOOL_BYTES = 64 * 1024 * 1024


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
    except ImportError:
        raise ResultsError("meshclient.results needs pyarrow.",
                           hint="pip install 'meshclient[pandas]' (pandas and pyarrow).") from None
    return pa


def to_table(data: Any) -> Any:
    """An Arrow table from a pandas DataFrame, a pyarrow Table or RecordBatch, or a file path
    (``.parquet``, ``.csv``, ``.jsonl``/``.ndjson``/``.json`` lines)."""
    pa = _pyarrow()
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, (str, os.PathLike)):
        return _read_file(Path(data))
    if type(data).__name__ == "DataFrame" and type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise ResultsError(f"Results must be a pandas DataFrame, a pyarrow Table or RecordBatch, or a file path; "
                       f"got {type(data).__name__}.",
                       hint="Convert it first, e.g. pandas.DataFrame(rows) or pyarrow.table(columns).")


def _read_file(path: Path) -> Any:
    if not path.is_file():
        raise ResultsError(f"The results file {str(path)!r} does not exist or is not a file.",
                           hint="Give the path of a Parquet, CSV or JSON-lines file.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
        if suffix in (".jsonl", ".ndjson", ".json"):
            import pyarrow.json as pjson

            return pjson.read_json(path)
    except (OSError, ValueError) as exc:  # pyarrow's errors are ArrowInvalid (a ValueError) or OSError
        raise ResultsError(f"The results file {str(path)!r} could not be read as {suffix[1:]}: "
                           f"{type(exc).__name__}.", hint="Check the file's format and encoding.") from None
    raise ResultsError(f"The results file {str(path)!r} has an unknown type {suffix or '(no suffix)'!r}.",
                       hint="Use .parquet, .csv or .jsonl (JSON lines).")


@dataclass
class EncodedBatch:
    """A body ready to send (and to resend: ``body`` is seekable), with its size and sha-256."""

    body: IO[bytes]
    size: int
    sha256: bytes
    rows: int
    content_type: str

    def close(self) -> None:
        self.body.close()


class _DigestingWriter(io.RawIOBase):
    """A writable that hashes and counts what passes to the spool."""

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink, self.hash, self.size = sink, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.hash.update(view)
        self.sink.write(view)
        self.size += len(view)
        return len(view)


def encode(table: Any, fmt: str = "arrow") -> EncodedBatch:
    """Serialise ``table`` in ``fmt`` into a spooled body, hashing it as it is written."""
    if fmt not in CONTENT_TYPES:
        raise ResultsError(f"Unknown results format {fmt!r}.", hint=f"Use one of: {', '.join(FORMATS)}.")
    pa = _pyarrow()
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
    out = _DigestingWriter(spool)
    if fmt == "arrow":
        with pa.ipc.new_stream(out, table.schema) as writer:
            writer.write_table(table)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, out)
    else:
        for batch in table.to_batches(max_chunksize=10_000):
            for row in batch.to_pylist():
                out.write(json.dumps(row, default=str, ensure_ascii=False).encode() + b"\n")
    spool.seek(0)
    return EncodedBatch(spool, out.size, out.hash.digest(), table.num_rows, CONTENT_TYPES[fmt])


def decode(data: bytes, content_type: str | None) -> Any:
    """An Arrow table from a stored batch, by the media type it was staged with."""
    pa = _pyarrow()
    kind = (content_type or CONTENT_TYPES["arrow"]).split(";")[0].strip()
    if kind == CONTENT_TYPES["arrow"]:
        return pa.ipc.open_stream(pa.BufferReader(data)).read_all()
    if kind == CONTENT_TYPES["parquet"]:
        import pyarrow.parquet as pq

        return pq.read_table(pa.BufferReader(data))
    if kind == CONTENT_TYPES["jsonl"]:
        import pyarrow.json as pjson

        return pjson.read_json(pa.BufferReader(data))
    raise ResultsError(f"A stored batch has a media type meshclient cannot read: {kind!r}.",
                       hint=f"Batches pushed by meshclient use one of: {', '.join(CONTENT_TYPES.values())}.")
