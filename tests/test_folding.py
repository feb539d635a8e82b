"""Repeated calls of a stage fold into one series run: a ``partial_fit`` loop, a serving loop.

With the defaults the first two calls of a stage in one phase are runs of their own; the
calls after them are one run per stage and phase, with a metric step per call."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from pipelines import Batches, batches_data
from servers import free_port
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import accuracy_score

import tracked
from tracked import PipelineDefinitionError, TrackedPipeline, TrackingError, TrackingWarning
from tracked.core.names import FOLDED_CALLS_TAG, PHASE_TAG, STAGE_TAG
from tracked.testing import MemoryBackend


class Learner(TrackedPipeline):
    """One estimator stage that learns batch by batch; one that predicts."""

    experiment = "folding"

    def learn(self, X, y=None, stage="estimator"):
        if not hasattr(self, "clf"):
            self.clf = SGDClassifier(random_state=0)
        self.operator = self.clf
        self.clf.partial_fit(X, y, classes=[0, 1])
        return self

    def classify(self, X, y=None, stage="estimator"):
        self.operator = self.clf
        return self.clf.predict(X)


class Serving(TrackedPipeline):
    experiment = "folding"

    def fit(self, X, y=None, stage="estimator"):
        self.clf = LogisticRegression().fit(X, y)
        self.operator = self.clf
        return self

    def serve(self, X, y=None, stage="estimator"):
        self.operator = self.clf
        return self.clf.predict(X)


def data(rows=400):
    rng = np.random.RandomState(0)
    X = rng.normal(size=(rows, 5))
    return X, (X[:, 0] + X[:, 1] > 0).astype(int)


def stage_runs(memory, stage, phase=None):
    return [
        run
        for run in memory.runs.values()
        if run.tags.get(STAGE_TAG) == stage and phase in (None, run.tags.get(PHASE_TAG))
    ]


def learner(backend, cls=None, **settings):
    """A pipeline of ``cls`` (default ``Learner``) on ``backend`` with ``settings``."""
    pipe = (cls or Learner)()
    tracked.configure(pipe, backend=backend)
    for name, value in settings.items():
        setattr(pipe, name, value)
    return pipe


def learn_batches(pipe, X, y, batches, rows=50):
    for batch in range(batches):
        pipe.learn(X[batch * rows : (batch + 1) * rows], y[batch * rows : (batch + 1) * rows])


def steps(run, key):
    return [point.step for point in run.metrics[key]]


def test_a_partial_fit_loop_leaves_two_runs_and_one_series_with_a_step_per_call(memory):
    X, y = data()
    pipe = learner(memory)
    with pipe:
        learn_batches(pipe, X, y, 12, rows=30)
    runs = stage_runs(memory, "learn")
    assert 3 == len(runs)
    [series] = [run for run in runs if FOLDED_CALLS_TAG in run.tags]
    assert "10" == series.tags[FOLDED_CALLS_TAG]
    assert "FINISHED" == series.status
    assert list(range(2, 12)) == steps(series, "duration_s") == steps(series, "rows")
    assert [30.0] * 10 == [point.value for point in series.metrics["rows"]]
    # The learning curve: each step scored on its batch by the model as it was then.
    assert list(range(2, 12)) == steps(series, "training_accuracy")
    # Its final state, once: loadable and predicting like the in-memory operator.
    assert ["model"] == [name for name, _, _ in series.logged_models]
    assert pipe.clf.predict(X).tolist() == series.models["model"].predict(X).tolist()
    assert pipe.clf.get_params()["alpha"] == float(series.params["alpha"])
    assert "fitted.t_" in series.metrics
    models = [name for run in runs for name, _, _ in run.logged_models]
    assert 3 == models.count("model")
    [parent] = memory.parents()
    assert 3 == [name for name, _, _ in parent.logged_models].count("pipeline")
    assert pipe.clf.predict(X).tolist() == parent.models["pipeline"].predict(X).tolist()


def test_a_training_step_scores_the_batch_with_the_model_of_that_call(memory):
    X, y = data()
    pipe, twin = Learner(), Learner()
    tracked.configure(pipe, backend=memory)
    twin.tracking = False
    expected = []
    with pipe:
        for batch in range(5):
            rows = slice(batch * 40, (batch + 1) * 40)
            pipe.learn(X[rows], y[rows])
            twin.learn(X[rows], y[rows])
            expected.append(accuracy_score(y[rows], twin.clf.predict(X[rows])))
    [series] = [run for run in stage_runs(memory, "learn") if FOLDED_CALLS_TAG in run.tags]
    assert expected[2:] == [point.value for point in series.metrics["training_accuracy"]]


def test_a_serving_loop_folds_into_one_run_with_its_trail(memory):
    X, y = data()
    pipe = learner(memory, Serving)
    with pipe:
        pipe.fit(X, y)
        predicted = [pipe.serve(X[i : i + 1]) for i in range(40)]
        scored = [pipe.serve(X[i : i + 10], y[i : i + 10]) for i in range(0, 50, 10)]
    expected = [pipe.clf.predict(X[i : i + 1]).tolist() for i in range(40)]
    assert expected == [p.tolist() for p in predicted]
    assert len(scored) == 5
    runs = stage_runs(memory, "serve")
    # The phase did not change between the two loops: one series of 43 calls.
    assert 3 == len(runs)
    [series] = [run for run in runs if FOLDED_CALLS_TAG in run.tags]
    assert "43" == series.tags[FOLDED_CALLS_TAG]
    assert list(range(2, 45)) == steps(series, "duration_s")
    # Accuracy only for the calls given ground truth, at their own steps.
    assert list(range(40, 45)) == steps(series, "accuracy")
    expected = [
        accuracy_score(y[i : i + 10], pipe.clf.predict(X[i : i + 10])) for i in range(0, 50, 10)
    ]
    assert expected == [point.value for point in series.metrics["accuracy"]]
    assert [] == series.logged_models  # an inference series logs no model


def test_another_stage_called_between_does_not_end_a_series(memory):
    X, y = data()
    pipe = learner(memory)
    with pipe:
        learn_batches(pipe, X, y, 4)
        state = pipe.clf.coef_.copy()
        pipe.classify(X)  # another stage in between does not end the series
        pipe.learn(X[:50], y[:50])
        pipe.learn(X[50:100], y[50:100])
    series = [run for run in stage_runs(memory, "learn") if FOLDED_CALLS_TAG in run.tags]
    assert ["4"] == [run.tags[FOLDED_CALLS_TAG] for run in series]
    assert 1 == len(stage_runs(memory, "classify"))
    [run] = series
    np.testing.assert_array_equal(pipe.clf.coef_, run.models["model"].coef_)
    assert not np.array_equal(state, run.models["model"].coef_)


def test_a_stage_switching_phase_ends_its_series_with_the_final_model(memory):
    X, y = data()

    class Refit(Serving):
        def serve(self, X, y=None, refit=False, stage="estimator"):
            if refit:
                self.clf = LogisticRegression(C=0.5).fit(X, y)
            self.operator = self.clf
            return self.clf.predict(X)

    pipe = learner(memory, Refit)
    with pipe:
        pipe.fit(X, y)
        for i in range(5):
            pipe.serve(X[i : i + 1])
        pipe.serve(X, y, refit=True)  # a fit: the inference series ends before it
        for i in range(4):
            pipe.serve(X[i : i + 1])
    runs = stage_runs(memory, "serve")
    folded = sorted(int(run.tags[FOLDED_CALLS_TAG]) for run in runs if FOLDED_CALLS_TAG in run.tags)
    assert [2, 3] == folded  # calls 3-5, then (counting again after the fit) calls 3-4
    assert 1 == len(stage_runs(memory, "serve", "fit"))
    assert all(run.status == "FINISHED" for run in runs)


def test_flush_ends_a_series_and_the_loop_goes_on_in_a_new_one(memory):
    X, y = data()
    pipe = learner(memory)
    with pipe:
        learn_batches(pipe, X, y, 4)
        assert tracked.flush()
        [series] = [run for run in stage_runs(memory, "learn") if FOLDED_CALLS_TAG in run.tags]
        assert "FINISHED" == series.status
        assert ["model"] == [name for name, _, _ in series.logged_models]
        pipe.learn(X[200:250], y[200:250])
    folded = [run for run in stage_runs(memory, "learn") if FOLDED_CALLS_TAG in run.tags]
    assert ["2", "1"] == [run.tags[FOLDED_CALLS_TAG] for run in folded]


def test_checkpoints_every_k_calls_of_a_fit_series(memory):
    X, y = data()
    pipe = learner(memory, checkpoint_every=3)
    with pipe:
        learn_batches(pipe, X, y, 8)
    [series] = [run for run in stage_runs(memory, "learn") if FOLDED_CALLS_TAG in run.tags]
    names = [name for name, _, _ in series.logged_models]
    assert ["checkpoint-3", "checkpoint-6", "model"] == names


def test_fold_after_none_keeps_every_call_a_run_of_its_own(memory):
    X, y = data()
    pipe = learner(memory, fold_after=None)
    with pipe:
        learn_batches(pipe, X, y, 5)
    runs = stage_runs(memory, "learn")
    assert 5 == len(runs)
    assert not any(FOLDED_CALLS_TAG in run.tags for run in runs)


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("fold_after", -1), ("fold_after", "3"), ("fold_after", True), ("checkpoint_every", 0)],
)
def test_a_bad_fold_setting_is_refused_when_the_class_is_defined(attribute, value):
    with pytest.raises(PipelineDefinitionError, match=f"Bad.{attribute} must be None or a whole"):
        type("Bad", (TrackedPipeline,), {attribute: value})


def test_a_multi_stage_batch_loop_folds_each_stage_and_composes_the_final_chain(memory):
    X, y = batches_data(400)
    pipe = Batches()
    tracked.configure(pipe, backend=memory)
    with pipe:
        for batch in range(8):
            rows = slice(batch * 50, (batch + 1) * 50)
            pipe.learn(pipe.reduce(pipe.scale(X[rows])), y[rows])
    for stage, phase in (("scale", "inference"), ("reduce", "inference"), ("learn", "fit")):
        [series] = [run for run in stage_runs(memory, stage, phase) if FOLDED_CALLS_TAG in run.tags]
        assert series.tags[FOLDED_CALLS_TAG] == ("5" if phase == "inference" else "6")
    [parent] = memory.parents()
    expected = pipe.clf.predict(pipe.pca.transform(pipe.scaler.transform(X)))
    assert expected.tolist() == parent.models["pipeline"].predict(X).tolist()


def test_a_series_in_mlflow_is_named_for_its_calls_and_its_model_loads(tracking_uri, client):
    import mlflow

    X, y = data()
    pipe = Learner()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        learn_batches(pipe, X, y, 6)
    experiment = client.get_experiment_by_name("folding").experiment_id
    [series] = client.search_runs([experiment], f"tags.`{FOLDED_CALLS_TAG}` = '4'")
    assert "learn:fit calls 3-6" == series.info.run_name
    assert [2, 3, 4, 5] == [m.step for m in client.get_metric_history(series.info.run_id, "rows")]
    loaded = mlflow.sklearn.load_model(f"runs:/{series.info.run_id}/model")
    assert pipe.clf.predict(X).tolist() == loaded.predict(X).tolist()


def test_a_series_spooled_while_the_store_is_away_syncs_whole(spool_dir, client, tracking_uri):
    from test_faults import sync

    X, y = data()
    pipe = Learner()
    tracked.configure(pipe, tracking_uri=f"http://127.0.0.1:{free_port()}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pipe:
            for batch in range(150):
                rows = slice(batch % 8 * 50, batch % 8 * 50 + 50)
                pipe.learn(X[rows], y[rows])
    assert any(issubclass(w.category, TrackingWarning) for w in caught)
    code, _, err = sync(spool_dir, tracking_uri)
    assert 0 == code, err
    experiment = client.get_experiment_by_name("folding").experiment_id
    [series] = client.search_runs([experiment], f"tags.`{FOLDED_CALLS_TAG}` = '148'")
    assert "FINISHED" == series.info.status
    history = client.get_metric_history(series.info.run_id, "duration_s")
    assert list(range(2, 150)) == sorted(m.step for m in history)
    models = client.search_logged_models([experiment])
    assert ["model"] == [m.name for m in models if m.source_run_id == series.info.run_id]


def test_a_call_that_raises_is_a_run_of_its_own_and_the_series_goes_on(memory):
    X, y = data()
    pipe = learner(memory, Serving)
    with pipe:
        pipe.fit(X, y)
        for i in range(4):
            pipe.serve(X[i : i + 1])
        with pytest.raises(ValueError, match="features"):
            pipe.serve(X[:1, :2])  # the user's error reaches the user, unchanged
        for i in range(3):
            pipe.serve(X[i : i + 1])
    runs = stage_runs(memory, "serve")
    [failed] = [run for run in runs if run.status == "FAILED"]
    assert FOLDED_CALLS_TAG not in failed.tags
    [series] = [run for run in runs if FOLDED_CALLS_TAG in run.tags]
    assert "5" == series.tags[FOLDED_CALLS_TAG]


def test_a_copys_calls_are_not_folded_as_nothing_would_end_its_series(memory):
    X, y = data()
    pipe = learner(memory, Serving)
    with pipe:
        pipe.fit(X, y)
        worker = copy.copy(pipe)  # logs under the owner's run, which the owner ends
        for i in range(5):
            worker.serve(X[i : i + 1])
    runs = stage_runs(memory, "serve")
    assert 5 == len(runs)
    assert all(run.status == "FINISHED" and FOLDED_CALLS_TAG not in run.tags for run in runs)


def test_ending_a_fit_series_gives_back_the_global_random_state(memory):
    """Composing the final model predicts (a stratified dummy draws from the global
    generator): the user's next draw is an untracked run's."""
    X, y = data()

    class Dummy(TrackedPipeline):
        def train(self, X, y=None, stage="estimator"):
            self.operator = DummyClassifier(strategy="stratified").fit(X, y)
            return self

    def next_draw(tracking):
        np.random.seed(7)
        pipe = Dummy()
        pipe.tracking, pipe.backend = tracking, memory
        with pipe:
            for _ in range(4):
                pipe.train(X, y)
        return np.random.rand()

    assert next_draw(False) == next_draw(True)
    assert any(FOLDED_CALLS_TAG in run.tags for run in stage_runs(memory, "train"))


class RefusedOnce(MemoryBackend):
    """Refuses the first checkpoint model it is given."""

    refused = 0

    def log_model(self, run_id, name, model, **options):
        if name.startswith("checkpoint") and not self.refused:
            self.refused += 1
            raise ValueError("model refused once")
        return super().log_model(run_id, name, model, **options)


def test_a_failure_reported_in_strict_mode_leaves_one_series_run_which_ends():
    X, y = data()
    backend = RefusedOnce()
    pipe = learner(backend, strict=True, checkpoint_every=1)
    raised = 0
    with pipe:
        for batch in range(6):
            try:
                pipe.learn(X[batch * 50 : (batch + 1) * 50], y[batch * 50 : (batch + 1) * 50])
            except TrackingError as exc:
                assert "model refused once" in str(exc)
                raised += 1
    assert 1 == raised
    [series] = [run for run in stage_runs(backend, "learn") if FOLDED_CALLS_TAG in run.tags]
    assert "FINISHED" == series.status
    assert list(range(2, 6)) == steps(series, "rows")


class Stepwise(Batches):
    """Batches with a stage that calls the others: one call per batch."""

    def step(self, X, y, stage="estimator"):
        return self.learn(self.reduce(self.scale(X)), y)


def test_a_stage_that_calls_stages_folds_with_its_callees(memory):
    X, y = batches_data(400)
    pipe = Stepwise()
    tracked.configure(pipe, backend=memory)
    with pipe:
        for batch in range(8):
            pipe.step(X[batch * 50 : (batch + 1) * 50], y[batch * 50 : (batch + 1) * 50])
    outer = stage_runs(memory, "step")
    assert 3 == len(outer)
    [series] = [run for run in outer if FOLDED_CALLS_TAG in run.tags]
    assert "6" == series.tags[FOLDED_CALLS_TAG]
    # The callees have runs under the two calls kept as runs of their own, none under it.
    assert 2 == len(stage_runs(memory, "learn"))
    assert [] == memory.children(series.run_id)
    # The series ends with the final state: the estimator's model, and the composed chain.
    reduced = pipe.pca.transform(pipe.scaler.transform(X))
    assert pipe.clf.predict(reduced).tolist() == series.models["model"].predict(reduced).tolist()
    [parent] = memory.parents()
    assert pipe.clf.predict(reduced).tolist() == parent.models["pipeline"].predict(X).tolist()


def test_a_long_series_is_handed_on_in_chunks_and_stays_one_run(memory, monkeypatch):
    from tracked.recording import folding as series

    X, y = data()
    monkeypatch.setattr(series, "CHUNK_CALLS", 7)
    pipe = learner(memory, Serving)
    with pipe:
        pipe.fit(X, y)
        for i in range(40):
            pipe.serve(X[i : i + 1])
    [run] = [run for run in stage_runs(memory, "serve") if FOLDED_CALLS_TAG in run.tags]
    assert "38" == run.tags[FOLDED_CALLS_TAG]
    assert "FINISHED" == run.status
    assert list(range(2, 40)) == steps(run, "duration_s")


def test_a_slow_loop_hands_on_its_calls_by_time(memory, monkeypatch):
    """Past CHUNK_SECONDS the pending calls go to the writer: visible before the run ends."""
    from tracked.recording import folding as series

    X, y = data()
    monkeypatch.setattr(series, "CHUNK_SECONDS", 0.0)
    pipe = learner(memory, Serving)
    with pipe:
        pipe.fit(X, y)
        for i in range(5):
            pipe.serve(X[i : i + 1])
        assert tracked.flush()
        [run] = [run for run in stage_runs(memory, "serve") if FOLDED_CALLS_TAG in run.tags]
        assert [2, 3, 4] == steps(run, "duration_s")


def test_threads_sharing_a_pipeline_fold_into_one_series_with_a_step_per_call(memory):
    import threading

    X, y = data()
    pipe = learner(memory, Serving)
    with pipe:
        pipe.fit(X, y)
        threads = [
            threading.Thread(target=lambda: [pipe.serve(X[i : i + 1]) for i in range(60)])
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    [run] = [run for run in stage_runs(memory, "serve") if FOLDED_CALLS_TAG in run.tags]
    assert "118" == run.tags[FOLDED_CALLS_TAG]
    assert list(range(2, 120)) == sorted(steps(run, "duration_s"))


def test_fold_after_zero_folds_from_the_first_call(memory):
    X, y = data()
    pipe = learner(memory, fold_after=0)
    with pipe:
        learn_batches(pipe, X, y, 3)
    [run] = stage_runs(memory, "learn")
    assert "3" == run.tags[FOLDED_CALLS_TAG]
    assert [0, 1, 2] == steps(run, "rows")
    assert ["model"] == [name for name, _, _ in run.logged_models]
