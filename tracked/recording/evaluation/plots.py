"""Evaluation pictures, drawn with matplotlib's non-interactive Agg backend.

matplotlib is imported only when a picture is drawn. Each function returns
``{artifact name: bytes}``.
"""

from __future__ import annotations

import io
import json
from typing import Any

from attrs import frozen

from tracked.core.names import PICTURE_ROWS_TAG
from tracked.recording.counts import label_counts

#: Most rows a picture is drawn from (and that travel to the writer and the spool for it).
SCATTER_POINTS = 5000


@frozen
class Pictures:
    """What the evaluation pictures of one prediction pass are drawn from.

    Built on the caller's thread (predictions and scores are computed there, while the
    operator is the one that made them); drawn later, by the writer. Past ``SCATTER_POINTS``
    rows it holds a sample of ``SCATTER_POINTS`` rows for the curves and scatter plots, and
    a classifier's confusion counts computed on every row.
    """

    task: str
    y_true: Any
    y_pred: Any
    #: ``predict_proba`` of a classifier, or None.
    scores: Any = None
    classes: tuple[Any, ...] = ()
    #: The positive class of a binary classifier (None: scikit-learn's, ``classes[1]``).
    pos_label: Any = None
    #: A sampled classifier's confusion counts on every row: ``(labels, matrix)``.
    confusion: Any = None
    #: ``(rows drawn, rows predicted)`` when the rows are a sample; None: all of them.
    sampled: tuple[int, int] | None = None

    @classmethod
    def of(
        cls,
        task: str,
        y_true: Any,
        y_pred: Any,
        scores: Any = None,
        classes: tuple[Any, ...] = (),
        pos_label: Any = None,
    ) -> Pictures | None:
        """From copies of the ground truth and of the predictions (and probabilities), or
        a sample of their rows."""
        import numpy as np

        if task not in ("regressor", "classifier"):
            return None
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if scores is not None:
            scores = np.asarray(scores)
            classes = tuple(classes) or tuple(range(scores.shape[1]))
        confusion = sampled = None
        rows = len(y_true)
        if rows > SCATTER_POINTS:
            if task == "classifier":
                confusion = _confusion(y_true, y_pred)
            index = sample_rows(rows, SCATTER_POINTS)
            y_true, y_pred = y_true[index], y_pred[index]
            scores = None if scores is None else scores[index]
            sampled = (SCATTER_POINTS, rows)
        else:  # copies: the caller may change its arrays once the stage returns
            y_true, y_pred = y_true.copy(), y_pred.copy()
        if task == "regressor":
            return cls(task, y_true, y_pred, sampled=sampled)
        return cls(task, y_true, y_pred, scores, tuple(classes), pos_label, confusion, sampled)

    def tags(self) -> dict[str, str]:
        """The stage run's tag saying the pictures were drawn from a sample, if they were."""
        if self.sampled is None:
            return {}
        return {PICTURE_ROWS_TAG: "{} of {}".format(*self.sampled)}

    def render(self) -> dict[str, bytes]:
        """``{artifact name: bytes}``."""
        # getattr: pictures spooled by a previous version (without the newer fields) draw.
        note = getattr(self, "sampled", None)
        note = "" if note is None else " ({} of {} rows)".format(*note)
        if self.task == "regressor":
            return regressor_pictures(self.y_true, self.y_pred, note)
        return classifier_pictures(
            self.y_true,
            self.y_pred,
            self.scores,
            list(self.classes),
            getattr(self, "pos_label", None),
            confusion=getattr(self, "confusion", None),
            note=note,
        )


def sample_rows(rows: int, size: int) -> Any:
    """``size`` of ``rows`` row numbers, in order, the same on every call: drawn by a
    generator of our own with a fixed seed, never from random state the user can observe."""
    import numpy as np

    return np.sort(np.random.default_rng(0).choice(rows, size, replace=False))


def _confusion(y_true: Any, y_pred: Any) -> tuple[Any, Any]:
    """``(labels, matrix)``: the confusion counts of every row."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    counted = label_counts(y_true, y_pred)
    if counted is not None:
        return counted
    labels = np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))
    return labels, confusion_matrix(y_true, y_pred, labels=labels)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    _pyplot().close(figure)
    return buffer.getvalue()


def classifier_pictures(
    y_true: Any,
    y_pred: Any,
    scores: Any = None,
    classes: list[Any] | None = None,
    pos_label: Any = None,
    *,
    confusion: tuple[Any, Any] | None = None,
    note: str = "",
) -> dict[str, bytes]:
    """Confusion matrix (PNG and the numbers as JSON); ROC and precision-recall curves,
    one-vs-rest for more than two classes, when ``scores`` (``predict_proba``) are given;
    for two classes, of ``pos_label`` (default: the second class, as scikit-learn).

    ``confusion``: the counts ``(labels, matrix)`` when the rows given are a sample of those
    counted; ``note`` goes in the curves' titles (the sample's size)."""
    import numpy as np

    labels, matrix = confusion if confusion is not None else _confusion(y_true, y_pred)
    pictures = {
        "confusion_matrix.json": json.dumps(
            {"labels": [str(label) for label in labels], "matrix": matrix.tolist()}
        ).encode(),
        "confusion_matrix.png": _confusion_png(matrix, labels),
    }
    if scores is not None:
        curves = _curves(np.asarray(y_true), scores, list(classes or ()), pos_label, note)
        pictures.update(curves)
    return pictures


def _confusion_png(matrix: Any, labels: Any) -> bytes:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(4.5, 4), layout="constrained")
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = range(len(labels))
    axes.set_xticks(ticks, [str(label) for label in labels])
    axes.set_yticks(ticks, [str(label) for label in labels])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            color = "white" if matrix[i, j] > threshold else "black"
            axes.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color)
    axes.set_title("confusion matrix")
    return _png(figure)


def _curves(
    y_true: Any, scores: Any, classes: list[Any], pos_label: Any = None, note: str = ""
) -> dict[str, bytes]:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    from tracked.recording.evaluation.scoring import positive_class

    plt = _pyplot()
    roc_figure, roc_axes = plt.subplots(figsize=(4.5, 4), layout="constrained")
    pr_figure, pr_axes = plt.subplots(figsize=(4.5, 4), layout="constrained")
    # Binary: the positive class only; more classes: one curve per class against the rest.
    if len(classes) == 2:
        index = positive_class(tuple(classes), pos_label)
        shown = [] if index is None else [index]
    else:
        shown = range(len(classes))
    for index in shown:
        positive = y_true == classes[index]
        if positive.all() or not positive.any():
            continue  # a class absent from (or alone in) y_true has no curve
        fpr, tpr, _ = roc_curve(positive, scores[:, index])
        roc_axes.plot(fpr, tpr, label=f"{classes[index]} (AUC {auc(fpr, tpr):.3f})")
        precision, recall, _ = precision_recall_curve(positive, scores[:, index])
        pr_axes.plot(recall, precision, label=str(classes[index]))
    roc_axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    roc_axes.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC{note}")
    pr_axes.set(xlabel="recall", ylabel="precision", title=f"precision-recall{note}")
    for axes in (roc_axes, pr_axes):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="lower right", fontsize="small")
    return {"roc_curve.png": _png(roc_figure), "pr_curve.png": _png(pr_figure)}


def regressor_pictures(y_true: Any, y_pred: Any, note: str = "") -> dict[str, bytes]:
    """Predicted against actual, and residuals against predicted (``note`` in the titles)."""
    import numpy as np

    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if len(y_true) > SCATTER_POINTS:  # a picture does not need every point
        index = sample_rows(len(y_true), SCATTER_POINTS)
        y_true, y_pred = y_true[index], y_pred[index]
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(4.5, 4), layout="constrained")
    axes.scatter(y_true, y_pred, s=8, alpha=0.6)
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    axes.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=1)
    axes.set(xlabel="actual", ylabel="predicted", title=f"predicted vs actual{note}")
    scatter = _png(figure)
    figure, axes = plt.subplots(figsize=(4.5, 4), layout="constrained")
    axes.scatter(y_pred, y_true - y_pred, s=8, alpha=0.6)
    axes.axhline(0, linestyle="--", color="grey", linewidth=1)
    axes.set(xlabel="predicted", ylabel="residual (actual - predicted)", title=f"residuals{note}")
    return {"predicted_vs_actual.png": scatter, "residuals.png": _png(figure)}
