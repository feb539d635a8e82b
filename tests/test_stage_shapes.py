"""Stage shapes: ``*args`` stages, samplers that return ``(X, y)``, boosting models that stop
early, and the composed model's errors on a frame that lacks columns."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from imblearn.pipeline import Pipeline as ImbPipeline
from imblearn.under_sampling import RandomUnderSampler
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import TrackedPipeline
from tracked.core.report import describe
from tracked.recording.data import summarize


def unbalanced(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, 4)), columns=["a", "b", "c", "d"])
    y = ((X["a"] + 0.3 * rng.normal(size=n)) > 1.0).astype(int).to_numpy()  # ~1 in 6
    return X, y


class Starred(TrackedPipeline):
    """Stages that take ``*args``, as wrappers around an operator's own signature do."""

    experiment = "stage-shapes"

    def scale(self, *args, stage="transformer"):
        self.scaler = StandardScaler()
        self.operator = self.scaler
        return self.scaler.fit_transform(*args)

    def classify(self, *args, stage="estimator"):
        self.model = LogisticRegression()
        self.operator = self.model
        return self.model.fit(*args)


def test_a_star_args_stage_records_its_first_argument_as_data_and_second_as_target(memory):
    X, y = unbalanced()
    pipe = Starred()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.classify(pipe.scale(X, y), y)
    scale, classify = memory.children(pipe.run_id)
    assert summarize(X).digest == scale.tags["tracked.input_digest"]
    assert scale.tags["tracked.output_digest"] == classify.tags["tracked.input_digest"]
    # y reached the estimator stage: it is evaluated on its training data.
    assert 0.0 < classify.metric("training_accuracy") <= 1.0
    assert "pipeline" in memory.get(pipe.run_id).models


class Resampled(TrackedPipeline):
    """A sampler stage between the scaler and the classifier, as imbalanced-learn users write."""

    experiment = "stage-shapes"
    trusted_types = (ImbPipeline, RandomUnderSampler)

    def scale(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler().set_output(transform="pandas").fit(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def balance(self, X, y=None, stage="transformer"):
        self.operator = RandomUnderSampler(random_state=0)
        return self.operator.fit_resample(X, y)

    def classify(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression().fit(X, y)
            self.operator = self.model
            return self.model
        self.operator = self.model
        return self.model.predict(X)

    def train(self, X, y):
        X_res, y_res = self.balance(self.scale(X), y)
        return self.classify(X_res, y_res)

    def predict(self, X, y=None):
        return self.classify(self.scale(X, train=False), y, train=False)


def test_a_sampler_s_result_is_data_and_target_and_composes_into_an_imblearn_pipeline(memory):
    X, y = unbalanced()
    pipe = Resampled()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.train(X, y)
        predicted = pipe.predict(X, y)
    scale, balance, classify = memory.children(pipe.run_id)[:3]
    X_res, _ = RandomUnderSampler(random_state=0).fit_resample(pipe.scaler.transform(X), y)
    assert summarize(X_res).digest == balance.tags["tracked.output_digest"]
    assert balance.tags["tracked.output_digest"] == classify.tags["tracked.input_digest"]
    assert scale.tags["tracked.output_digest"] == balance.tags["tracked.input_digest"]
    assert "output_preview.csv" in balance.artifacts
    parent = memory.get(pipe.run_id)
    model = parent.models["pipeline"]
    assert isinstance(model, ImbPipeline)
    assert ["scale", "balance", "classify"] == [name for name, _ in model.steps]
    np.testing.assert_array_equal(predicted, model.predict(X))
    assert "true" == parent.tags["tracked.pipeline_verified"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_sampler_workflow_s_model_loads_from_mlflow_and_predicts_like_it(tracking_uri):
    X, y = unbalanced()
    pipe = Resampled()
    with pipe:
        pipe.train(X, y)
        predicted = pipe.predict(X, y)
    loaded = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline")
    np.testing.assert_array_equal(predicted, loaded.predict(X))


class Boosted(TrackedPipeline):
    experiment = "stage-shapes"

    def boost(self, X, y=None, X_valid=None, y_valid=None, library="xgboost", stage="estimator"):
        if library == "xgboost":
            import xgboost

            self.operator = xgboost.XGBClassifier(n_estimators=200, early_stopping_rounds=5)
            return self.operator.fit(X, y, eval_set=[(X_valid, y_valid)], verbose=False)
        import lightgbm

        self.operator = lightgbm.LGBMClassifier(n_estimators=200, verbose=-1)
        stop = [lightgbm.early_stopping(5, verbose=False)]
        return self.operator.fit(X, y, eval_X=(X_valid,), eval_y=(y_valid,), callbacks=stop)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_a_boosting_model_that_stopped_early_records_its_best_iteration_and_score(memory, library):
    pytest.importorskip(library)
    X, y = unbalanced(600)
    pipe = Boosted()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.boost(X[:400], y[:400], X[400:], y[400:], library=library)
    (run,) = memory.children(pipe.run_id)
    if library == "xgboost":
        best_iteration, best_score = pipe.operator.best_iteration, pipe.operator.best_score
    else:
        best_iteration = pipe.operator.best_iteration_
        best_score = pipe.operator.best_score_["valid_0"]["binary_logloss"]
        assert best_score == run.metric("best_score.valid_0.binary_logloss")
    assert best_iteration < 199  # it stopped early, so the figure is the model's own
    assert float(best_iteration) == run.metric("best_iteration")
    assert pytest.approx(best_score) == run.metric("best_score")


def test_a_boosting_model_without_early_stopping_records_no_best_iteration(memory):
    xgboost = pytest.importorskip("xgboost")

    class Plain(TrackedPipeline):
        def boost(self, X, y=None, stage="estimator"):
            self.operator = xgboost.XGBClassifier(n_estimators=5)
            return self.operator.fit(X, y)

    X, y = unbalanced()
    pipe = Plain()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.boost(X, y)
    (run,) = memory.children(pipe.run_id)
    assert "best_iteration" not in run.metrics and "best_score" not in run.metrics


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_model_s_missing_column_error_names_the_columns_without_the_frame(tracking_uri):
    X, y = unbalanced()
    pipe = Resampled()
    with pipe:
        pipe.train(X, y)
    loaded = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline")
    with pytest.raises(Exception) as raised:
        loaded.predict(X.drop(columns=["b", "d"]))
    described = describe(raised.value)
    assert "['b', 'd']" in described
    assert str(X.iloc[0, 0])[:6] not in described  # no rendering of the frame
    assert "'c': double" not in described  # nor of the whole schema
