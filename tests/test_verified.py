"""``tracked.pipeline_verified`` speaks of the model that was logged, not of live objects."""

from __future__ import annotations

import json
import os

import mlflow
import numpy as np
import pandas as pd
import pytest
import stores
from processes import run_python
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import tracked
from tracked import TrackedPipeline, TrackingWarning


class Refittable(TrackedPipeline):
    """The scaler is refitted in place (the same object) when ``train`` is set."""

    experiment = "verified"

    def __init__(self):
        self.scaler = StandardScaler()

    def scale(self, X, train=True, stage="transformer"):
        if train:
            self.scaler.fit(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression().fit(X, y)
        self.operator = self.model
        return self.model if train else self.model.predict(X)


def data(seed, shift=0.0, n=200):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) + shift
    y = (X[:, 0] - shift + 0.5 * X[:, 1] > 0).astype(int)
    return X, y


def test_a_transformer_refitted_after_the_model_was_logged_is_not_verified_with_the_reason(
    tracking_uri, client, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    A, y = data(0)
    B, _ = data(1, shift=3.0)
    pipe = Refittable()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.clf(pipe.scale(A), y)
        pipe.scale(B)  # refitted in place, after the composed model was logged
        with pytest.warns(TrackingWarning, match="refitted after the model was logged"):
            predicted = pipe.clf(pipe.scale(A, train=False), train=False)
    logged = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline").predict(A)
    assert not np.array_equal(predicted, logged)  # the workflow has moved on
    tags = client.get_run(pipe.run_id).data.tags
    assert "false" == tags["tracked.pipeline_verified"]
    assert (
        "'scale' was refitted after the model was logged"
        in tags["tracked.pipeline_verified_reason"]
    )


def test_a_pass_that_agrees_with_the_logged_model_is_verified(tracking_uri, client, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    A, y = data(0)
    B, _ = data(1, shift=3.0)
    pipe = Refittable()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.clf(pipe.scale(A), y)
        pipe.scale(B)
        pipe.clf(pipe.scale(A), y)  # the estimator fitted again: a new composed model
        predicted = pipe.clf(pipe.scale(B, train=False), train=False)
    logged = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline").predict(B)
    np.testing.assert_array_equal(predicted, logged)
    tags = client.get_run(pipe.run_id).data.tags
    assert "true" == tags["tracked.pipeline_verified"]
    assert "" == tags["tracked.pipeline_verified_reason"]


def test_the_composed_model_is_a_snapshot_of_the_operators(memory):
    A, y = data(0)
    pipe = Refittable()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.clf(pipe.scale(A), y)
        composed = pipe._last_session().composer.latest
        pipe.scale(A * 10)
    assert composed.model.steps[0][1] is not pipe.scaler
    np.testing.assert_allclose(A.mean(axis=0), composed.model.steps[0][1].mean_)


def test_a_pass_agreeing_with_a_composed_model_that_was_never_logged_is_not_verified(
    memory, monkeypatch
):
    monkeypatch.setenv("TRACKED_STRICT", "0")
    original = memory.log_model

    def refuse_the_composed_model(run_id, name, model, **kwargs):
        if name == "pipeline":
            raise ValueError("the model store refuses it")
        return original(run_id, name, model, **kwargs)

    monkeypatch.setattr(memory, "log_model", refuse_the_composed_model)
    A, y = data(0)
    pipe = Refittable()
    tracked.configure(pipe, backend=memory)
    tracked.configure(pipe, synchronous=True)
    with pytest.warns(TrackingWarning, match="the model store refuses it"), pipe:
        pipe.clf(pipe.scale(A), y)
        pipe.clf(pipe.scale(A, train=False), train=False)
    tags = memory.get(pipe.run_id).tags
    assert "false" == tags["tracked.pipeline_verified"]
    assert "could not be logged" in tags["tracked.pipeline_verified_reason"]


# One workflow per dtype family, on a real store; the model is then loaded with
# mlflow.pyfunc in a fresh process and predicts on the frames it was fitted and evaluated on.
def _with_missing(values, dtype):
    array = pd.array(values, dtype=dtype)
    array[::7] = pd.NA
    return array


def _onehot():
    return OneHotEncoder(handle_unknown="ignore", sparse_output=False)


ROWS = 80
_rng = np.random.default_rng(0)
_ints, _flags = _rng.integers(0, 5, ROWS), _rng.integers(0, 2, ROWS).astype(bool)
_words = _rng.choice(["a", "b", "c"], ROWS)
_days = pd.Series(pd.date_range("2024-01-01", periods=ROWS, freq="D"))

#: family -> (the column, its encoder, the verdict expected, what the reason says if false)
FAMILIES = {
    # Typed double (as MLflow advises for integers that may be missing): pyfunc converts it.
    "nullable_int32": (
        lambda: _with_missing(_ints, "Int32"),
        lambda: SimpleImputer(strategy="median"),
        "true",
        None,
    ),
    # Typed double too, but pyfunc converts no 64-bit integer to double ("Can not safely
    # convert Int64 to float64"): the model cannot take its own frames, and says so.
    "nullable_int64": (
        lambda: _with_missing(_ints, "Int64"),
        lambda: SimpleImputer(strategy="median"),
        "false",
        "Can not safely convert Int64 to float64",
    ),
    "nullable_boolean": (lambda: _with_missing(_flags, "boolean"), _onehot, "true", None),
    # pyfunc hands a boolean column typed `any` on as objects: an imputer for numbers then
    # fails on pd.NA, where the model itself (given the boolean frame) did not.
    "nullable_boolean_imputed": (
        lambda: _with_missing(_flags, "boolean"),
        lambda: make_pipeline(SimpleImputer(strategy="most_frequent"), _onehot()),
        "false",
        "'c' (boolean)",
    ),
    "nullable_string": (
        lambda: _with_missing(_words, "string"),
        lambda: make_pipeline(
            SimpleImputer(missing_values=pd.NA, strategy="most_frequent"), _onehot()
        ),
        "true",
        None,
    ),
    "categorical": (
        lambda: pd.Categorical(_rng.choice(["a", "b", None], ROWS)),
        _onehot,
        "true",
        None,
    ),
    "datetime": (lambda: _days.where(np.arange(ROWS) % 9 != 0).array, lambda: "drop", "true", None),
    "object": (
        lambda: np.array([["a", "b", None][i % 3] for i in range(ROWS)], dtype=object),
        _onehot,
        "true",
        None,
    ),
}


class Typed(TrackedPipeline):
    """A column of one dtype family beside a numeric one, then a classifier."""

    experiment = "verified-dtypes"

    def __init__(self, encoder):
        self.encoder = encoder

    def prep(self, X, train=True, stage="transformer"):
        if train:
            self.columns = ColumnTransformer(
                [("c", self.encoder, ["c"]), ("x", "passthrough", ["x"])]
            )
            self.columns.fit(X)
        self.operator = self.columns
        return self.columns.transform(X)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression().fit(X, y)
        self.operator = self.model
        return self.model.predict(X)


class TypedPickled(Typed):
    """An imputer of ``pd.NA`` holds it, which skops cannot store: cloudpickle, knowingly."""

    serialization_format = "cloudpickle"


LOAD_AND_PREDICT = """
import json, sys
import mlflow, numpy as np, pandas as pd
found = {}
for family, run_id in json.loads(sys.argv[1]).items():
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/pipeline")
    found[family] = {}
    for name in ("fitted", "evaluated"):
        frame = pd.read_pickle(f"{family}-{name}.pkl")
        expected = np.load(f"{family}-{name}.npy")
        try:
            same = np.array_equal(np.asarray(model.predict(frame)), expected)
            found[family][name] = "same" if same else "different"
        except Exception as exc:
            found[family][name] = f"refused: {exc}"
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def families_served(tmp_path_factory, store_template):
    """Every dtype family's workflow on one store, then one fresh process that loads each
    composed model with ``mlflow.pyfunc`` and predicts on the frames it was fitted and
    evaluated on: ``{family: (parent tags, warnings, what the fresh process found)}``."""
    import warnings

    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("families")
    uri = stores.fresh_store(store_template, folder / "mlflow.db", folder)
    runs, said = {}, {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for family, (column, encoder, _, _) in FAMILIES.items():
            cls = TypedPickled if family == "nullable_string" else Typed
            x = np.random.default_rng(1).normal(size=ROWS)
            X, y = pd.DataFrame({"c": column(), "x": x}), (x > 0).astype(int)
            fitted, evaluated = X[:60], X[60:]
            pipe = tracked.configure(cls(encoder()), tracking_uri=uri)
            with warnings.catch_warnings(record=True) as caught, pipe:
                warnings.simplefilter("always", TrackingWarning)
                on_fitted = pipe.clf(pipe.prep(fitted), y[:60])
                on_evaluated = pipe.clf(pipe.prep(evaluated, train=False), y[60:], train=False)
            said[family] = [str(w.message) for w in caught if w.category is TrackingWarning]
            runs[family] = pipe.run_id
            for name, frame, predicted in (
                ("fitted", fitted, on_fitted),
                ("evaluated", evaluated, on_evaluated),
            ):
                frame.to_pickle(folder / f"{family}-{name}.pkl")
                np.save(folder / f"{family}-{name}.npy", predicted)
    done = run_python(
        "-c",
        LOAD_AND_PREDICT,
        json.dumps(runs),
        cwd=folder,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri},
        timeout=240,
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    client = MlflowClient(uri)
    return {
        family: (client.get_run(run_id).data.tags, said[family], found[family])
        for family, run_id in runs.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_verified_true_means_pyfunc_predicts_the_same_on_the_fitted_and_evaluated_frames(
    family, families_served
):
    _, _, expected, reason = FAMILIES[family]
    tags, said, found = families_served[family]
    assert expected == tags["tracked.pipeline_verified"], tags.get(
        "tracked.pipeline_verified_reason"
    )
    if reason is not None:
        assert reason in tags["tracked.pipeline_verified_reason"]
    if expected == "true":
        assert [] == said
        assert {"fitted": "same", "evaluated": "same"} == found
    else:  # said to the user, and what the tag says, a fresh process finds
        assert any("predicts differently" in message for message in said), said
        assert "same" != found["fitted"]


class ScaleThenClassify(TrackedPipeline):
    """scale -> classify; at inference the estimator stage may be called on its own."""

    experiment = "verified"
    fold_after = None  # every call verified on its own, none folded into a series

    def scale(self, X, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler().fit(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression().fit(X, y)
        self.operator = self.model
        return self.model.predict(X)


def test_the_estimator_stage_on_one_already_scaled_row_leaves_a_correct_model_verified(memory):
    """The issue's case: a verdict on another pass's input compared unlike things."""
    A, y = data(0)
    pipe = ScaleThenClassify()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.clf(pipe.scale(A), y)
        scaled = pipe.scale(A[:50], train=False)
        pipe.clf(scaled, train=False)
        assert "true" == memory.get(pipe.run_id).tags["tracked.pipeline_verified"]
        one = pipe.clf(scaled[7:8], train=False)  # one row, scaled earlier: no warning
        for row in pipe.scaler.transform(A[100:103]):  # scaled outside any stage
            pipe.clf(row[None, :], train=False)
    np.testing.assert_array_equal(pipe._last_session().composer.latest.model.predict(A[57:58]), one)
    assert "true" == memory.get(pipe.run_id).tags["tracked.pipeline_verified"]


def test_single_rows_through_every_stage_are_verified_row_for_row(memory):
    A, y = data(0)
    pipe = ScaleThenClassify()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.clf(pipe.scale(A), y)
        pipe.scale(A[:50], train=False)  # an earlier, bigger pass: not what the rows came from
        for index in (3, 4):
            pipe.clf(pipe.scale(A[index : index + 1], train=False), train=False)
    assert "true" == memory.get(pipe.run_id).tags["tracked.pipeline_verified"]


class Tripled(ScaleThenClassify):
    """The estimator stage predicts on more than its operator sees: a model to distrust."""

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression().fit(X, y)
        self.operator = self.model
        return self.model.predict(X if train else X * -1.0)


def test_a_single_row_pass_through_every_stage_still_catches_an_unfaithful_model(memory):
    A, y = data(0)
    pipe = Tripled()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.clf(pipe.scale(A), y)
        with pytest.warns(TrackingWarning, match="do more than their operators"):
            for index in range(3):  # rows whose class flips with their sign
                pipe.clf(pipe.scale(A[index : index + 1], train=False), train=False)
    assert "false" == memory.get(pipe.run_id).tags["tracked.pipeline_verified"]


def test_a_pass_on_what_the_fit_pass_transformed_is_checked_against_the_fit_input(memory):
    A, y = data(0)
    pipe = ScaleThenClassify()
    tracked.configure(pipe, backend=memory)
    with pipe:
        scaled = pipe.scale(A)
        pipe.clf(scaled, y)
        pipe.scale(A[:50], train=False)  # a later, other pass of the transformer
        pipe.clf(scaled, train=False)  # the training rows, scaled by the fit pass
    assert "true" == memory.get(pipe.run_id).tags["tracked.pipeline_verified"]
