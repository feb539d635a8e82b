"""Parameter sweeps: one pipeline instance per configuration, in parallel, in a group run."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
from attrs import frozen

from tracked._group import group
from tracked.core.names import BEST_METRIC_TAG, BEST_RUN_TAG, LEFT_OUT_TAG
from tracked.core.ranking import lower_is_better
from tracked.core.report import report_failure
from tracked.core.settings import class_setting
from tracked.core.text import to_text
from tracked.core.values import Metric


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
    #: The stages' heavy parts its writer kept aside (``tracked.spool.aside.Aside``).
    aside: tuple[Any, ...] = ()


def _run_one(fn: Callable[[Any], Any], pipeline: Any) -> Outcome:
    # Runs in the worker: the instance carries its group, so its parent run nests under it.
    with pipeline:
        result = fn(pipeline)
    session = pipeline._last_session()
    if session is None:
        return Outcome(result, pipeline.run_id, {})
    evaluation = dict(session.evaluation)
    return Outcome(result, pipeline.run_id, evaluation, tuple(session.kept_aside))


class _Best:
    """The best configuration so far, by the first evaluation metric logged, and its
    kept-aside parts; the other configurations' parts are dropped as they arrive."""

    def __init__(self) -> None:
        self.metric: str | None = None
        self.outcome: Outcome | None = None
        self.params: dict[str, Any] | None = None

    def offer(self, outcome: Outcome, params: dict[str, Any]) -> Outcome:
        """Take ``outcome`` (in grid order); return it without its kept-aside parts."""
        if outcome.evaluation:
            if self.metric is None:
                self.metric = next(iter(outcome.evaluation))
            value = outcome.evaluation.get(self.metric)
            if value is not None and (self.outcome is None or self._beats(value)):
                self.outcome, self.params = outcome, params
        return attrs.evolve(outcome, aside=()) if outcome.aside else outcome

    def _beats(self, value: float) -> bool:
        assert self.outcome is not None and self.metric is not None
        best = self.outcome.evaluation[self.metric]
        return value < best if lower_is_better(self.metric) else value > best


def sweep(
    pipeline_class: type,
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Sequence[Any]]],
    fn: Callable[[Any], Any],
    n_jobs: int | None = None,
    backend: str | None = None,
    name: str | None = None,
    *,
    progress: bool | None = None,
    light: bool = True,
) -> SweepResults:
    """Run ``fn(pipeline)`` for every combination of ``param_grid``, in parallel, in a group.

    Each combination gets its own instance, ``pipeline_class(**params)``, created here and
    shipped to a joblib worker; ``fn`` runs inside ``with pipeline:``. The group run (named
    ``name``, in the class's experiment and store) is tagged with the best configuration by
    the first evaluation metric the pipelines logged (``tracked.best_run_id``, params
    ``best.<name>`` and metric ``best.<metric>``).

    Every configuration's runs get their params, metrics and tags, and its parent run the
    composed model. ``light`` (the default): the stages' evaluation pictures, artifact files,
    datasets and models are logged for the best configuration only, after the sweep; the
    other configurations' stage runs say what they left out in tag ``tracked.left_out``.

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
        light: pictures, files, datasets and stage models for the best configuration only
            (False: for every configuration, as outside a sweep).

    Returns:
        ``fn``'s results in grid order, a list with attributes ``run_id`` (the group run),
            ``best_run_id``, ``best_params`` and ``best_metric``.
    """
    from sklearn.model_selection import ParameterGrid

    grid = list(ParameterGrid(param_grid))
    if not class_setting(pipeline_class, "tracking"):  # untracked: the same work, no group
        return _sweep_untracked(pipeline_class, grid, fn, n_jobs, backend)
    best = _Best()
    sweep_group = _group_of(pipeline_class, name)
    sweep_group.keep_aside = light
    with sweep_group as run:
        pipelines = [pipeline_class(**params) for params in grid]
        collected = _run_all(pipelines, fn, n_jobs, backend, progress)
        results = SweepResults(
            best.offer(o, p).result for o, p in zip(collected, grid, strict=True)
        )
        results.run_id = run.run_id
        _tag_best(run, best, results)
        _log_kept_aside(run, best)
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
    experiment = class_setting(pipeline_class, "experiment") or pipeline_class.__name__
    return group(
        name or f"{pipeline_class.__name__} sweep",
        experiment=experiment,
        tracking_uri=class_setting(pipeline_class, "tracking_uri"),
        backend=class_setting(pipeline_class, "backend"),
    )


def _run_all(
    pipelines: list[Any],
    fn: Callable[[Any], Any],
    n_jobs: int | None,
    backend: str | None,
    progress: bool | None,
) -> Iterator[Outcome]:
    """``fn`` on every pipeline in joblib's workers: the outcomes, in grid order, as they
    come (so that the sweep holds the kept-aside parts of the best so far only)."""
    from joblib import Parallel, delayed

    # parallel_config, unlike Parallel(backend=...), also knows the backends registered
    # on demand: dask (with a distributed client) and ray.
    with _parallel(backend, n_jobs):
        outcomes = Parallel(return_as="generator")(
            delayed(_run_one)(fn, pipeline) for pipeline in pipelines
        )
        yield from _with_progress(outcomes, len(pipelines), progress)


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


def _tag_best(run: group, best: _Best, results: SweepResults) -> None:
    outcome, metric = best.outcome, best.metric
    if outcome is None or metric is None:
        return
    results.best_run_id, results.best_params = outcome.run_id, best.params
    results.best_metric = {metric: outcome.evaluation[metric]}
    run.log(
        params={f"best.{key}": to_text(value) for key, value in (best.params or {}).items()},
        metrics=[Metric(key=f"best.{metric}", value=outcome.evaluation[metric])],
        tags={BEST_RUN_TAG: outcome.run_id or "", BEST_METRIC_TAG: metric},
    )


def _log_kept_aside(run: group, best: _Best) -> None:
    """Log the best configuration's pictures, files, datasets and stage models, which its
    writer kept aside (``tracked.spool.aside``); its stage runs then left nothing out."""
    kept = list(best.outcome.aside) if best.outcome is not None else []
    if not kept or run.ref is None:
        return
    from tracked.spool import aside

    backend = run.ref.resolve_backend()
    try:
        failures = aside.write(backend, kept)
        for run_id in dict.fromkeys(item.run_id for item in kept):
            backend.log(run_id, tags={LEFT_OUT_TAG: BEST_LEFT_NOTHING})
    except Exception as exc:
        failures = [("log the best configuration's pictures, files and models", exc)]
    for what, exc in failures:
        report_failure(what, exc, strict=run.strict)


#: The ``tracked.left_out`` tag of the best configuration's stage runs, once their parts
#: are logged.
BEST_LEFT_NOTHING = "nothing: the sweep's best configuration (logged after the sweep)"
