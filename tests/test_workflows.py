"""Workflows as a new user writes them, end to end on a real sqlite store: a tabular
classifier on a pandas frame with missing values and text categories, a regressor whose
hyperparameters share names with tracked's settings. Each checks what the user looks at:
the runs and their names, the metrics, and that the composed model serves what the live
pipeline predicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import tracked
from tracked import TrackedPipeline


def churn_frame(rows: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, rows).astype(float),
            "monthly": rng.normal(70, 20, rows),
            "plan": rng.choice(["basic", "plus", "premium"], rows),
            "region": rng.choice(["north", "south", "east", "west"], rows),
        }
    )
    frame.loc[rng.choice(rows, 20, replace=False), "monthly"] = np.nan
    churned = (frame["tenure"] < 12) & (frame["plan"] == "basic") | (rng.random(rows) < 0.1)
    return frame, churned.astype(int).rename("churned")


class Churn(TrackedPipeline):
    experiment = "churn"

    def __init__(self, learning_rate=0.1, max_iter=50):
        self.learning_rate = learning_rate
        self.max_iter = max_iter

    def prepare(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.columns = ColumnTransformer(
                [
                    (
                        "numbers",
                        make_pipeline(SimpleImputer(), StandardScaler()),
                        ["tenure", "monthly"],
                    ),
                    ("categories", OneHotEncoder(handle_unknown="ignore"), ["plan", "region"]),
                ]
            )
            self.operator = self.columns
            return self.columns.fit_transform(X, y)
        self.operator = self.columns
        return self.columns.transform(X)

    def learn(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = HistGradientBoostingClassifier(
                learning_rate=self.learning_rate, max_iter=self.max_iter, random_state=0
            )
            self.operator = self.model
            self.model.fit(X, y)
            return self.model
        self.operator = self.model
        return self.model.predict(X)

    def fit(self, X, y):
        self.learn(self.prepare(X, y), y)
        return self

    def predict(self, X, y=None):
        return self.learn(self.prepare(X, train=False), y, train=False)


def runs_of(client: MlflowClient, experiment: str) -> tuple[list, dict]:
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children: dict[str, list] = {}
    for run in runs:
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent is not None:
            children.setdefault(parent, []).append(run)
    return parents, children


def test_a_tabular_classifier_on_a_frame_with_gaps_and_categories(tracking_uri, client):
    import mlflow

    X, y = churn_frame()
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    untracked = tracked.configure(Churn(), tracking=False).fit(X_train, y_train).predict(X_test)

    pipe = tracked.configure(Churn(), tracking_uri=tracking_uri)
    with pipe:
        pipe.fit(X_train, y_train)
        scored = pipe.predict(X_test, y_test)
        pipe.predict(X_test.head(5))  # serving: no ground truth

    np.testing.assert_array_equal(untracked, scored)  # tracking changed nothing
    [parent], children = runs_of(client, "churn")
    assert "FINISHED" == parent.info.status
    names = sorted(run.info.run_name for run in children[parent.info.run_id])
    expected = ["learn:fit", "learn:inference", "learn:inference", "prepare:fit"]
    assert [*expected, "prepare:inference", "prepare:inference"] == names
    inference = [r for r in children[parent.info.run_id] if r.info.run_name == "learn:inference"]
    scored_run = next(r for r in inference if "accuracy" in r.data.metrics)
    assert (y_test.to_numpy() == scored).mean() == pytest.approx(
        scored_run.data.metrics["accuracy"]
    )
    assert "true" == parent.data.tags["tracked.pipeline_verified"]

    model = mlflow.pyfunc.load_model(pipe.model_uri)
    np.testing.assert_array_equal(scored, np.asarray(model.predict(X_test)))


class Prices(TrackedPipeline):
    """A regressor whose hyperparameters are named like tracked's settings."""

    experiment = "prices"
    scoring = ("neg_mean_absolute_error", "r2")  # tracked's setting: the class body

    def __init__(self, alpha=1.0, scoring="mae", target="price"):
        self.alpha = alpha
        self.scoring = scoring  # the user's own: which loss their report shows
        self.target = target

    def scale(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler()
            self.operator = self.scaler
            return self.scaler.fit_transform(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def regress(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.operator = self.ridge = Ridge(alpha=self.alpha).fit(X, y)
            return self.ridge
        self.operator = self.ridge
        return self.ridge.predict(X)


def test_a_regressor_whose_hyperparameters_share_names_with_settings(tracking_uri, client):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 5))
    y = X @ np.array([3.0, -1.0, 0.5, 0.0, 2.0]) + rng.normal(0, 0.1, 200)

    pipe = tracked.configure(Prices(alpha=0.5), tracking_uri=tracking_uri)
    with pipe:
        pipe.regress(pipe.scale(X[:150]), y[:150])
        pipe.regress(pipe.scale(X[150:], train=False), y[150:], train=False)

    [parent], children = runs_of(client, "prices")
    assert {"alpha": "0.5", "scoring": "mae", "target": "price"} == parent.data.params
    [inference] = [
        r for r in children[parent.info.run_id] if r.info.run_name == "regress:inference"
    ]
    assert {"neg_mean_absolute_error", "r2"} <= set(inference.data.metrics)
    assert inference.data.metrics["r2"] > 0.9
