"""``Scorer``: one model endpoint, batches of rows in, one prediction per row out.

Each batch is one ``POST`` through the client's public :meth:`~meshclient.MeshClient.request`.
Inference does not change the server's state, so the POST is marked idempotent (an
``Idempotency-Key`` header, the same on every attempt): the client may retry it on a 503,
502, 504, 429 or a lost answer, within its retry budget and deadline, exactly as it retries a
GET. ``idempotent=False`` opts out (for a model with side effects): the POST is then sent once.
"""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..errors import MeshError, ScoringError
from ..redaction import redact_text, redact_url
from . import invocations, oip
from .stats import ScoringStats

if TYPE_CHECKING:
    from ..client import MeshClient

__all__ = ["Scorer", "PROTOCOLS", "DEFAULT_BATCH_SIZE", "DEFAULT_MAX_BATCH_BYTES"]

PROTOCOLS = ("mlflow", "v2")
DEFAULT_BATCH_SIZE = 1000
DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024
_MESSAGE_LIMIT = 400

Gate = Callable[[], AbstractContextManager[Any]]


def _server_message(body: bytes) -> str:
    """The server's own words about a failure (MLflow ``message``, OIP ``error``), redacted and short."""
    text = body[:4096].decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        if isinstance(doc, dict):
            text = str(doc.get("message") or doc.get("error") or doc.get("detail") or text)
    except ValueError:
        pass
    text = redact_text(" ".join(text.split()))
    if len(text) <= _MESSAGE_LIMIT:
        return text
    # MLflow echoes the input first and says what is wrong last: keep both ends.
    return text[:100] + " ... " + text[-(_MESSAGE_LIMIT - 100):]


class Scorer:
    """A model endpoint to score tables against; reusable and thread-safe.

    Args:
        client: the :class:`~meshclient.MeshClient` every request goes through.
        endpoint: the model server's base URL (``https://host:port``).
        server_identity: the identity the server must prove.
        protocol: ``"mlflow"`` (``POST /invocations``) or ``"v2"`` (Open Inference Protocol).
        model / version: the v2 model name (required for v2) and optional version.
        params: MLflow ``params`` or v2 request ``parameters``.
        batch_size: rows per request at most; max_batch_bytes: body bytes per request at most
            (a batch over it is split, down to one row).
        max_in_flight: requests in flight at once for one :meth:`score` call.
        idempotent: mark scoring POSTs retryable (default); ``False`` sends each once.
        binary: v2 only: the binary tensor extension (default) or plain JSON.
        use_metadata: v2 only: read ``GET /v2/models/<model>`` to name and type inputs.
        datatypes: v2 only: ``{input or column: OIP datatype}`` overrides.
        timeout: per-attempt timeout for scoring requests (default: the client's).
        gate: a callable returning a context manager held around each request (Spark's
            per-executor bound on requests in flight).
        metadata: v2 only: model metadata already read (executors get the driver's).
        body_format: MLflow only: ``"json"`` (``dataframe_split``, the default) or ``"parquet"``.
    """

    def __init__(self, client: MeshClient, endpoint: str, server_identity: str, *, protocol: str = "mlflow",
                 model: str | None = None, version: str | None = None, params: Mapping[str, Any] | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
                 max_in_flight: int = 1, idempotent: bool = True, binary: bool = True, use_metadata: bool = True,
                 datatypes: Mapping[str, str] | None = None, timeout: float | tuple[float, float] | None = None,
                 gate: Gate | None = None, metadata: oip.ModelMetadata | None = None,
                 body_format: str = "json") -> None:
        if protocol not in PROTOCOLS:
            raise ScoringError(f"Unknown scoring protocol {protocol!r}.",
                               hint="Use protocol='mlflow' (POST /invocations) or protocol='v2' (Open Inference Protocol).")
        if body_format not in ("json", "parquet"):
            raise ScoringError(f"body_format must be 'json' or 'parquet', got {body_format!r}.")
        for name, value in (("batch_size", batch_size), ("max_batch_bytes", max_batch_bytes),
                            ("max_in_flight", max_in_flight)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ScoringError(f"{name} must be a positive integer, got {value!r}.")
        if not isinstance(endpoint, str) or not endpoint.startswith("https://"):
            raise ScoringError(f"The scoring endpoint must be an https:// base URL, got {redact_url(str(endpoint))!r}.",
                               hint="Pass the model server's base URL, e.g. https://10.0.3.9:8080.")
        self.client = client
        self.endpoint = endpoint.rstrip("/")
        self.server_identity = server_identity
        self.protocol = protocol
        self.path = oip.model_path(model or "", version) + "/infer" if protocol == "v2" else invocations.PATH
        self.model, self.version = model, version
        self.params = dict(params or {})
        self.batch_size, self.max_batch_bytes, self.max_in_flight = batch_size, max_batch_bytes, max_in_flight
        self.idempotent, self.binary, self.use_metadata = idempotent, binary, use_metadata
        self.datatypes = dict(datatypes or {})
        self.timeout = timeout
        self.gate = gate
        self.body_format = body_format
        self._metadata = metadata
        self._metadata_read = metadata is not None
        #: how error messages name rows (Spark: "partition 3 rows")
        self.row_label = "rows"
        self._lock = threading.Lock()

    # -- v2 metadata ----------------------------------------------------------------------
    def metadata(self) -> oip.ModelMetadata | None:
        """The v2 model's metadata, read once (``None`` for MLflow, or when the server has none)."""
        if self.protocol != "v2" or not self.use_metadata:
            return None
        with self._lock:
            if not self._metadata_read:
                url = self.endpoint + oip.model_path(self.model or "", self.version)
                resp = self.client.request("GET", url, server_identity=self.server_identity, timeout=self.timeout)
                if resp.status_code == 200:
                    self._metadata = oip.parse_metadata(resp.json())
                elif resp.status_code != 404:
                    raise ScoringError(f"Reading the model metadata at {redact_url(url)} failed: HTTP "
                                       f"{resp.status_code}: {_server_message(resp.content)}",
                                       hint="Check the model name, or pass use_metadata=False.",
                                       status=resp.status_code)
                self._metadata_read = True
            return self._metadata

    # -- one batch ------------------------------------------------------------------------
    def encode(self, pdf: Any, request_id: str) -> tuple[bytes, dict[str, str]]:
        """The body and content headers for a batch of rows."""
        if self.protocol == "mlflow":
            if self.body_format == "parquet":
                return invocations.encode_parquet(pdf, self.params)
            return invocations.encode_request(pdf, self.params)
        tensors = oip.tensors_for(pdf, self.metadata(), self.datatypes)
        return oip.encode_request(tensors, request_id, binary=self.binary, binary_output=self.binary,
                                  parameters=self.params)

    def decode(self, body: bytes, headers: Mapping[str, str], rows: int) -> invocations.Predictions:
        if self.protocol == "mlflow":
            return invocations.decode_response(body, rows)
        arrays = oip.decode_response(body, headers, rows)
        if len(arrays) == 1:
            return oip.values_per_row(next(iter(arrays.values())))
        return {name: oip.values_per_row(a) for name, a in arrays.items()}

    def _batches(self, pdf: Any, start: int) -> Iterator[tuple[int, int, bytes, dict[str, str], str]]:
        """``(start, stop, body, headers, request id)`` per request, sized by rows and bytes."""
        n, pos, rows = len(pdf), 0, self.batch_size
        while pos < n:
            stop = min(n, pos + rows)
            request_id = uuid.uuid4().hex
            body, headers = self.encode(pdf.iloc[pos:stop], request_id)
            while len(body) > self.max_batch_bytes and stop - pos > 1:
                rows = max(1, int((stop - pos) * self.max_batch_bytes / len(body) * 0.9))
                stop = pos + rows
                body, headers = self.encode(pdf.iloc[pos:stop], request_id)
            yield start + pos, start + stop, body, headers, request_id
            pos = stop

    def _send(self, first: int, stop: int, body: bytes, headers: dict[str, str], request_id: str,
              stats: ScoringStats | None) -> invocations.Predictions:
        url = self.endpoint + self.path
        sent = dict(headers)
        if self.idempotent:
            sent["Idempotency-Key"] = request_id
        where = f"{self.row_label} {first}-{stop - 1} at {redact_url(url)}"
        gate = self.gate() if self.gate is not None else contextlib.nullcontext()
        try:
            with gate:
                resp = self.client.request("POST", url, server_identity=self.server_identity, data=body,
                                           headers=sent, timeout=self.timeout)
        except MeshError as exc:
            error = ScoringError(f"Scoring {where} failed: {type(exc).__name__}: {exc.message}",
                                 hint=exc.hint, rows=(first, stop))
            raise error from exc  # a MeshError: clean, and catchable by its own class via __cause__
        record = resp.mesh
        if stats is not None and record is not None:
            stats.record(stop - first, record.seconds, record.attempt_count)
        if resp.status_code != 200:
            raise ScoringError(f"Scoring {where} failed: HTTP {resp.status_code}: {_server_message(resp.content)}",
                               hint=self._hint(resp.status_code), rows=(first, stop), status=resp.status_code)
        try:
            return self.decode(resp.content, resp.headers, stop - first)
        except ScoringError as exc:
            raise ScoringError(f"Scoring {where}: {exc.message}", hint=exc.hint, rows=(first, stop)) from None

    def _hint(self, status: int) -> str:
        if status in (401, 403):
            return ("The server or its mesh policy refused this client (identity or token): check the server's "
                    "authorization policy for this client's identity.")
        if status == 429 or status >= 500:
            if not self.idempotent:
                return "The batch was sent once (idempotent=False); retry the job, or let meshclient retry batches."
            return ("The server kept failing within the retries the client's budget allowed; retry later or lower "
                    "max_in_flight / batch_size.")
        return "Fix the input rows (column names and types) or the request (model, params)."

    # -- a whole table --------------------------------------------------------------------
    def predict(self, pdf: Any, *, start: int = 0, stats: ScoringStats | None = None,
                on_error: str = "raise") -> tuple[invocations.Predictions, list[str | None] | None]:
        """Predictions for every row of ``pdf`` in order, and (``on_error="null"``) per-row errors.

        ``start`` numbers the rows in error messages (a Spark partition's offset).
        """
        if on_error not in ("raise", "null"):
            raise ScoringError(f"on_error must be 'raise' or 'null', got {on_error!r}.")
        batches = self._batches(pdf, start)
        parts: list[tuple[int, int, invocations.Predictions | ScoringError]] = []

        def run(item: tuple[int, int, bytes, dict[str, str], str]) -> tuple[int, int, Any]:
            first, stop = item[0], item[1]
            try:
                return first, stop, self._send(*item, stats)
            except ScoringError as exc:
                if on_error == "raise":
                    raise
                return first, stop, exc

        if self.max_in_flight == 1:
            parts = [run(b) for b in batches]
        else:  # a sliding window: at most 2 x max_in_flight encoded bodies in memory at once
            with ThreadPoolExecutor(self.max_in_flight, thread_name_prefix="meshclient-score") as pool:
                pending: collections.deque[Future[tuple[int, int, Any]]] = collections.deque()
                for item in batches:
                    if len(pending) >= 2 * self.max_in_flight:
                        parts.append(pending.popleft().result())
                    pending.append(pool.submit(run, item))
                while pending:
                    parts.append(pending.popleft().result())
        return _combine(parts, stats)


def _combine(parts: Sequence[tuple[int, int, Any]], stats: ScoringStats | None,
             ) -> tuple[invocations.Predictions, list[str | None] | None]:
    """Concatenate batch predictions; failed batches (``on_error="null"``) become ``None`` rows."""
    names: list[str] | None = None
    for _, _, p in parts:
        if isinstance(p, dict):
            names = list(p)
            break
    errors: list[str | None] | None = None
    if any(isinstance(p, ScoringError) for _, _, p in parts):
        errors = []
    flat: list[Any] = []
    columns: dict[str, list[Any]] = {n: [] for n in names or ()}
    for first, stop, p in parts:
        n = stop - first
        failed = isinstance(p, ScoringError)
        if errors is not None:
            errors.extend([str(p)] * n if failed else [None] * n)
        if failed and stats is not None:
            stats.failed_rows += n
        if names is None:
            flat.extend([None] * n if failed else p)
        else:
            for name in names:
                columns[name].extend([None] * n if failed or not isinstance(p, dict) else p.get(name, [None] * n))
    return (flat if names is None else columns), errors
