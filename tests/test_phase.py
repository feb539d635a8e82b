"""Phase (fit or inference) for estimators outside scikit-learn's conventions, and for
pipelines that keep their state in ``__slots__``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import TrackedPipeline, TrackingWarning
from tracked.recording.phase import decide_phase, snapshot


class BoosterLike(ClassifierMixin, BaseEstimator):
    """Fitted state as LightGBM keeps it: the only public fitted attribute is
    ``fitted_ = True`` (the same object after every refit); the real state is private."""

    def __init__(self, shrink=1.0):
        self.shrink = shrink

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        self._classes = np.unique(y)
        self._Booster = {"centers": np.stack([X[y == c].mean(axis=0) for c in self._classes])}
        self._n_features = X.shape[1]
        self.fitted_ = True
        return self

    @property
    def classes_(self):
        return self._classes

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        centers = self._Booster["centers"] * self.shrink
        distances = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        return self._classes[distances.argmin(axis=1)]


class Boosted(TrackedPipeline):
    experiment = "phase"

    def __init__(self, shrink=1.0):
        self.shrink = shrink
        self.model = BoosterLike(shrink)

    def clf(self, X, y=None, train=True, stage="estimator"):
        self.operator = self.model
        if train:
            self.model.fit(X, y)
        return self.model.predict(X)


def _data(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    X[y == 1] += 1.5
    return X, y


def _child(client, parent_id):
    exp = client.get_run(parent_id).info.experiment_id
    [run] = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return run


def test_a_refit_that_only_changes_private_state_is_a_fit_in_a_new_session(tracking_uri, client):
    pipe = Boosted()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.clf(*_data(0))
    first = pipe.run_id
    with pipe:  # a new session: the same estimator object, refitted
        pipe.clf(*_data(1))
    second = pipe.run_id
    assert first != second

    child = _child(client, second)
    assert "clf:fit" == child.info.run_name
    assert "fit" == child.data.tags["tracked.phase"]
    assert "state_changed" == child.data.tags["tracked.phase_basis"]
    assert "1.0" == child.data.params["shrink"]
    assert child.outputs.model_outputs  # the refitted model is logged
    parent = client.get_run(second)
    assert "training_accuracy" in parent.data.metrics
    assert "accuracy" not in parent.data.metrics  # training data is never an evaluation
    assert "accuracy" not in child.data.metrics


def test_a_prediction_leaves_the_private_state_alone_and_is_inference():
    from tracked.testing import MemoryBackend

    backend = MemoryBackend()
    pipe = Boosted()
    tracked.configure(pipe, backend=backend)
    X, y = _data(0)
    with pipe:
        pipe.clf(X, y)
        pipe.clf(X, y, train=False)
    fit, inference = backend.children(pipe.run_id)
    assert ("clf:fit", "clf:inference") == (fit.name, inference.name)
    assert "state_unchanged" == inference.tags["tracked.phase_basis"]
    assert "accuracy" in backend.get(pipe.run_id).metrics


def test_a_refit_in_place_of_a_private_array_is_a_fit():
    class InPlace:
        def __init__(self):
            self._weights = np.zeros(5)

        def fit(self, X, y):
            self._weights[:] = np.arange(5.0)  # same array object, new values
            return self

    class Holder:
        pass

    holder = Holder()
    holder.op = InPlace()
    before = snapshot(holder)
    holder.op.fit(None, None)
    assert ("fit", "state_changed") == decide_phase(before, holder.op)


def test_an_operator_whose_state_cannot_be_read_is_not_silently_inference():
    from tracked.testing import MemoryBackend

    class Opaque:
        __slots__ = ()

        def predict(self, X):
            return np.zeros(len(X))

    class P(TrackedPipeline):
        backend = MemoryBackend()

        def __init__(self):
            self.op = Opaque()

        def clf(self, X, y=None, stage="estimator"):
            self.operator = self.op
            return self.op.predict(X)

    pipe = P()
    with pipe, pytest.warns(TrackingWarning, match="cannot be told"):
        pipe.clf(np.zeros((3, 1)))
    [run] = P.backend.children(pipe.run_id)
    assert "state_unreadable" == run.tags["tracked.phase_basis"]


class Slotted(TrackedPipeline):
    __slots__ = ("m", "sc")

    def scale(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.sc = StandardScaler().fit(X)
        self.operator = self.sc
        return self.sc.transform(X)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.m = LogisticRegression().fit(X, y)
        self.operator = self.m
        return self.m.predict(X)


def test_a_pipeline_keeping_its_operators_in_slots_records_predictions_as_inference(
    tracking_uri, client
):
    X, y = _data(0)
    pipe = Slotted()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.clf(pipe.scale(X, y), y)
        pipe.clf(pipe.scale(X, train=False), y, train=False)
    exp = client.get_run(pipe.run_id).info.experiment_id
    runs = client.search_runs(
        [exp],
        filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    assert {"scale:fit", "clf:fit", "scale:inference", "clf:inference"} == {
        run.info.run_name for run in runs
    }
    assert 1 == sum(bool(run.outputs.model_outputs) for run in runs)
    parent = client.get_run(pipe.run_id)
    assert "accuracy" in parent.data.metrics


# Every scikit-learn estimator: an inference call is inference, whatever caches it rebinds.
# A survey of scikit-learn 1.9 found these rebinding or adding private attributes on
# transform/predict (equal values each time): ColumnTransformer with pandas output
# (`_transformers_feature_names_out` rebound), FeatureUnion with pandas output (the same, added
# on the first transform), StackingClassifier/StackingRegressor (`_n_feature_outs`, every call).
INFERENCE_METHODS = ("transform", "predict", "predict_proba", "decision_function")


class Serving(TrackedPipeline):
    """A fitted operator served through a transformer stage and an estimator stage."""

    experiment = "phase"
    fold_after = None  # every call a run of its own, each with its phase basis

    def __init__(self, model):
        self.model = model

    def transform(self, X, stage="transformer"):
        self.operator = self.model
        return self.model.transform(X)

    def predict(self, X, y=None, method="predict", stage="estimator"):
        self.operator = self.model
        return getattr(self.model, method)(X)


def _all_estimators():
    from sklearn.utils import all_estimators

    return [pytest.param(cls, id=name) for name, cls in all_estimators()]


def _fitted_for_inference(cls, pandas):
    """The first of scikit-learn's own test instances of ``cls``, fitted on small data of
    the kind its tags ask for; skips what this survey cannot feed."""
    import warnings

    import pandas as pd
    from sklearn.base import clone, is_regressor
    from sklearn.utils import get_tags
    from sklearn.utils._test_common.instance_generator import _construct_instances

    try:
        estimator = next(iter(_construct_instances(cls)))
    except Exception as exc:  # FrozenEstimator: made only around a fitted estimator
        pytest.skip(f"scikit-learn makes no test instance of it: {exc}")
    if not any(hasattr(estimator, method) for method in INFERENCE_METHODS):
        # LocalOutlierFactor predicts only with novelty=True
        pytest.skip("it has no transform/predict/predict_proba/decision_function")
    tags = get_tags(estimator)
    if not tags.input_tags.two_d_array or tags.input_tags.string or tags.input_tags.dict:
        pytest.skip("it does not take a 2-D numeric array")
    if pandas:
        if not hasattr(estimator, "set_output"):
            pytest.skip("it has no set_output")
        estimator.set_output(transform="pandas")
    rng = np.random.default_rng(0)
    dictionary = getattr(estimator, "dictionary", None)  # SparseCoder: its atoms' width
    features = dictionary.shape[1] if dictionary is not None else 4
    X = np.abs(rng.normal(size=(40, features))) + 0.1
    if tags.input_tags.pairwise:
        X = X @ X.T  # a kernel or distance matrix
    y = X[:, 0] + 0.1 * rng.normal(size=40) if is_regressor(estimator) else np.arange(40) % 2
    if not tags.target_tags.single_output:
        y = np.c_[y, y[::-1]]
    if pandas:
        X = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and the like, on 40 rows
        try:  # on a copy: the estimator's own first transform is the subject
            if pandas and hasattr(estimator, "transform"):
                clone(estimator).fit_transform(X, y)
            estimator.fit(X, y)
        except ValueError as exc:
            if not pandas or "sparse" not in str(exc):
                raise
            pytest.skip(f"its output is sparse, which pandas output refuses: {exc}")
    return estimator, X


@pytest.mark.parametrize("pandas", [False, True], ids=["default_output", "pandas_output"])
@pytest.mark.parametrize("cls", _all_estimators())
def test_an_inference_call_of_any_scikit_learn_estimator_is_inference(cls, pandas, memory):
    import warnings

    estimator, X = _fitted_for_inference(cls, pandas)
    pipe = Serving(estimator)
    tracked.configure(pipe, backend=memory)
    called = []
    with pipe, warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        for method in INFERENCE_METHODS:
            if not hasattr(estimator, method):  # available_if: a method its params switch off
                continue
            for _ in range(2):  # the first call may build a cache, the second rebinds it
                if method == "transform":
                    pipe.transform(X)
                else:
                    pipe.predict(X, method=method)
            called.append(method)
    assert called
    runs = memory.children(pipe.run_id)
    assert [(run.name.split(":")[1], run.tags["tracked.phase_basis"]) for run in runs] == [
        ("inference", "state_unchanged")
    ] * len(runs)


class Prepared(TrackedPipeline):
    """A pandas-output ColumnTransformer before a classifier, as in the issue."""

    experiment = "phase"

    def prep(self, X, train=True, stage="transformer"):
        from sklearn.compose import ColumnTransformer
        from sklearn.preprocessing import OneHotEncoder

        if train:
            encoder = OneHotEncoder(sparse_output=False)
            self.columns = ColumnTransformer(
                [("num", StandardScaler(), ["a"]), ("cat", encoder, ["b"])]
            ).set_output(transform="pandas")
            self.columns.fit(X)
        self.operator = self.columns
        return self.columns.transform(X)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression().fit(X, y)
        self.operator = self.model
        return self.model.predict(X)


def test_a_pandas_output_column_transformer_serving_is_inference_and_verified(memory):
    import pandas as pd

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.choice(["x", "y", "z"], 60)})
    y = (X["a"] > 0).astype(int)
    pipe = Prepared()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.clf(pipe.prep(X), y)
        pipe.clf(pipe.prep(X, train=False), y, train=False)
    names = [run.name for run in memory.children(pipe.run_id)]
    assert ["prep:fit", "clf:fit", "prep:inference", "clf:inference"] == names
    assert "true" == memory.get(pipe.run_id).tags["tracked.pipeline_verified"]


class Cached:
    """A hand-made operator: learned state in a private array, a cache rebuilt per call."""

    def fit(self, X):
        self._centre = np.asarray(X, dtype=float).mean(axis=0)
        return self

    def transform(self, X):
        self._names = [f"x{i}" for i in range(len(self._centre))]  # rebound, equal
        return np.asarray(X, dtype=float) - self._centre


def test_a_rebound_cache_is_inference_and_a_rebound_learned_value_is_a_fit():
    class Holder:
        pass

    X = np.arange(12.0).reshape(6, 2)
    holder = Holder()
    holder.op = Cached()
    before = snapshot(holder)
    holder.op.fit(X)  # first fit of an operator held before: private state added
    assert ("fit", "state_changed") == decide_phase(before, holder.op)
    holder.op.transform(X)
    before = snapshot(holder)
    holder.op.transform(X)
    assert ("inference", "state_unchanged") == decide_phase(before, holder.op)
    holder.op.fit(X + 1.0)  # other data: the private array rebound to other values
    assert ("fit", "state_changed") == decide_phase(before, holder.op)


def test_a_public_fitted_attribute_rebound_to_equal_values_is_still_a_fit():
    class Holder:
        pass

    X = np.arange(12.0).reshape(6, 2)
    holder = Holder()
    holder.scaler = StandardScaler().fit(X)
    before = snapshot(holder)
    holder.scaler.fit(X)  # identical data: equal values, new objects
    assert ("fit", "fitted_attributes") == decide_phase(before, holder.scaler)
