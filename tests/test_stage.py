"""What one stage call records, against the in-memory backend."""

from __future__ import annotations

import threading
import traceback

import numpy as np
import pipelines
import pytest
from pipelines import CHILD_NAMES, Iris, Regression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, r2_score
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import TrackedPipeline, TrackingWarning
from tracked.testing import MemoryBackend


def tracked_with(pipe, backend):
    tracked.configure(pipe, backend=backend)
    return pipe


def run_iris(backend, iris, **params):
    return pipelines.run_iris(iris, params, backend=backend)


def test_a_training_and_a_prediction_pass_give_one_parent_and_six_children(memory, iris):
    pipe, _ = run_iris(memory, iris)

    [parent] = memory.parents()
    assert pipe.run_id == parent.run_id
    assert "FINISHED" == parent.status
    assert {"n_components": "2", "C": "1.0"} == parent.params
    children = memory.children(parent.run_id)
    assert CHILD_NAMES == [child.name for child in children]
    assert all(child.status == "FINISHED" for child in children)
    assert all(child.experiment == "tests" for child in [parent, *children])


def test_child_runs_carry_stage_kind_phase_and_operator_tags(memory, iris):
    pipe, _ = run_iris(memory, iris)
    scale_fit, _, classify_fit, *_, classify_predict = memory.children(pipe.run_id)

    assert {
        k: v for k, v in scale_fit.tags.items() if k.split("_")[-1] not in ("digest", "id")
    } == {
        "tracked.stage": "preprocessing",
        "tracked.kind": "transformer",
        "tracked.phase": "fit",
        "tracked.phase_basis": "new_operator",
        "tracked.operator": "sklearn.preprocessing._data.StandardScaler",
    }
    assert "estimator" == classify_fit.tags["tracked.kind"]
    assert "inference" == classify_predict.tags["tracked.phase"]
    assert (
        classify_predict.tags["tracked.operator"]
        == "sklearn.linear_model._logistic.LogisticRegression"
    )


def test_fit_phase_logs_the_operator_params_flattened_as_text(memory, iris):
    pipe, _ = run_iris(memory, iris, C=0.5)
    children = memory.children(pipe.run_id)
    classify_fit = children[2]

    expected = {k: str(v) for k, v in LogisticRegression(C=0.5, max_iter=1000).get_params().items()}
    assert expected == classify_fit.params
    assert {} == children[5].params  # inference logs no params


def test_estimator_fit_logs_the_fitted_model(memory, iris):
    _, X_test, _, _ = iris
    pipe, _ = run_iris(memory, iris)
    classify_fit = memory.children(pipe.run_id)[2]

    model = classify_fit.models["model"]
    assert model is not pipe.classifier  # a copy, as a store would hold
    np.testing.assert_array_equal(
        pipe.classifier.predict(pipe.pca.transform(pipe.scaler.transform(X_test))),
        model.predict(pipe.pca.transform(pipe.scaler.transform(X_test))),
    )
    assert all("model" not in child.models for child in memory.children(pipe.run_id)[:2])


def test_inference_with_ground_truth_logs_metrics_on_child_and_parent(memory, iris):
    _, _, _, y_test = iris
    pipe, predictions = run_iris(memory, iris)
    parent = memory.get(pipe.run_id)
    classify_predict = memory.children(pipe.run_id)[5]

    expected = {
        "accuracy": accuracy_score(y_test, predictions),
        "f1_macro": f1_score(y_test, predictions, average="macro"),
    }
    for key, value in expected.items():
        assert value == pytest.approx(classify_predict.metric(key))
        assert value == pytest.approx(parent.metric(key))
    assert {"precision_macro", "recall_macro"} <= set(classify_predict.metrics)


def test_estimator_fit_logs_training_metrics(memory, iris):
    X_train, _, y_train, _ = iris
    pipe, _ = run_iris(memory, iris)
    classify_fit = memory.children(pipe.run_id)[2]

    train_predictions = pipe.classifier.predict(pipe.pca.transform(pipe.scaler.transform(X_train)))
    assert accuracy_score(y_train, train_predictions) == pytest.approx(
        classify_fit.metric("training_accuracy")
    )
    assert "training_accuracy" in memory.get(pipe.run_id).metrics


def test_inference_without_ground_truth_logs_no_evaluation(memory, iris):
    X_train, X_test, y_train, _ = iris
    pipe = tracked_with(Iris(), memory)
    with pipe:
        pipe.train(X_train, y_train)
        pipe.predict(X_test)
    classify_predict = memory.children(pipe.run_id)[5]
    assert ["duration_s"] == list(classify_predict.metrics)


def test_regressors_get_r2_rmse_and_mae(memory):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = X @ [1.0, 2.0, -1.0] + rng.normal(scale=0.1, size=80)
    pipe = tracked_with(Regression(), memory)
    with pipe:
        pipe.regress(pipe.scale(X), y)
        predictions = pipe.regress(pipe.scale(X, train=False), y, train=False)
    run = memory.children(pipe.run_id)[-1]

    assert r2_score(y, predictions) == pytest.approx(run.metric("r2"))
    assert mean_absolute_error(y, predictions) == pytest.approx(run.metric("mae"))
    assert float(np.sqrt(np.mean((y - predictions) ** 2))) == pytest.approx(run.metric("rmse"))


@pytest.mark.parametrize(
    ("scoring", "names"),
    [
        ("accuracy", {"accuracy"}),
        (["balanced_accuracy", "f1_weighted"], {"balanced_accuracy", "f1_weighted"}),
        ({"acc": "accuracy", "always_one": lambda est, X, y: 1.0}, {"acc", "always_one"}),
    ],
)
def test_scoring_replaces_the_default_metrics(memory, iris, scoring, names):
    class Scored(Iris):
        pass

    Scored.scoring = scoring
    X_train, X_test, y_train, y_test = iris
    pipe = tracked_with(Scored(), memory)
    with pipe:
        pipe.train(X_train, y_train)
        pipe.predict(X_test, y_test)
    run = memory.children(pipe.run_id)[5]
    assert names | {"duration_s"} == set(run.metrics)


def test_repeated_evaluations_form_a_history_on_the_parent(memory, iris):
    X_train, X_test, y_train, y_test = iris
    pipe = tracked_with(Iris(), memory)
    with pipe:
        pipe.train(X_train, y_train)
        pipe.predict(X_test, y_test)
        pipe.predict(X_train, y_train)
    history = memory.get(pipe.run_id).metrics["accuracy"]
    assert [m.step for m in history] == [0, 1]


def test_refitting_the_same_operator_on_the_same_data_is_a_fit(memory):
    class Refit(TrackedPipeline):
        def __init__(self):
            self.scaler = StandardScaler()

        def scale(self, X, stage="transformer"):
            self.operator = self.scaler
            return self.scaler.fit_transform(X)

        def apply(self, X, stage="transformer"):
            self.operator = self.scaler
            return self.scaler.transform(X)

    X = np.arange(12.0).reshape(6, 2)
    pipe = tracked_with(Refit(), memory)
    with pipe:
        pipe.scale(X)
        pipe.scale(X)
        pipe.apply(X)
    assert [c.name for c in memory.children(pipe.run_id)] == [
        "scale:fit",
        "scale:fit",
        "apply:inference",
    ]


def test_stage_results_are_returned_unchanged(memory, iris):
    X_train, _, y_train, _ = iris
    pipe = tracked_with(Iris(), memory)
    with pipe:
        returned = pipe.classification(
            pipe.reduction(pipe.preprocessing(X_train, y_train)), y_train
        )
    assert returned is pipe.classifier


class Boom(Exception):
    pass


class Failing(TrackedPipeline):
    experiment = "tests"

    def explode(self, X, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        raise Boom("the user's own failure")

    def interrupt(self, X, stage="transformer"):
        raise KeyboardInterrupt


def test_a_stage_exception_propagates_unchanged_and_fails_the_child(memory):
    pipe = tracked_with(Failing(), memory)
    error = None
    with pytest.raises(Boom) as info, pipe:
        try:
            pipe.explode(np.ones((3, 2)))
        except Boom as exc:
            error = exc
            raise
    assert info.value is error
    frames = [frame.name for frame in traceback.extract_tb(error.__traceback__)]
    assert "explode" == frames[-1]  # the user's frame is where it was raised

    [parent] = memory.parents()
    [child] = memory.children(parent.run_id)
    assert "FAILED" == child.status
    assert "Boom: the user's own failure" == child.tags["tracked.error"]
    assert "FAILED" == parent.status  # the with block raised


def test_keyboard_interrupt_kills_the_child_and_the_parent(memory):
    pipe = tracked_with(Failing(), memory)
    with pytest.raises(KeyboardInterrupt), pipe:
        pipe.interrupt(1)
    [parent] = memory.parents()
    [child] = memory.children(parent.run_id)
    assert ("KILLED", "KILLED") == (child.status, parent.status)


def test_a_stage_that_sets_no_operator_still_gets_a_child_run_and_a_warning(memory):
    class NoOperator(TrackedPipeline):
        def double(self, X, stage="transformer"):
            return X * 2

    pipe = tracked_with(NoOperator(), memory)
    with pytest.warns(TrackingWarning, match=r"NoOperator.double assigned no `self.operator`"):
        assert 6 == pipe.double(3)
    pipe.close()
    [child] = memory.children(pipe.run_id)
    assert ["duration_s"] == list(child.metrics)
    assert "tracked.operator" not in child.tags
    assert "FINISHED" == child.status


def test_an_estimator_that_is_not_scikit_learn_logs_no_model_and_says_so(memory):
    class Mean:
        def fit(self, X, y):
            self.mean_ = float(np.mean(y))
            self.scale = 1
            return self

        def predict(self, X):
            return np.full(len(X), self.mean_)

    class Custom(TrackedPipeline):
        def model(self, X, y=None, stage="estimator"):
            self.operator = Mean().fit(X, y)
            return self.operator

    pipe = tracked_with(Custom(), memory)
    y = np.arange(4.0)
    with pytest.warns(TrackingWarning) as caught:
        pipe.model(np.ones((4, 1)), y)
    pipe.close()
    messages = [str(w.message) for w in caught]
    assert any("(no get_params): its model is not logged" in m for m in messages)
    assert any("no composed `pipeline` model" in m for m in messages)
    [child] = memory.children(pipe.run_id)
    assert {} == child.models
    assert {"scale": "1"} == child.params  # public, non-fitted attributes
    expected_mae = mean_absolute_error(y, np.full(len(y), y.mean()))
    assert expected_mae == pytest.approx(child.metric("training_mae"))


def test_super_calls_in_an_override_give_one_child_run(memory):
    class Base(TrackedPipeline):
        def scale(self, X, stage="transformer"):
            self.operator = StandardScaler().fit(X)
            return self.operator.transform(X)

    class Child(Base):
        def scale(self, X, stage="transformer"):
            return super().scale(X) * 2

    class GrandChild(Child):
        def scale(self, X, stage="transformer"):
            return super().scale(X) + 1

    pipe = tracked_with(GrandChild(), memory)
    X = np.arange(6.0).reshape(3, 2)
    with pipe:
        result = pipe.scale(X)
    np.testing.assert_allclose(StandardScaler().fit_transform(X) * 2 + 1, result)
    assert [c.name for c in memory.children(pipe.run_id)] == ["scale:fit"]


def test_two_instances_tracked_at_once_keep_their_runs_apart(memory, iris):
    X_train, _, y_train, _ = iris
    first = tracked_with(Iris(n_components=2), memory)
    second = tracked_with(Iris(n_components=3), memory)
    with first, second:
        first.preprocessing(X_train, y_train)
        second.preprocessing(X_train, y_train)
        second.reduction(second.scaler.transform(X_train), y_train)
        first.reduction(first.scaler.transform(X_train), y_train)
    assert first.run_id != second.run_id
    for pipe in (first, second):
        reduce_fit = memory.children(pipe.run_id)[1]
        assert str(pipe.n_components) == reduce_fit.params["n_components"]


def test_instances_in_threads_write_only_to_their_own_runs(iris):
    backend = MemoryBackend()
    X_train, X_test, y_train, y_test = iris
    pipes = [tracked_with(Iris(n_components=1 + i % 4), backend) for i in range(8)]

    def work(pipe):
        with pipe:
            pipe.train(X_train, y_train)
            pipe.predict(X_test, y_test)

    threads = [threading.Thread(target=work, args=(pipe,)) for pipe in pipes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert 8 == len(backend.parents())
    for pipe in pipes:
        children = backend.children(pipe.run_id)
        assert 6 == len(children)
        assert str(pipe.n_components) == children[1].params["n_components"]


def test_without_with_the_parent_opens_lazily_and_ends_at_close(memory, iris):
    X_train, _, y_train, _ = iris
    pipe = tracked_with(Iris(), memory)
    assert pipe.run_id is None
    pipe.preprocessing(X_train, y_train)
    run_id = pipe.run_id
    assert "RUNNING" == memory.get(run_id).status
    pipe.close()
    assert "FINISHED" == memory.get(run_id).status
    pipe.preprocessing(X_train, y_train)  # a new session after close
    assert pipe.run_id != run_id
    pipe.close()
    assert 2 == len(memory.parents())


def test_run_names_show_the_hyperparameters_that_differ(memory, iris):
    run_iris(memory, iris)
    run_iris(memory, iris, n_components=3, C=0.5)
    assert [run.name for run in memory.parents()] == ["Iris", "Iris(n_components=3, C=0.5)"]


def test_an_operator_left_by_an_earlier_stage_is_not_this_stage_s(memory):
    class Leftover(TrackedPipeline):
        def scale(self, X, stage="transformer"):
            self.operator = StandardScaler().fit(X)
            return self.operator.transform(X)

        def clip(self, X, stage="transformer"):
            return np.clip(X, -1, 1)

    pipe = tracked_with(Leftover(), memory)
    with pytest.warns(TrackingWarning, match=r"Leftover.clip assigned no `self.operator`"):
        pipe.clip(pipe.scale(np.arange(6.0).reshape(3, 2)))
    pipe.close()
    clip = memory.children(pipe.run_id)[1]
    assert "tracked.operator" not in clip.tags


def test_one_instance_in_two_threads_records_each_stage_s_own_operator(memory):
    from sklearn.preprocessing import MinMaxScaler

    started, proceed = threading.Event(), threading.Event()

    class Shared(TrackedPipeline):
        def slow(self, X, stage="transformer"):
            self.operator = StandardScaler().fit(X)
            started.set()
            proceed.wait(timeout=10)
            return X

        def fast(self, X, stage="transformer"):
            self.operator = MinMaxScaler().fit(X)
            return X

    pipe = tracked_with(Shared(), memory)
    X = np.arange(6.0).reshape(3, 2)
    with pipe:
        thread = threading.Thread(target=pipe.slow, args=(X,))
        thread.start()
        started.wait(timeout=10)
        pipe.fast(X)  # assigns another operator while `slow` is still running
        proceed.set()
        thread.join(timeout=10)
    operators = {
        c.tags["tracked.stage"]: c.tags["tracked.operator"] for c in memory.children(pipe.run_id)
    }
    assert {
        "slow": "sklearn.preprocessing._data.StandardScaler",
        "fast": "sklearn.preprocessing._data.MinMaxScaler",
    } == operators


def test_warnings_as_errors_never_replace_the_user_s_exception(memory):
    import warnings

    class Broken(TrackedPipeline):
        def explode(self, X, stage="estimator"):
            self.operator = object()  # nothing to evaluate, no params API: notices on capture
            raise Boom("mine")

    pipe = tracked_with(Broken(), memory)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(Boom, match="mine"):
            pipe.explode(np.ones((2, 2)))
    pipe.close()


def test_scoring_again_leaves_the_global_random_state_as_an_untracked_run_would(memory, iris):
    from sklearn.dummy import DummyClassifier

    class Random(TrackedPipeline):
        def guess(self, X, y=None, stage="estimator"):
            self.operator = DummyClassifier(strategy="stratified").fit(X, y)
            return self.operator.predict(X)

    X_train, _, y_train, _ = iris
    draws = []
    for tracking in (False, True):
        pipe = tracked_with(Random(), memory)
        pipe.tracking = tracking
        np.random.seed(0)
        pipe.guess(X_train, y_train)
        draws.append(np.random.rand())
        pipe.close()
    assert draws[0] == draws[1]


def test_a_hyperparameter_named_backend_is_the_user_s_own(memory):
    class Named(TrackedPipeline):
        def __init__(self, backend="loky"):
            self.backend = backend

        def scale(self, X, stage="transformer"):
            self.operator = StandardScaler().fit(X)
            return X

    pipe = tracked.configure(Named(), backend=memory)
    with pipe:
        pipe.scale(np.ones((2, 2)))
    [parent] = memory.parents()
    assert {"backend": "loky"} == parent.params


def test_a_method_named_in_stages_is_tracked_when_called(memory):
    class Foreign:
        def transform_data(self, X):
            self.operator = StandardScaler().fit(X)
            return self.operator.transform(X)

    class Pipe(TrackedPipeline, Foreign):
        stages = {"transform_data": "transformer"}

    pipe = tracked_with(Pipe(), memory)
    with pipe:
        pipe.transform_data(np.arange(6.0).reshape(3, 2))
    [child] = memory.children(pipe.run_id)
    assert ("transform_data:fit", "transformer") == (child.name, child.tags["tracked.kind"])
