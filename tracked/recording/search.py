"""What a fitted hyperparameter search (``GridSearchCV`` and its kin) adds to its stage run,
as MLflow's ``sklearn.autolog`` records it: ``best_<param>`` params, a ``best_cv_score``
metric, ``cv_results.csv``, and a child run for each of the best candidates."""

from __future__ import annotations

import math
from typing import Any

from attrs import frozen

from tracked.core.names import CANDIDATE_TAG, STAGE_TAG
from tracked.core.params import flatten
from tracked.core.text import masked
from tracked.core.values import Metric, NestedRun

#: autolog's default for ``max_tuning_runs``.


@frozen(kw_only=True)
class SearchSummary:
    params: dict[str, str]
    metrics: tuple[Metric, ...]
    artifacts: dict[str, Any]
    candidates: tuple[NestedRun, ...]


def is_search(operator: object) -> bool:
    """A fitted scikit-learn hyperparameter search (grid, randomized, halving)."""
    from sklearn.model_selection._search import BaseSearchCV

    return isinstance(operator, BaseSearchCV) and isinstance(
        getattr(operator, "cv_results_", None), dict
    )


def summarize_search(search: Any, stage: str, max_runs: int | None, stamp: int) -> SearchSummary:
    """The search's best params and score, its results table and its best candidates."""
    import pandas as pd

    from tracked.recording.evaluation.deferred import CsvFile

    results = search.cv_results_
    best = getattr(search, "best_params_", None)
    params = flatten({f"best_{k}": v for k, v in (best or {}).items()}, where=f"stage {stage}")
    metrics = []
    score = getattr(search, "best_score_", None)
    if isinstance(score, (int, float)) and math.isfinite(float(score)):
        metrics.append(Metric(key="best_cv_score", value=float(score), timestamp=stamp))
    table = pd.DataFrame(
        {key: [_cell(key, value) for value in values] for key, values in results.items()}
    )
    return SearchSummary(
        params=params,
        metrics=tuple(metrics),
        artifacts={"cv_results.csv": CsvFile(table)},
        candidates=_candidates(search, results, stage, max_runs, stamp),
    )


def _cell(column: str, value: Any) -> Any:
    """A cell of ``cv_results.csv``, with credentials masked as in params: a candidate's
    ``params`` dict item by item, a ``param_<name>`` value by its name."""
    if column == "params" and isinstance(value, dict):
        return {name: masked(name, setting) for name, setting in value.items()}
    if column.startswith("param_"):
        return masked(column.removeprefix("param_"), value)
    return value


def _rank_key(search: Any, results: dict[str, Any]) -> str | None:
    refit = getattr(search, "refit", True)
    for key in ("rank_test_score", f"rank_test_{refit}" if isinstance(refit, str) else None):
        if key is not None and key in results:
            return key
    return next((key for key in results if key.startswith("rank_test_")), None)


def _candidates(
    search: Any, results: dict[str, Any], stage: str, max_runs: int | None, stamp: int
) -> tuple[NestedRun, ...]:
    rank = _rank_key(search, results)
    count = len(results.get("params", ()))
    if rank is None or not count or max_runs == 0:
        return ()
    order = sorted(range(count), key=lambda index: (results[rank][index], index))
    chosen = order if max_runs is None else order[:max_runs]
    scores = [
        key
        for key in results
        if key.startswith(("mean_test_", "std_test_", "rank_test_", "mean_train_", "std_train_"))
    ]
    runs = []
    for index in chosen:
        metrics = []
        for key in scores:
            value = float(results[key][index])
            if math.isfinite(value):
                metrics.append(Metric(key=key, value=value, timestamp=stamp))
        runs.append(
            NestedRun(
                run_name=f"{stage}:candidate-{index}",
                params=flatten(results["params"][index], where=f"stage {stage}"),
                metrics=tuple(metrics),
                tags={STAGE_TAG: stage, CANDIDATE_TAG: str(index)},
            )
        )
    return tuple(runs)
