"""Counted label metrics and confusion counts equal scikit-learn's, at a fraction of the cost."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics
from sklearn.utils.multiclass import unique_labels

from tracked.recording.counts import COUNTED_ROWS, counted_metrics, label_counts, ranked_auc
from tracked.recording.evaluation.scoring import default_metric_calls


def labels_of(kind, rows, seed):
    rng = np.random.default_rng(seed)
    true, pred = rng.integers(0, 3, rows), rng.integers(0, 4, rows)  # pred has a label more
    if kind == "text":
        return np.array(list("abc"))[true], np.array(list("abcd"))[pred]
    if kind == "bool":
        return true.astype(bool), (pred % 2).astype(bool)
    if kind == "wide ints":
        return true * 100_000 - 5, (pred * 100_000 - 5).astype(np.int32)
    return true - 2, pred - 2


@pytest.mark.parametrize("kind", ["ints", "text", "bool", "wide ints"])
@pytest.mark.parametrize("seed", [0, 1])
def test_counted_metrics_and_counts_equal_scikit_learn_s(kind, seed):
    true, pred = labels_of(kind, COUNTED_ROWS + 17, seed)
    labels, matrix = label_counts(true, pred)
    np.testing.assert_array_equal(unique_labels(true, pred), labels)
    np.testing.assert_array_equal(metrics.confusion_matrix(true, pred, labels=labels), matrix)
    expected = {
        "accuracy": metrics.accuracy_score(true, pred),
        "f1_macro": metrics.f1_score(true, pred, average="macro", zero_division=0),
        "precision_macro": metrics.precision_score(true, pred, average="macro", zero_division=0),
        "recall_macro": metrics.recall_score(true, pred, average="macro", zero_division=0),
    }
    assert expected == pytest.approx(counted_metrics(matrix), abs=1e-12)
    assert expected == pytest.approx(
        {n: metric() for n, metric in default_metric_calls("classifier", true, pred)}, abs=1e-12
    )


def test_labels_scikit_learn_would_not_read_as_classes_are_not_counted():
    floats = np.linspace(0, 1, 50)
    assert label_counts(floats, floats) is None
    assert label_counts(np.zeros((5, 2), dtype=int), np.zeros((5, 2), dtype=int)) is None
    assert label_counts(np.arange(5), np.array(list("abcde"))) is None
    assert label_counts(np.arange(5), np.arange(4)) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_from_ranks_equals_scikit_learn_s_with_ties(seed):
    rng = np.random.default_rng(seed)
    positive = rng.random(COUNTED_ROWS) < 0.3
    scores = np.round(rng.random(COUNTED_ROWS) + positive * 0.3, 2)  # many ties
    assert metrics.roc_auc_score(positive, scores) == pytest.approx(
        ranked_auc(positive, scores), abs=1e-12
    )


def test_roc_auc_from_ranks_is_none_where_scikit_learn_would_refuse():
    assert ranked_auc(np.ones(5, dtype=bool), np.arange(5.0)) is None
    assert ranked_auc(np.array([True, False]), np.array([np.nan, 1.0])) is None
