"""Random state the user can observe is never consumed by tracking.

Each test runs the same workflow untracked and tracked, with fresh random generators each
time, and compares the user's next draw: tracking scores what the stage returned, and
predicts (training metrics, probabilities, the composed model) only with copies.
"""

from __future__ import annotations

import random
import threading
from typing import ClassVar

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.preprocessing import StandardScaler

from tracked import TrackedPipeline, configure

X = np.random.default_rng(7).normal(size=(100, 2))
Y = np.arange(100) % 2

# Random predictions never agree with the composed model's: that warning is right, and not
# the subject here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:the composed `pipeline` model of run:tracked.TrackingWarning"
)


class GeneratorClassifier(ClassifierMixin, BaseEstimator):
    """A classifier that owns a ``np.random.Generator`` and draws from it to predict."""

    def __init__(self, rng=None):
        self.rng = rng

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.rng_ = self.rng if isinstance(self.rng, np.random.Generator) else None
        if self.rng_ is None:
            self.rng_ = np.random.default_rng(self.rng)
        return self

    def predict(self, X):
        return self.classes_[self.rng_.integers(0, len(self.classes_), len(X))]

    def predict_proba(self, X):
        p = self.rng_.random((len(X), len(self.classes_)))
        return p / p.sum(axis=1, keepdims=True)


def stratified(X, y, random_state):
    return DummyClassifier(strategy="stratified", random_state=random_state).fit(X, y)


class Shared(TrackedPipeline):
    """The issue's example: the operator draws from a RandomState the user holds."""

    experiment = "random-state"

    def __init__(self, rs=None):
        self.rs = rs

    def scale(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler().fit(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = stratified(X, y, self.rs)
            self.operator = self.model
            return self.model
        self.operator = self.model
        return self.model.predict(X)


def workflow(pipe: TrackedPipeline) -> None:
    """Fit (training metrics), then a prediction pass given ground truth (metrics, curves)."""
    with pipe:
        pipe.clf(pipe.scale(X, Y), Y)
        pipe.clf(pipe.scale(X, train=False), Y, train=False)


def untracked(pipe: TrackedPipeline) -> TrackedPipeline:
    pipe.tracking = False
    return pipe


def tracked(pipe: TrackedPipeline, tracking_uri: str) -> TrackedPipeline:
    configure(pipe, tracking_uri=tracking_uri)
    return pipe


def test_a_random_state_shared_with_the_operator_draws_as_untracked(tracking_uri, client):
    draws = []
    for make in (untracked, lambda pipe: tracked(pipe, tracking_uri)):
        rs = np.random.RandomState(0)
        workflow(make(Shared(rs)))
        draws.append(rs.randint(10**9))
    assert draws[0] == draws[1]
    # ... and it was tracked: training and evaluation metrics, a composed model.
    [parent] = client.search_runs(
        [client.get_experiment_by_name("random-state").experiment_id],
        filter_string="tags.mlflow.parentRunId IS NULL",
    )
    assert {"training_accuracy", "accuracy", "roc_auc", "log_loss"} <= set(parent.data.metrics)


def test_the_issue_s_example_draws_as_untracked(tracking_uri):
    class P(TrackedPipeline):
        def clf(self, X, y=None, stage="estimator"):
            self.operator = DummyClassifier(strategy="stratified", random_state=rs)
            return self.operator.fit(X, y)

    draws = []
    for tracking in (False, True):
        rs = np.random.RandomState(0)
        p = P()
        p.tracking = tracking
        configure(p, tracking_uri=tracking_uri)
        with p:
            p.clf(np.zeros((100, 2)), np.arange(100) % 2)
        draws.append(rs.randint(10**9))
    assert draws[0] == draws[1]


class OwnsGenerator(TrackedPipeline):
    experiment = "random-state"

    def __init__(self, seed=0):
        self.seed = seed

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.rng = np.random.default_rng(self.seed)  # the user can draw from it later
            self.model = GeneratorClassifier(rng=self.rng).fit(X, y)
        self.operator = self.model
        return self.model if train else self.model.predict(X)


def test_a_generator_owned_by_a_custom_estimator_draws_as_untracked(tracking_uri):
    draws = []
    for tracking in (False, True):
        pipe = OwnsGenerator()
        pipe.tracking = tracking
        configure(pipe, tracking_uri=tracking_uri)
        with pipe:
            pipe.clf(X, Y)
            pipe.clf(X, Y, train=False)
        draws.append(pipe.rng.random())
        draws.append(pipe.model.rng_.integers(10**9))
    assert draws[:2] == draws[2:]


class HoldsRandomState(TrackedPipeline):
    """The pipeline instance holds the generators; the operator and the stage use them."""

    experiment = "random-state"

    def __init__(self):
        self.rs = np.random.RandomState(3)
        self.py = random.Random(3)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.jitter = self.py.random()  # the stage's own draw: the same either way
            self.model = stratified(X, y, self.rs)
        self.operator = self.model
        return self.model if train else self.model.predict(X)


def test_random_state_held_on_the_pipeline_instance_draws_as_untracked(tracking_uri):
    draws = []
    for tracking in (False, True):
        pipe = HoldsRandomState()
        pipe.tracking = tracking
        configure(pipe, tracking_uri=tracking_uri)
        with pipe:
            pipe.clf(X, Y)
            pipe.clf(X, Y, train=False)
            pipe.clf(X[:10], Y[:10], train=False)
        draws.append((pipe.rs.randint(10**9), pipe.py.random()))
    assert draws[0] == draws[1]


@pytest.mark.parametrize("scoring", [None, ["accuracy", "roc_auc"]])
def test_the_global_random_state_draws_as_untracked_once_the_writer_is_done(tracking_uri, scoring):
    """An operator on the global state (``random_state=None``); the with exit waits for the
    writer, which logs the composed model (and must not predict to infer its signature)."""

    class Global(Shared):
        pass

    Global.scoring = scoring
    draws = []
    for tracking in (False, True):
        pipe = Global(rs=None)
        pipe.tracking = tracking
        configure(pipe, tracking_uri=tracking_uri)
        np.random.seed(0)
        random.seed(0)
        workflow(pipe)
        draws.append((np.random.rand(), random.random()))
    assert draws[0] == draws[1]


def test_generators_are_found_wherever_an_operator_holds_them():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tracked.recording.evaluation.scoring import holds_random_state

    rs, generator = np.random.RandomState(0), np.random.default_rng(0)

    class Slotted:
        __slots__ = ("rng",)

        def __init__(self, rng):
            self.rng = rng

    def closure():
        return generator.random()

    held = [
        make_pipeline(StandardScaler(), DummyClassifier(random_state=rs)),
        {"inner": [Slotted(generator)]},
        closure,
        GeneratorClassifier(rng=generator),
        random.Random(0),
    ]
    assert all(holds_random_state(obj) for obj in held)
    fitted = LogisticRegression(random_state=0).fit(X, Y)
    assert not holds_random_state(make_pipeline(StandardScaler().fit(X), fitted))


class GlobalDrawsClassifier(ClassifierMixin, BaseEstimator):
    """Holds its training data (as a nearest-neighbours model does) and draws from NumPy's
    global generator to predict: its training metrics must be predicted on the caller's
    thread, where the draws are given back, never by the writer."""

    #: The names of the threads it predicted on (the class is pickled by value, with it).
    threads: ClassVar[list[str]] = []

    def fit(self, X, y):
        self.X_, self.classes_ = X, np.unique(y)
        return self

    def predict(self, X):
        GlobalDrawsClassifier.threads.append(threading.current_thread().name)
        return self.classes_[np.random.randint(0, len(self.classes_), len(X))]

    def predict_proba(self, X):
        GlobalDrawsClassifier.threads.append(threading.current_thread().name)
        p = np.random.random_sample((len(X), len(self.classes_)))
        return p / p.sum(axis=1, keepdims=True)


class DrawsGlobally(TrackedPipeline):
    experiment = "random-state"

    def clf(self, X, y=None, stage="estimator"):
        self.operator = GlobalDrawsClassifier()
        return self.operator.fit(X, y)


def test_an_operator_that_may_draw_globally_is_scored_on_the_caller(tracking_uri, client):
    GlobalDrawsClassifier.threads.clear()
    draws = []
    for tracking in (False, True):
        pipe = DrawsGlobally()
        pipe.tracking = tracking
        configure(pipe, tracking_uri=tracking_uri)
        np.random.seed(0)
        with pipe:
            pipe.clf(X, Y)
        draws.append(np.random.rand())  # the writer is done: the with exit waited for it
    assert draws[0] == draws[1]
    assert GlobalDrawsClassifier.threads  # its training metrics were predicted ...
    assert {threading.main_thread().name} == set(GlobalDrawsClassifier.threads)  # ... here
    [fit] = client.search_runs(
        [client.get_experiment_by_name("random-state").experiment_id],
        filter_string="tags.mlflow.parentRunId != ''",
    )
    assert {"training_accuracy", "training_roc_auc"} <= set(fit.data.metrics)


def test_only_scikit_learn_s_own_estimators_off_the_global_generator_predict_elsewhere():
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    from tracked.recording.evaluation.scoring import predicts_without_global_draws

    class Subclass(KNeighborsClassifier):
        pass

    elsewhere = [
        KNeighborsClassifier(),
        make_pipeline(StandardScaler(), KNeighborsClassifier()),
        GaussianProcessRegressor(random_state=0),
        DummyClassifier(strategy="stratified", random_state=np.random.RandomState(0)),
    ]
    here = [
        GaussianProcessRegressor(),  # random_state=None: the global generator
        DummyClassifier(strategy="stratified"),  # which it does draw from to predict
        make_pipeline(StandardScaler(), DummyClassifier()),
        GlobalDrawsClassifier(),
        make_pipeline(StandardScaler(), GlobalDrawsClassifier()),
        Subclass(),
        "not an estimator",
    ]
    assert all(predicts_without_global_draws(operator) for operator in elsewhere)
    assert not any(predicts_without_global_draws(operator) for operator in here)
