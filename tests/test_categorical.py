"""pandas Categorical columns: the served model takes the frame it was trained on."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.types.schema import AnyType, DataType
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

import tracked
from tracked import TrackedPipeline


class Encoded(TrackedPipeline):
    experiment = "categorical"

    def encode(self, frame, train=True, stage="transformer"):
        if train:
            self.encoder = make_column_transformer(
                (OneHotEncoder(handle_unknown="ignore"), ["colour"]), remainder="passthrough"
            ).fit(frame)
        self.operator = self.encoder
        return self.encoder.transform(frame)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression().fit(X, y)
        self.operator = self.model
        return self.model if train else self.model.predict(X)


def test_the_model_predicts_on_the_categorical_training_frame(tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    rng = np.random.default_rng(0)
    colours = rng.choice(["red", "green", "blue"], size=90)
    frame = pd.DataFrame({"colour": pd.Categorical(colours), "size": rng.normal(size=90)})
    y = ((colours == "red") | (frame["size"] > 1)).astype(int)
    pipe = Encoded()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.clf(pipe.encode(frame), y)
    pipe.tracking = False
    expected = pipe.clf(pipe.encode(frame, train=False), train=False)
    model = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline")
    np.testing.assert_array_equal(expected, model.predict(frame))
    # A client sending plain strings (JSON) is served too; other columns keep their types.
    np.testing.assert_array_equal(expected, model.predict(frame.astype({"colour": object})))
    inputs = {spec.name: spec.type for spec in model.metadata.get_input_schema().inputs}
    assert DataType.double == inputs["size"]
    assert isinstance(inputs["colour"], AnyType)
