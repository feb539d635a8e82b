"""Parameter sweeps: one pipeline instance per configuration, in parallel, in a group run."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import frozen

from tracked._group import group
from tracked.records.names import BEST_METRIC_TAG, BEST_RUN_TAG
from tracked.records.ranking import lower_is_better
from tracked.records.text import to_text
from tracked.records.values import Metric


class SweepResults(list):
    """``fn``'s results in grid order, with the group run and the best configuration."""

    run_id: str | None = None
    best_run_id: str | None = None
    best_params: dict[str, Any] | None = None
    #: ``{metric name: value}`` of the best configuration.
    best_metric: dict[str, float] | None = None


@frozen
class Outcome:
    """What one configuration's worker sends back."""

    result: Any
    run_id: str | None
    evaluation: dict[str, float]


def _run_one(fn: Callable[[Any], Any], pipeline: Any) -> Outcome:
    # Runs in the worker: the instance carries its group, so its parent run nests under it.
    with pipeline:
        result = fn(pipeline)
    session = pipeline._last_session()
    evaluation = dict(session.evaluation) if session is not None else {}
    return Outcome(result, pipeline.run_id, evaluation)


def sweep(
    pipeline_class: type,
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]],
    fn: Callable[[Any], Any],
    n_jobs: int | None = None,
    backend: str | None = None,
    name: str | None = None,
    *,
    progress: bool | None = None,
) -> SweepResults:
    """Run ``fn(pipeline)`` for every combination of ``param_grid``, in parallel, in a group.

    Each combination gets its own instance, ``pipeline_class(**params)``, created here and
    shipped to a joblib worker; ``fn`` runs inside ``with pipeline:``. The group run (named
    ``name``, in the class's experiment and store) is tagged with the best configuration by
    the first evaluation metric the pipelines logged (``tracked.best_run_id``, params
    ``best.<name>`` and metric ``best.<metric>``).

    Args:
        pipeline_class: a ``TrackedPipeline`` subclass.
        param_grid: scikit-learn's ``ParameterGrid`` semantics (a dict of lists, or a list
            of such dicts).
        fn: what to do with one pipeline (train, predict, return anything picklable).
        n_jobs: joblib's ``n_jobs`` (None: one job, -1: all cores).
        backend: a joblib backend name: ``loky`` (default), ``threading``,
            ``multiprocessing``, ``dask`` (with a ``dask.distributed`` client active),
            ``ray`` (if installed).
        name: the group run's name (default: ``<class name> sweep``).
        progress: show a progress bar (tqdm); default: when stderr is a terminal.

    Returns:
        ``fn``'s results in grid order, a list with attributes ``run_id`` (the group run),
            ``best_run_id``, ``best_params`` and ``best_metric``.
    """
    from sklearn.model_selection import ParameterGrid

    grid = list(ParameterGrid(param_grid))
    if not getattr(pipeline_class, "tracking", True):  # untracked: the same work, no group
        return _sweep_untracked(pipeline_class, grid, fn, n_jobs, backend)
    with _group_of(pipeline_class, name) as run:
        pipelines = [pipeline_class(**params) for params in grid]
        collected = _run_all(pipelines, fn, n_jobs, backend, progress)
        results = SweepResults(outcome.result for outcome in collected)
        results.run_id = run.run_id
        _tag_best(run, grid, collected, results)
    return results


def _sweep_untracked(
    pipeline_class: type,
    grid: list[dict[str, Any]],
    fn: Callable[[Any], Any],
    n_jobs: int | None,
    backend: str | None,
) -> SweepResults:
    """The sweep of a class with ``tracking = False``: the same calls, no group run, no best
    configuration (nothing was evaluated on record), no progress bar."""
    from joblib import Parallel, delayed

    with _parallel(backend, n_jobs):
        outcomes = Parallel()(delayed(_run_one)(fn, pipeline_class(**p)) for p in grid)
    return SweepResults(outcome.result for outcome in outcomes)


def _group_of(pipeline_class: type, name: str | None) -> group:
    """The group run a sweep's pipelines nest under: in the class's experiment and store, so
    the sweep sits beside the pipelines' own runs."""
    experiment = getattr(pipeline_class, "experiment", None) or pipeline_class.__name__
    return group(
        name or f"{pipeline_class.__name__} sweep",
        experiment=experiment,
        tracking_uri=getattr(pipeline_class, "tracking_uri", None),
        backend=getattr(pipeline_class, "backend", None),
    )


def _run_all(
    pipelines: list[Any],
    fn: Callable[[Any], Any],
    n_jobs: int | None,
    backend: str | None,
    progress: bool | None,
) -> list[Outcome]:
    """``fn`` on every pipeline in joblib's workers, outcomes in grid order."""
    from joblib import Parallel, delayed

    # parallel_config, unlike Parallel(backend=...), also knows the backends registered
    # on demand: dask (with a distributed client) and ray.
    with _parallel(backend, n_jobs):
        outcomes = Parallel(return_as="generator")(
            delayed(_run_one)(fn, pipeline) for pipeline in pipelines
        )
        return list(_with_progress(outcomes, len(pipelines), progress))


def _parallel(backend: str | None, n_jobs: int | None) -> Any:
    """joblib's configuration for the sweep; None leaves joblib's own default (loky)."""
    from joblib import parallel_config

    settings: dict[str, Any] = {}
    if backend is not None:
        settings["backend"] = backend
    if n_jobs is not None:
        settings["n_jobs"] = n_jobs
    return parallel_config(**settings)


def _with_progress(outcomes: Any, total: int, progress: bool | None) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return outcomes
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return outcomes
    return tqdm(outcomes, total=total, desc="sweep", unit="config")


def _tag_best(
    run: group, grid: list[dict[str, Any]], outcomes: list[Outcome], results: SweepResults
) -> None:
    scored = [(o, params) for o, params in zip(outcomes, grid, strict=True) if o.evaluation]
    if not scored:
        return
    metric = next(iter(scored[0][0].evaluation))
    candidates = [(o, params) for o, params in scored if metric in o.evaluation]
    pick = min if lower_is_better(metric) else max
    best, params = pick(candidates, key=lambda pair: pair[0].evaluation[metric])
    results.best_run_id, results.best_params = best.run_id, params
    results.best_metric = {metric: best.evaluation[metric]}
    run.log(
        params={f"best.{key}": to_text(value) for key, value in params.items()},
        metrics=[Metric(key=f"best.{metric}", value=best.evaluation[metric])],
        tags={BEST_RUN_TAG: best.run_id or "", BEST_METRIC_TAG: metric},
    )
