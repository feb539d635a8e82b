"""Robust scoring: each metric on its own, ground truth by name, what the stage returned,
binary metrics and the positive class."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import fbeta_score, make_scorer
from sklearn.preprocessing import LabelEncoder
from sklearn.svm import LinearSVC

import tracked
from tracked import PipelineDefinitionError, TrackedPipeline, TrackingWarning
from tracked.recording.evaluation.deferred import Scores
from tracked.recording.evaluation.plots import classifier_pictures

rng = np.random.default_rng(11)
X = rng.normal(size=(120, 3))
Y = (X[:, 0] + 0.5 * rng.normal(size=120) > 0).astype(int)
LABELS = np.where(Y == 1, "ok", "fraud")


class Binary(TrackedPipeline):
    experiment = "scoring"

    def __init__(self, kind="logistic"):
        self.kind = kind

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            model = LogisticRegression() if self.kind == "logistic" else LinearSVC()
            self.model = model.fit(X, y)
            self.operator = self.model
            return self.model
        self.operator = self.model
        return self.model.predict(X)


def children(client, pipe):
    parent = client.get_run(pipe.run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return {run.info.run_name: run for run in runs}


def run(pipe, tracking_uri, y=Y):
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.clf(X, y)
        predictions = pipe.clf(X, y, train=False)
    return predictions


def test_one_failing_scorer_loses_only_its_own_metric(tracking_uri, client):
    class Scored(Binary):
        scoring = {
            "auc": "roc_auc",
            "nll": "neg_log_loss",  # LinearSVC has no predict_proba
            "f2": make_scorer(fbeta_score, beta=2),
        }

    pipe = Scored(kind="svc")
    with pytest.warns(TrackingWarning) as caught:
        predictions = run(pipe, tracking_uri)
    messages = [str(w.message) for w in caught]
    dropped = [m for m in messages if "is dropped" in m]
    assert 2 == len(dropped)  # one for the fit (training_nll), one for the inference
    assert all("nll" in m and "predict_proba" in m for m in dropped)
    inference = children(client, pipe)["clf:inference"].data.metrics
    assert {"auc", "f2", "duration_s"} == set(inference)
    assert fbeta_score(Y, predictions, beta=2) == pytest.approx(inference["f2"])
    assert metrics.roc_auc_score(Y, pipe.model.decision_function(X)) == pytest.approx(
        inference["auc"]
    )
    assert {"training_auc", "training_f2"} <= set(children(client, pipe)["clf:fit"].data.metrics)


def test_a_default_metric_that_fails_is_the_only_one_lost():
    scores = Scores(
        task="classifier",
        y_true=np.array([0, 1, 1, 0]),
        y_pred=np.array([0, 1, 0, 0]),
        prefix="",
        step=0,
        timestamp=0,
        proba=np.full((4, 3), 1 / 3),  # not two columns: log_loss cannot be computed
        classes=(0, 1),
    )
    computed, failed = scores.evaluate()
    assert ["log_loss"] == [name for name, _ in failed]
    assert {"accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc"} == {
        m.key for m in computed
    }


def test_binary_classifiers_get_roc_auc_and_log_loss_on_fit_and_inference(tracking_uri, client):
    pipe = Binary()
    run(pipe, tracking_uri)
    runs = children(client, pipe)
    proba = pipe.model.predict_proba(X)
    expected = {
        "roc_auc": metrics.roc_auc_score(Y, proba[:, 1]),
        "log_loss": metrics.log_loss(Y, proba),
    }
    for name, value in expected.items():
        assert value == pytest.approx(runs["clf:fit"].data.metrics[f"training_{name}"])
        assert value == pytest.approx(runs["clf:inference"].data.metrics[name])
        assert value == pytest.approx(client.get_run(pipe.run_id).data.metrics[name])


def test_a_classifier_without_predict_proba_gets_roc_auc_from_its_decision_function(
    tracking_uri, client
):
    pipe = Binary(kind="svc")
    run(pipe, tracking_uri)
    inference = children(client, pipe)["clf:inference"].data.metrics
    assert "log_loss" not in inference
    assert metrics.roc_auc_score(Y, pipe.model.decision_function(X)) == pytest.approx(
        inference["roc_auc"]
    )


def test_a_batch_with_one_class_gets_no_roc_auc_and_no_failure(memory):
    pipe = Binary()
    tracked.configure(pipe, backend=memory)
    only_ones = Y == 1
    with pipe:
        pipe.clf(X, Y)
        pipe.clf(X[only_ones], Y[only_ones], train=False)
    inference = memory.children(pipe.run_id)[-1]
    assert "roc_auc" not in inference.metrics
    proba = pipe.model.predict_proba(X[only_ones])
    assert metrics.log_loss(Y[only_ones], proba, labels=[0, 1]) == pytest.approx(
        inference.metric("log_loss")
    )


class FraudOrOk(Binary):
    pos_label = "fraud"


def test_pos_label_chooses_the_class_of_the_curves(memory):
    drawn = {}
    for cls in (Binary, FraudOrOk):
        pipe = cls()
        tracked.configure(pipe, backend=memory)
        with pipe:
            pipe.clf(X, LABELS)
            predictions = pipe.clf(X, LABELS, train=False)
        drawn[cls] = memory.children(pipe.run_id)[-1].artifacts["pr_curve.png"]
    proba = pipe.model.predict_proba(X)
    assert ("fraud", "ok") == tuple(pipe.model.classes_)  # the default positive class is "ok"
    fraud = classifier_pictures(LABELS, predictions, proba, ["fraud", "ok"], pos_label="fraud")
    ok = classifier_pictures(LABELS, predictions, proba, ["fraud", "ok"])
    assert fraud["pr_curve.png"] != ok["pr_curve.png"]
    assert fraud["pr_curve.png"] == drawn[FraudOrOk]
    assert ok["pr_curve.png"] == drawn[Binary]


def test_a_pos_label_that_is_not_a_class_is_said_and_leaves_out_binary_metrics(memory):
    class Wrong(Binary):
        pos_label = "froud"

    pipe = Wrong()
    tracked.configure(pipe, backend=memory)
    with pytest.warns(TrackingWarning, match="pos_label 'froud' .* is not a class"), pipe:
        pipe.clf(X, LABELS)
    fit = memory.children(pipe.run_id)[0]
    assert "training_accuracy" in fit.metrics
    assert "training_roc_auc" not in fit.metrics


@pytest.mark.parametrize("label", [["fraud"], object()])
def test_pos_label_must_be_one_label(label):
    with pytest.raises(PipelineDefinitionError, match="pos_label must be one class label"):
        type("Bad", (Binary,), {"pos_label": label})


# -- the ground truth --------------------------------------------------------------------------


class Named(TrackedPipeline):
    experiment = "scoring"
    target = "labels"

    def clf(self, X, labels=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression().fit(X, labels)
        self.operator = self.model
        return self.model if train else self.model.predict(X)


def test_the_ground_truth_parameter_is_named_by_target(memory):
    pipe = Named()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.clf(X, labels=Y)
        predictions = pipe.clf(X, Y, train=False)  # positionally, too
    fit, inference = memory.children(pipe.run_id)
    assert "training_accuracy" in fit.metrics
    assert metrics.accuracy_score(Y, predictions) == pytest.approx(inference.metric("accuracy"))


@pytest.mark.parametrize("target", ["", "two words", 3, None])
def test_target_must_name_a_parameter(target):
    with pytest.raises(PipelineDefinitionError, match="target must name the stages' ground-truth"):
        type("Bad", (TrackedPipeline,), {"target": target})


def test_an_estimator_stage_without_ground_truth_is_said_once(memory):
    class Blind(TrackedPipeline):
        def clf(self, X, stage="estimator"):
            self.operator = LogisticRegression().fit(X, Y)
            return self.operator.predict(X)

    pipe = Blind()
    tracked.configure(pipe, backend=memory)
    with pytest.warns(TrackingWarning) as caught, pipe:
        pipe.clf(X)
        pipe.clf(X)
    said = [w for w in caught if "has no ground-truth parameter 'y'" in str(w.message)]
    assert 1 == len(said)
    assert "target = " in str(said[0].message)


def test_keywords_caught_by_kwargs_reach_the_ground_truth(memory):
    class Loose(TrackedPipeline):
        def clf(self, X, stage="estimator", **options):
            self.operator = LogisticRegression().fit(X, options["y"])
            return self.operator

    pipe = Loose()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.clf(X, y=Y)
    assert "training_accuracy" in memory.children(pipe.run_id)[0].metrics


class Encoding(TrackedPipeline):
    """Encodes string labels inside the stage: the operator only ever sees integers."""

    experiment = "scoring"

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.encoder = LabelEncoder().fit(y)
            self.model = LogisticRegression().fit(X, self.encoder.transform(y))
        self.operator = self.model
        return self.encoder.inverse_transform(self.model.predict(X))


def test_the_predictions_a_stage_returned_are_what_is_scored(tracking_uri, client):
    pipe = Encoding()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    # The composed model predicts the operator's integers: rightly said to differ.
    with pytest.warns(TrackingWarning, match="predicts differently"), pipe:
        fitted = pipe.clf(X, LABELS)
        predicted = pipe.clf(X[:60], LABELS[:60], train=False)
    runs = children(client, pipe)
    assert metrics.accuracy_score(LABELS, fitted) == pytest.approx(
        runs["clf:fit"].data.metrics["training_accuracy"]
    )
    assert metrics.f1_score(LABELS[:60], predicted, average="macro") == pytest.approx(
        runs["clf:inference"].data.metrics["f1_macro"]
    )
    # The operator's classes are not the ground truth's labels: no roc_auc read against them.
    assert "roc_auc" not in runs["clf:inference"].data.metrics


def test_a_classifier_stage_returning_decision_scores_is_scored_on_labels(memory):
    class Scores_(TrackedPipeline):
        def clf(self, X, y=None, train=True, stage="estimator"):
            if train:
                self.model = LogisticRegression().fit(X, y)
            self.operator = self.model
            return self.model if train else self.model.decision_function(X)

    pipe = Scores_()
    tracked.configure(pipe, backend=memory)
    with pytest.warns(TrackingWarning, match="predicts differently"), pipe:
        pipe.clf(X, Y)
        pipe.clf(X, Y, train=False)
    inference = memory.children(pipe.run_id)[-1]
    labels = pipe.model.predict(X)
    assert metrics.accuracy_score(Y, labels) == pytest.approx(inference.metric("accuracy"))


def test_a_hyperparameter_named_target_is_not_taken_for_the_ground_truth_name(memory):
    class Column(TrackedPipeline):
        def __init__(self, target="species"):
            self.target = target

        def clf(self, X, y=None, stage="estimator"):
            self.operator = LogisticRegression().fit(X, y)
            return self.operator

    pipe = Column()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.clf(X, Y)
    assert "training_accuracy" in memory.children(pipe.run_id)[0].metrics


def test_scores_spooled_before_the_binary_fields_existed_still_evaluate():
    """A spool written by the previous version holds Scores without proba/classes."""
    scores = Scores(task="classifier", y_true=Y, y_pred=Y, prefix="", step=0, timestamp=0)
    before = ("task", "y_true", "y_pred", "prefix", "step", "timestamp")  # the old fields
    state = {key: value for key, value in scores.__getstate__().items() if key in before}
    old = Scores.__new__(Scores)
    old.__setstate__(state)
    computed, failed = old.evaluate()
    assert () == failed
    assert 1.0 == {m.key: m.value for m in computed}["accuracy"]
