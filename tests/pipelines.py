"""Pipelines used across the tests (importable, so that instances pickle)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
from sklearn.preprocessing import StandardScaler

from tracked import TrackedPipeline

#: The child runs of one Iris train + predict pass, in the order they are made.
CHILD_NAMES = [
    f"{stage}:{phase}"
    for phase in ("fit", "inference")
    for stage in ("preprocessing", "reduction", "classification")
]


class Iris(TrackedPipeline):
    """The demo's workflow."""

    experiment = "tests"

    def __init__(self, n_components=2, C=1.0):
        self.n_components = n_components
        self.C = C

    def preprocessing(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler()
            self.operator = self.scaler
            return self.scaler.fit_transform(X, y)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def reduction(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.pca = PCA(n_components=self.n_components, random_state=0)
            self.operator = self.pca
            return self.pca.fit_transform(X, y)
        self.operator = self.pca
        return self.pca.transform(X)

    def classification(self, X, y=None, predict=False, stage="estimator"):
        if not predict:
            self.classifier = LogisticRegression(C=self.C, max_iter=1000)
            self.operator = self.classifier
            self.classifier.fit(X, y)
            return self.classifier
        self.operator = self.classifier
        return self.classifier.predict(X)

    def train(self, X, y):
        X = self.preprocessing(X, y)
        X = self.reduction(X, y)
        return self.classification(X, y)

    def predict(self, X, y=None):
        X = self.preprocessing(X, train=False)
        X = self.reduction(X, train=False)
        return self.classification(X, y, predict=True)


class Regression(TrackedPipeline):
    """One scaler, one regressor."""

    experiment = "tests"

    def __init__(self, fit_intercept=True):
        self.fit_intercept = fit_intercept

    def scale(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler().fit(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def regress(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.regressor = LinearRegression(fit_intercept=self.fit_intercept).fit(X, y)
        self.operator = self.regressor
        return self.regressor.predict(X)


def train_and_score(pipe):
    """A sweep's unit of work: train and evaluate on the demo's split, return the accuracy."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    pipe.train(X_train, y_train)
    return float((pipe.predict(X_test, y_test) == y_test).mean())


def tracked_pass(pipe, iris):
    """A tracked training and prediction pass in one parent run; the predictions.

    Afterwards the instance is untracked, so that a test's own calls open no further run.
    """
    X_train, X_test, y_train, y_test = iris
    with pipe:
        pipe.train(X_train, y_train)
        predictions = pipe.predict(X_test, y_test)
    pipe.tracking = False
    return predictions


def run_iris(iris, params=None, **attributes):
    """``tracked_pass`` of ``Iris(**params)`` with ``attributes`` (tracking_uri, backend, ...)
    set on the instance; ``(pipe, predictions)``."""
    pipe = Iris(**(params or {}))
    for name, value in attributes.items():
        setattr(pipe, name, value)
    return pipe, tracked_pass(pipe, iris)


class Batches(TrackedPipeline):
    """Scaler and PCA fitted on the first batch, the classifier updated on every batch."""

    def scale(self, X, stage="transformer"):
        if not hasattr(self, "scaler"):
            self.scaler = StandardScaler().fit(X)
        self.operator = self.scaler
        return self.operator.transform(X)

    def reduce(self, X, stage="transformer"):
        if not hasattr(self, "pca"):
            self.pca = PCA(n_components=2, random_state=0).fit(X)
        self.operator = self.pca
        return self.operator.transform(X)

    def learn(self, X, y, stage="estimator"):
        if not hasattr(self, "clf"):
            self.clf = SGDClassifier(random_state=0)
        self.operator = self.clf
        self.operator.partial_fit(X, y, classes=[0, 1])
        return self

    def classify(self, X, y=None, stage="estimator"):
        self.operator = self.clf
        return self.operator.predict(X)


def batches_data(rows=200):
    rng = np.random.RandomState(0)
    X = rng.rand(rows, 4)
    return X, (X[:, 0] + X[:, 1] > 1).astype(int)


class Classifier(TrackedPipeline, ClassifierMixin, BaseEstimator):
    """A pipeline that is also a scikit-learn classifier (TrackedPipeline first: its clone):
    two stages behind ``fit`` and ``predict``, as ``cross_val_score`` and searches use it."""

    experiment = "clones"

    def __init__(self, C=1.0):
        self.C = C

    def scale(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler()
            self.operator = self.scaler
            return self.scaler.fit_transform(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def classify(self, X, y=None, predict=False, stage="estimator"):
        if not predict:
            self.model = LogisticRegression(C=self.C, max_iter=500)
            self.operator = self.model
            return self.model.fit(X, y)
        self.operator = self.model
        return self.model.predict(X)

    def fit(self, X, y):
        self.classify(self.scale(X), y)
        return self

    def predict(self, X):
        return self.classify(self.scale(X, train=False), predict=True)

    @property
    def classes_(self):
        return self.model.classes_
