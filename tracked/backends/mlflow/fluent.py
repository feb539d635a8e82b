"""Runs a pipeline's parent run nests under: what the user already has open.

An active fluent run in the calling thread (``with mlflow.start_run():`` in a notebook), or
``MLFLOW_RUN_ID`` in the environment (set by ``mlflow run`` and many schedulers). mlflow is
never imported just to look: if it is not imported, no fluent run can be active.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from tracked.backends.mlflow.client import (
    absolute_store_uri,
    default_tracking_uri,
    load_mlflow,
    mlflow_imported,
)


def outer_run_id(store_uri: str) -> str | None:
    """The run open in the calling thread (or ``MLFLOW_RUN_ID``) in store ``store_uri``."""
    if not mlflow_imported() and "MLFLOW_RUN_ID" not in os.environ:
        return None
    mlflow = load_mlflow()  # imported already, or needed to resolve MLFLOW_RUN_ID's store

    # The outer run lives in MLflow's own store: nesting across stores would dangle.
    if store_uri != absolute_store_uri(default_tracking_uri()):
        return None
    active = mlflow.active_run()
    if active is not None:
        return active.info.run_id
    return os.environ.get("MLFLOW_RUN_ID") or None


_pause_lock = threading.Lock()


_pause_depth = 0


_pause_context: Any = None


@contextlib.contextmanager
def autologging_paused() -> Iterator[None]:
    """Pause MLflow autologging (``mlflow.sklearn.autolog()``) while a stage runs.

    The stage's own capture is the record; autolog would log the same fit again under a
    stray run. MLflow's ``disable_autologging()`` flips one global flag, so concurrent stages
    share one pause through a counter: autologging resumes when the last stage ends. Calls
    outside stages in other threads are paused meanwhile too.
    """
    if not mlflow_imported():  # autolog cannot be on
        yield
        return
    _enter_pause()
    try:
        yield
    finally:
        _leave_pause()


def _enter_pause() -> None:
    global _pause_depth, _pause_context
    with _pause_lock:
        if _pause_depth == 0:
            from mlflow.utils.autologging_utils import disable_autologging

            _pause_context = disable_autologging()
            _pause_context.__enter__()
        _pause_depth += 1


def _leave_pause() -> None:
    global _pause_depth, _pause_context
    with _pause_lock:
        _pause_depth -= 1
        if _pause_depth == 0 and _pause_context is not None:
            context, _pause_context = _pause_context, None
            context.__exit__(None, None, None)
