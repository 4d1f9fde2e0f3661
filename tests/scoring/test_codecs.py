"""The scoring codecs against the spec and against ``tritonclient`` as the oracle for the binary
tensor extension: the same arrays give byte-identical request bodies."""

from __future__ import annotations

import json
import struct

import pytest

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from meshclient.errors import ScoringError  # noqa: E402
from meshclient.scoring import invocations, oip, tensors  # noqa: E402

triton_http = pytest.importorskip("tritonclient.http")
from tritonclient.http._utils import _get_inference_request  # noqa: E402
from tritonclient.utils import deserialize_bytes_tensor, np_to_triton_dtype  # noqa: E402

NUMERIC = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
           "float64"]


def triton_body(arrays: list[tuple[str, np.ndarray]], request_id: str) -> tuple[bytes, int | None]:
    inputs = []
    for name, a in arrays:
        i = triton_http.InferInput(name, list(a.shape), np_to_triton_dtype(a.dtype))
        i.set_data_from_numpy(a, binary_data=True)
        inputs.append(i)
    return _get_inference_request(inputs, request_id, None, 0, False, False, 0, None, None)


def ours(arrays: list[tuple[str, np.ndarray]], request_id: str) -> tuple[bytes, dict[str, str]]:
    ts = [oip.Tensor(n, tensors.datatype_of(a.dtype), a) for n, a in arrays]
    return oip.encode_request(ts, request_id)


numeric_arrays = st.sampled_from(NUMERIC).flatmap(
    lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5)))
text = st.one_of(st.text(max_size=12), st.binary(max_size=12))
bytes_arrays = hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=5).flatmap(
    lambda shape: hnp.arrays(np.dtype(object), shape, elements=text))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(numeric_arrays, bytes_arrays), min_size=1, max_size=3), st.uuids())
def test_binary_request_is_byte_identical_to_tritonclient(arrays: list[np.ndarray], rid: object) -> None:
    named = [(f"in{i}", a) for i, a in enumerate(arrays)]
    expected, header_len = triton_body(named, rid.hex)  # type: ignore[attr-defined]
    body, headers = ours(named, rid.hex)  # type: ignore[attr-defined]
    assert body == expected
    assert int(headers[oip.HEADER_LENGTH]) == header_len
    assert headers["Content-Type"] == "application/octet-stream"


@settings(max_examples=100, deadline=None)
@given(numeric_arrays)
def test_numeric_round_trip(a: np.ndarray) -> None:
    dt = tensors.datatype_of(a.dtype)
    back = tensors.decode_binary(tensors.encode_binary(a, dt), dt, a.shape)
    assert back.dtype == a.dtype.newbyteorder("<") and back.shape == a.shape
    assert back.tobytes() == a.tobytes()
    js = tensors.from_json_data(json.loads(json.dumps(tensors.json_data(a, dt))), dt, a.shape)
    np.testing.assert_array_equal(js, a)


@settings(max_examples=100, deadline=None)
@given(bytes_arrays)
def test_bytes_round_trip_matches_triton(a: np.ndarray) -> None:
    raw = tensors.encode_binary(a, "BYTES")
    expected = [v if isinstance(v, bytes) else str(v).encode() for v in a.ravel().tolist()]
    assert tensors.decode_binary(raw, "BYTES", a.shape).ravel().tolist() == expected
    if a.size:
        assert deserialize_bytes_tensor(raw).tolist() == expected


def test_bytes_wire_format_by_hand() -> None:
    a = np.array(["ab", b"\x00\xff", ""], dtype=object)
    assert tensors.encode_binary(a, "BYTES") == struct.pack("<I", 2) + b"ab" + struct.pack("<I", 2) + b"\x00\xff" + \
        struct.pack("<I", 0)
    assert tensors.encode_binary(np.array([1, 258], dtype=">i4"), "INT32") == b"\x01\x00\x00\x00\x02\x01\x00\x00"
    assert tensors.encode_binary(np.array([[True, False], [False, True]]), "BOOL") == b"\x01\x00\x00\x01"


def test_truncated_bytes_tensor_is_an_error() -> None:
    with pytest.raises(ScoringError, match="truncated"):
        tensors.decode_binary(struct.pack("<I", 5) + b"ab", "BYTES", [1])


@pytest.mark.parametrize("dtype, expected", [
    ("float64", "FP64"), ("float32", "FP32"), ("int64", "INT64"), ("uint8", "UINT8"), ("bool", "BOOL"),
    ("object", "BYTES"), ("string", "BYTES"), ("Int64", "INT64"), ("boolean", "BOOL"), ("Float32", "FP32"),
])
def test_pandas_datatypes(dtype: str, expected: str) -> None:
    assert tensors.datatype_of(pd.Series([], dtype=dtype).dtype) == expected


def test_arrow_datatypes() -> None:
    pa = pytest.importorskip("pyarrow")
    assert [tensors.datatype_of(t) for t in (pa.float32(), pa.int16(), pa.string(), pa.large_binary(), pa.bool_())] \
        == ["FP32", "INT16", "BYTES", "BYTES", "BOOL"]
    with pytest.raises(ScoringError, match="no Open Inference Protocol datatype"):
        tensors.datatype_of(pa.timestamp("us"))


def test_metadata_names_and_types_inputs() -> None:
    pdf = pd.DataFrame({"a": [1, 2], "b": [3.5, 4.5]})
    meta = oip.parse_metadata({"name": "m", "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
                               "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1]}]})
    (t,) = oip.tensors_for(pdf, meta)
    assert (t.name, t.datatype, t.shape) == ("x", "FP32", [2, 2])
    assert t.array.tolist() == [[1.0, 3.5], [2.0, 4.5]]
    per_column = oip.parse_metadata({"name": "m", "inputs": [{"name": "b", "datatype": "FP64", "shape": [-1, 1]},
                                                             {"name": "a", "datatype": "INT32", "shape": [-1]}]})
    t1, t2 = oip.tensors_for(pdf, per_column)
    assert (t1.name, t1.shape, t2.name, t2.datatype, t2.shape) == ("b", [2, 1], "a", "INT32", [2])
    plain = oip.tensors_for(pdf, None)
    assert [(t.name, t.datatype, t.shape) for t in plain] == [("a", "INT64", [2]), ("b", "FP64", [2])]
    two = oip.parse_metadata({"name": "m", "inputs": [{"name": "p", "datatype": "FP32", "shape": [-1]},
                                                      {"name": "q", "datatype": "FP32", "shape": [-1]}]})
    with pytest.raises(ScoringError, match="takes inputs"):
        oip.tensors_for(pdf, two)
    with pytest.raises(ScoringError, match="missing values"):
        oip.tensors_for(pd.DataFrame({"a": pd.array([1, None], dtype="Int64")}), None)


def test_json_request_always_has_an_id() -> None:
    body, headers = oip.encode_request([oip.Tensor("x", "FP64", np.array([1.5, 2.0]))], "r1", binary=False,
                                       binary_output=False)
    assert headers == {"Content-Type": "application/json"}
    assert json.loads(body) == {"id": "r1", "inputs": [{"name": "x", "shape": [2], "datatype": "FP64",
                                                        "data": [1.5, 2.0]}]}


def test_decode_mixed_binary_and_json_outputs() -> None:
    probs = np.array([[0.1, 0.9], [0.8, 0.2]], dtype="<f4")
    labels = np.array([b"yes", b"no"], dtype=object)
    raw_labels = tensors.encode_binary(labels, "BYTES")
    header = json.dumps({"id": "r", "outputs": [
        {"name": "probs", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 16}},
        {"name": "label", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw_labels)}},
        {"name": "score", "datatype": "INT64", "shape": [2], "data": [7, 8]}]}).encode()
    out = oip.decode_response(header + probs.tobytes() + raw_labels, {oip.HEADER_LENGTH: str(len(header))}, 2)
    assert list(out) == ["probs", "label", "score"]
    np.testing.assert_array_equal(out["probs"], probs)
    assert oip.values_per_row(out["label"]) == ["yes", "no"]
    assert out["score"].tolist() == [7, 8]
    with pytest.raises(ScoringError, match="not one prediction per row"):
        oip.decode_response(header + probs.tobytes() + raw_labels, {oip.HEADER_LENGTH: str(len(header))}, 3)


def test_mlflow_request_is_dataframe_split_with_exact_floats() -> None:
    pdf = pd.DataFrame({"x": [0.1 + 0.2, float("nan"), 1e-300], "n": [1, 2, 3], "s": ["a", None, "c"],
                        "t": pd.to_datetime(["2026-01-01", None, "2026-01-03"])})
    body, headers = invocations.encode_request(pdf, {"threshold": 0.5})
    assert headers == {"Content-Type": "application/json"}
    doc = json.loads(body)
    assert doc["params"] == {"threshold": 0.5}
    split = doc["dataframe_split"]
    assert split["columns"] == ["x", "n", "s", "t"]
    assert split["data"][0][0] == 0.1 + 0.2  # exact, not rounded to 15 digits
    assert split["data"][1] == [None, 2, None, None]
    assert split["data"][2][3].startswith("2026-01-03")


@pytest.mark.parametrize("answer, expected", [
    ({"predictions": [1, 0, 1]}, [1, 0, 1]),
    ([1, 0, 1], [1, 0, 1]),
    ({"predictions": [[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]]}, [[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]]),
    ({"predictions": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": 3, "b": "z"}]},
     {"a": [1, 2, 3], "b": ["x", "y", "z"]}),
    ({"predictions": {"a": [1, 2, 3], "b": [4, 5, 6]}}, {"a": [1, 2, 3], "b": [4, 5, 6]}),
    ({"a": [1, 2, 3]}, {"a": [1, 2, 3]}),
])
def test_mlflow_prediction_shapes(answer: object, expected: object) -> None:
    assert invocations.decode_response(json.dumps(answer).encode(), 3) == expected


def test_mlflow_wrong_count_is_an_error() -> None:
    with pytest.raises(ScoringError, match="2 predictions for 3 rows"):
        invocations.decode_response(b'{"predictions": [1, 2]}', 3)
    with pytest.raises(ScoringError, match="not predictions"):
        invocations.decode_response(b'{"predictions": 5}', 3)


def test_scoring_error_pickles_with_rows_and_status() -> None:
    import pickle

    err = ScoringError("Scoring rows 0-9 failed.", hint="Fix it.", rows=(0, 10), status=503)
    back = pickle.loads(pickle.dumps(err))  # Spark ships executor errors pickled
    assert (back.rows, back.status, back.hint, str(back)) == ((0, 10), 503, "Fix it.", str(err))
