"""Confusion counts of many labelled rows in one pass, and the default label metrics from them.

scikit-learn's metrics check their inputs each time (``type_of_target`` sorts every row
several times): the four default label metrics and the confusion matrix of 1,000,000 rows
took seconds on the caller's thread, where they are computed past 5,000 rows. Counting once
(``np.unique`` of the labels, then ``bincount`` of the pairs) gives the same figures for
plain integer, boolean or text labels; anything else goes to scikit-learn as before.
"""

from __future__ import annotations

from typing import Any

#: Fewer rows than this are scored by scikit-learn itself (its cost is small there).
COUNTED_ROWS = 10_000


def label_counts(y_true: Any, y_pred: Any) -> tuple[Any, Any] | None:
    """``(labels, matrix)``: the sorted labels of both, and ``matrix[i, j]`` the rows of true
    label ``i`` predicted ``j``; None unless both are 1-D arrays of as many integer, boolean
    or text labels (what scikit-learn would read as plain class labels)."""
    import numpy as np

    true, pred = np.asarray(y_true), np.asarray(y_pred)
    if true.ndim != 1 or pred.ndim != 1 or len(true) != len(pred):
        return None
    kinds = {true.dtype.kind, pred.dtype.kind}
    if not (kinds <= set("biu") or kinds <= set("US")):
        return None
    both = np.concatenate([true, pred])
    if both.dtype.kind in "biu" and len(both):
        # Integers in a small range: their codes without sorting (np.unique sorts).
        dtype, both = both.dtype, both.astype(np.int64)
        low = int(both.min())
        span = int(both.max()) - low + 1
        if span > 65_536:
            return _sorted_counts(both, len(true))
        present = np.bincount(both - low, minlength=span) > 0
        labels = (np.flatnonzero(present) + low).astype(dtype)
        codes = (np.cumsum(present) - 1)[both - low]
    else:
        return _sorted_counts(both, len(true))
    return _matrix(labels, codes, len(true))


def _sorted_counts(both: Any, rows: int) -> tuple[Any, Any]:
    import numpy as np

    labels, codes = np.unique(both, return_inverse=True)
    return _matrix(labels, codes, rows)


def _matrix(labels: Any, codes: Any, rows: int) -> tuple[Any, Any]:
    import numpy as np

    count = len(labels)
    pairs = codes[:rows].astype(np.int64) * count + codes[rows:]
    return labels, np.bincount(pairs, minlength=count * count).reshape(count, count)


def counted_metrics(matrix: Any) -> dict[str, float]:
    """``accuracy`` and the macro ``f1`` / ``precision`` / ``recall`` of a confusion matrix,
    as scikit-learn computes them with ``zero_division=0`` over the labels of both."""
    import numpy as np

    matrix = np.asarray(matrix, dtype=np.float64)
    hits = np.diag(matrix)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(actual > 0, hits / actual, 0.0)
        both = 2 * hits + (predicted - hits) + (actual - hits)
        f1 = np.where(both > 0, 2 * hits / both, 0.0)
    return {
        "accuracy": float(hits.sum() / matrix.sum()),
        "f1_macro": float(f1.mean()),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
    }


def ranked_auc(positive: Any, scores: Any) -> float | None:
    """The area under the ROC curve of ``scores`` for the boolean ``positive``, from ranks
    (the Mann-Whitney statistic, ties counted half): what ``roc_auc_score`` computes from
    its curve, without its checks of the labels; None when both classes do not occur or a
    score is not finite (scikit-learn then says why)."""
    import numpy as np

    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    if positive.ndim != 1 or scores.shape != positive.shape or not np.isfinite(scores).all():
        return None
    hits = int(positive.sum())
    misses = len(positive) - hits
    if hits == 0 or misses == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ordered)) + 1])
    ends = np.concatenate([starts[1:], [len(ordered)]])
    ranks = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # 1-based, ties averaged
    rank_sum = float(ranks[positive[order]].sum())
    return (rank_sum - hits * (hits + 1) / 2.0) / (hits * misses)
