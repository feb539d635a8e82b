"""Case 2: the demo's ``IrisPipeline`` tracked with default settings, in the child's store.

Only ``tracking_uri`` is set (to the child's temporary sqlite store), as the issue asks.
``workflow``: the demo's pass, ``with`` exit included (that ends the parent run; with a
background writer it is also where writes are flushed). mlflow is imported lazily by the
first stage call, so its import and the creation of the fresh store fall inside this time.
``overhead``: each stage call timed on a tracked instance and on an untracked one, in one
process, alternating passes; each tracked pass is its own parent run (``with pipe:``), and
the time of its ``with`` exit (the writer draining: the flush) is ``exit_ms``.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from cases.common import (
    Options,
    iris_pipeline_class,
    load_data,
    paired_overhead,
    run_demo,
    setup_seconds,
    timed_stage_pass,
)

#: Timed tracked + untracked passes per overhead process (after one warm-up pass each).
PASSES = 10


def run(mode: str, options: Options) -> dict[str, Any]:
    if mode == "workflow":
        return workflow(options)
    if mode == "overhead":
        return overhead(options)
    msg = f"tracked has no mode {mode!r}"
    raise ValueError(msg)


def tracked_pipeline(options: Options, configure: Any = None) -> Any:
    """A tracked ``IrisPipeline`` writing to the child's store; ``configure(pipe)`` if given."""
    pipe = iris_pipeline_class()()
    pipe.tracking_uri = options.store
    if configure is not None:
        configure(pipe)
    return pipe


def workflow(options: Options, configure: Any = None) -> dict[str, Any]:
    data = load_data(options.rows)
    pipe = tracked_pipeline(options, configure)
    setup = setup_seconds(options)
    seconds, accuracy = run_demo(pipe, data)
    return {
        "workflow_s": seconds,
        "setup_s": setup,
        "accuracy": accuracy,
        **recorded(options.store, pipe.run_id),
    }


def overhead(options: Options, configure: Any = None) -> dict[str, Any]:
    data = load_data(options.rows)
    pipeline_class = iris_pipeline_class()
    on = tracked_pipeline(options, configure)
    off = pipeline_class()
    off.tracking = False

    exits: list[float] = []

    def tracked_pass() -> dict[str, float]:
        with on:
            times = timed_stage_pass(on, data)
            started = time.perf_counter()
        # The `with` exit ends the parent run and waits for the writer to drain.
        exits.append(time.perf_counter() - started)
        return times

    def untracked_pass() -> dict[str, float]:
        with off:
            return timed_stage_pass(off, data)

    figures = paired_overhead(tracked_pass, untracked_pass, options.passes or PASSES)
    figures["exit_ms"] = statistics.median(exits[1:] or exits) * 1e3  # not the warm-up's
    return figures


def recorded(store: str, run_id: str | None) -> dict[str, Any]:
    """What the store holds for the parent run (read after the clock stopped): a check that
    the benchmark timed real writes."""
    from mlflow import MlflowClient

    if run_id is None:
        return {"child_runs": 0, "models": 0}
    client = MlflowClient(store)
    parent = client.get_run(run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'"
    )
    models = client.search_logged_models([parent.info.experiment_id])
    return {"child_runs": len(children), "models": len(models)}
