"""Case 1: the demo's ``IrisPipeline`` with ``tracking = False``.

``workflow``: the demo's train + predict pass; also reports whether mlflow got imported
(tracking off must never import it). ``overhead``: the per-call cost of a stage with tracking
off against a plain method call, in nanoseconds, with ``benchmarks/overhead.py``'s variants.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path
from typing import Any

from cases.common import (
    Options,
    iris_pipeline_class,
    load_data,
    mlflow_imported,
    run_demo,
    setup_seconds,
)

#: Calls per timing and timings per variant of the tracking-off measurement (best of).
OFF_CALLS = 200_000
OFF_REPEATS = 5


def run(mode: str, options: Options) -> dict[str, Any]:
    if mode == "workflow":
        return workflow(options)
    if mode == "overhead":
        return tracking_off_ns()
    msg = f"untracked has no mode {mode!r}"
    raise ValueError(msg)


def workflow(options: Options) -> dict[str, Any]:
    pipeline_class = iris_pipeline_class()
    data = load_data(options.rows)
    pipe = pipeline_class()
    pipe.tracking = False
    setup = setup_seconds(options)
    seconds, accuracy = run_demo(pipe, data)
    return {
        "workflow_s": seconds,
        "setup_s": setup,
        "accuracy": accuracy,
        "mlflow_imported": mlflow_imported(),
    }


def tracking_off_ns() -> dict[str, Any]:
    """ns per call of each variant of benchmarks/overhead.py, best of ``OFF_REPEATS``.

    The variants come from ``overhead.build()``; they are timed alternating, as there.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import overhead

    variants = overhead.build()
    best = {name: float("inf") for name in variants}
    for _ in range(OFF_REPEATS):
        for name, obj in variants.items():
            seconds = timeit.timeit(lambda o=obj: o.stage_method(1), number=OFF_CALLS)
            best[name] = min(best[name], seconds / OFF_CALLS * 1e9)
    plain = best["plain method"]
    return {
        "plain_ns": plain,
        "off_ns": best["tracking = False"] - plain,
        "env_off_ns": best["TRACKED_ENABLED=0"] - plain,
        "mlflow_imported": mlflow_imported(),
    }
