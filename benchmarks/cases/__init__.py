"""The benchmark cases: what each measures, and which child-process jobs it runs.

Every case is a module of this package with ``run(mode, options) -> dict``; ``child.py``
calls it in a fresh process and prints the dict as JSON. A mode is one kind of job:

- ``workflow``: one train + predict pass of the iris workflow (or of ``--rows`` synthetic
  rows), timed inside the process; the parent adds wall time and peak RSS.
- ``overhead``: many passes in one process, each stage call timed with tracking on and off;
  the figure is the median difference per call, on the caller's thread.
- ``import``: the cost of ``import tracked`` on top of scikit-learn.
- ``loop``: one stage called many times (``cases/loops.py``), tracked and untracked in one
  process; the figures are totals, per-call times and what the store holds afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    """A selectable benchmark case."""

    name: str
    module: str
    title: str
    modes: tuple[str, ...]


CASES: dict[str, Case] = {
    case.name: case
    for case in (
        Case("untracked", "untracked", "1. iris workflow, tracking off", ("workflow", "overhead")),
        Case("tracked", "tracked", "2. tracked, default settings", ("workflow", "overhead")),
        Case(
            "tracked_sync",
            "tracked_sync",
            "3. tracked, synchronous writes",
            ("workflow", "overhead"),
        ),
        Case("client", "client", "4. hand-written MlflowClient", ("workflow", "overhead")),
        Case("autolog", "autolog", "5. mlflow.sklearn.autolog", ("workflow", "overhead")),
        Case("import", "import_time", "import tracked after scikit-learn", ("import",)),
        Case("partial_fit", "loops", "7. partial_fit x200 (SGDClassifier)", ("loop",)),
        Case("predict_loop", "loops", "8. single-row predict x2000", ("loop",)),
        Case("knn_fit", "loops", "9. KNN (brute) fit, 40k x 30", ("loop",)),
        Case("wide_frame", "loops", "10. DataFrame workflow, 1000 x 20,000", ("loop",)),
        Case("long_frame", "loops", "11. DataFrame workflow, 1,000,000 x 20", ("loop",)),
    )
}

#: The cases whose workflow is repeated on synthetic data of growing size.
SCALING_CASES = ("untracked", "tracked")

#: The loop cases (mode ``loop``).
LOOP_CASES = ("partial_fit", "predict_loop", "knn_fit", "wide_frame", "long_frame")
