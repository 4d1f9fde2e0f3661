"""A small KServe (0.21) v2 model for the sandbox: a scikit-learn tree on iris, run in ``.venv-kserve``.

Not imported by meshclient: run as a script with the KServe venv's Python::

    python kserve_model.py train   --model-dir DIR                 # fits and saves DIR/model.joblib
    python kserve_model.py predict --model-dir DIR --input X.npy --output Y.npz   # local predictions
    python kserve_model.py serve   --model-dir DIR --name iris --http_port PORT   # KServe ModelServer

The model takes one input ``features`` (FP64, ``[-1, 4]``) and answers two outputs: ``label``
(INT64, ``[-1]``) and ``proba`` (FP64, ``[-1, 3]``), declared in its v2 metadata.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

INPUTS = [{"name": "features", "datatype": "FP64", "shape": [-1, 4]}]
OUTPUTS = [{"name": "label", "datatype": "INT64", "shape": [-1]}, {"name": "proba", "datatype": "FP64", "shape": [-1, 3]}]


def train(model_dir: str) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    # A tree: a row's answer never depends on the batch around it (BLAS sums in a linear model
    # may differ in the last bit between a 1000-row batch and the whole table).
    x, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y)
    os.makedirs(model_dir, exist_ok=True)
    joblib.dump(model, os.path.join(model_dir, "model.joblib"))


def predict(model_dir: str, input_path: str, output_path: str) -> None:
    import joblib
    import numpy as np

    model = joblib.load(os.path.join(model_dir, "model.joblib"))
    x = np.load(input_path)
    np.savez(output_path, label=model.predict(x).astype("int64"), proba=model.predict_proba(x))


def serve(model_dir: str, name: str) -> None:
    import joblib
    import kserve
    from kserve import InferOutput, InferRequest, InferResponse

    class IrisModel(kserve.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(name)
            self.model: Any = None

        def load(self) -> bool:
            self.model = joblib.load(os.path.join(model_dir, "model.joblib"))
            self.ready = True
            return True

        def get_input_types(self) -> list[dict[str, Any]]:
            return INPUTS

        def get_output_types(self) -> list[dict[str, Any]]:
            return OUTPUTS

        async def predict(self, payload: InferRequest, headers: Any = None, response_headers: Any = None) -> Any:
            x = payload.inputs[0].as_numpy().astype("float64")
            labels = self.model.predict(x).astype("int64")
            proba = self.model.predict_proba(x)
            outputs = [InferOutput("label", list(labels.shape), "INT64"), InferOutput("proba", list(proba.shape), "FP64")]
            binary = bool(payload.use_binary_outputs)  # a property in KServe 0.21
            outputs[0].set_data_from_numpy(labels, binary_data=binary)
            outputs[1].set_data_from_numpy(proba, binary_data=binary)
            return InferResponse(response_id=payload.id, model_name=name, infer_outputs=outputs,
                                 use_binary_outputs=binary)

    model = IrisModel()
    model.load()
    kserve.ModelServer(enable_grpc=False, workers=1).start([model])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(add_help=True)
    parser.add_argument("command", choices=["train", "predict", "serve"])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--name", default="iris")
    parser.add_argument("--input")
    parser.add_argument("--output")
    args, _ = parser.parse_known_args(argv)  # the rest (--http_port ...) is KServe's
    if args.command == "train":
        train(args.model_dir)
    elif args.command == "predict":
        predict(args.model_dir, args.input, args.output)
    else:
        serve(args.model_dir, args.name)


if __name__ == "__main__":
    main(sys.argv[1:])
