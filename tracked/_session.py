"""The parent-run lifecycle of one pipeline instance, and the state that travels with it."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from tracked._capture import params_text, shorten
from tracked._compose import Composed, Composer
from tracked._records import FAILED, FINISHED, KILLED, Metric, StageRecord, now_ms
from tracked._report import notice, report_failure
from tracked.backends.base import Backend

ERROR_TAG_LIMIT = 1000
COMPOSED_MODEL_NAME = "pipeline"


def default_run_name(instance: object) -> str:
    """Class name plus the hyperparameters that differ from their defaults.

    Two runs of one class with other settings then differ at a glance in the MLflow UI.
    """
    inner = params_text(instance)
    name = type(instance).__name__
    return shorten(f"{name}({inner})", 250) if inner else name


class Session:
    """One parent run: opened once, given stage records, ended once.

    All backend failures are reported through ``report_failure``; a session whose parent run
    could not be created is *broken* and records nothing more (it does not retry on every
    stage call against a store that is away).
    """

    def __init__(
        self,
        *,
        backend: Backend | None,
        experiment: str | None,
        run_name: str,
        params: dict[str, str],
        tags: dict[str, str],
        strict: bool,
        run_id: str | None = None,
        outer_run_id: str | None = None,
        registered_model_name: str | None = None,
        serialization_format: str = "skops",
    ) -> None:
        self.backend = backend
        #: None: the experiment of ``outer_run_id``, the run this parent run nests under.
        self.experiment = experiment
        self.outer_run_id = outer_run_id
        self.run_name = run_name
        self.params = params
        self.tags = tags
        self.strict = strict
        #: False for a copy that logs under a parent run someone else opened and will end.
        self.owned = run_id is None
        #: A forked child inherits this object; only the process that opened the run ends it.
        self.pid = os.getpid()
        self.run_id = run_id
        self.broken = backend is None
        self.ended = False
        self.registered_model_name = registered_model_name
        self.serialization_format = serialization_format
        self.composer = Composer()
        self.total_duration_s = 0.0
        #: The latest evaluation metrics on the parent run (a prediction pass given y).
        self.evaluation: dict[str, float] = {}
        #: URI of the newest composed model, and its registry version (name, version).
        self.model_uri: str | None = None
        self.model_version: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._steps: dict[str, int] = {}

    @property
    def usable(self) -> bool:
        return not self.broken and not self.ended and self.run_id is not None

    def start(self) -> None:
        """Create the parent run and log the pipeline's params (once; thread-safe)."""
        with self._lock:
            if self.run_id is not None or self.broken or self.ended:
                return
            assert self.backend is not None
            try:
                run_id = self.backend.start_run(
                    experiment=self.experiment,
                    run_name=self.run_name,
                    parent_run_id=self.outer_run_id,
                    tags=self.tags,
                )
            except Exception as exc:
                self.broken = True
                report_failure(
                    f"start a parent run in experiment {self.experiment or 'of the outer run'!r} "
                    "(nothing more is recorded for this run)",
                    exc,
                    strict=self.strict,
                )
                return
            self.run_id = run_id
            _open_sessions.add(self)
        if self.params:
            self._attempt("log the pipeline's params", self.backend.log, run_id, params=self.params)

    def next_step(self, series: str) -> int:
        """0, 1, 2, ... per ``series``: the step of repeated evaluations on the parent."""
        with self._lock:
            step = self._steps.get(series, 0)
            self._steps[series] = step + 1
            return step

    def write_stage(self, record: StageRecord, *, may_raise: bool = True) -> None:
        """Write ``record`` as a child run of this session's parent run."""
        if not self.usable:
            return
        assert self.backend is not None and self.run_id is not None
        backend = self.backend
        with self._lock:
            self.total_duration_s += record.duration_s
        failures: list[tuple[str, BaseException]] = []
        what = f"record stage {record.stage!r}"
        try:
            child = backend.start_run(
                experiment=self.experiment,
                run_name=record.run_name,
                parent_run_id=self.run_id,
                tags=record.tags,
                start_time=record.start_ms,
            )
        except Exception as exc:
            report_failure(what, exc, strict=self.strict, may_raise=may_raise)
            return
        try:
            if record.params or record.metrics:
                try:
                    backend.log(child, params=record.params, metrics=record.metrics)
                except Exception as exc:
                    failures.append((f"log params and metrics of stage {record.stage!r}", exc))
            for name, content in record.artifacts.items():
                try:
                    backend.log_artifact(child, name, content)
                except Exception as exc:
                    failures.append((f"log {name} of stage {record.stage!r}", exc))
            for summary, context in record.datasets:
                try:
                    backend.log_dataset(
                        child, summary, context=context, name=f"{record.stage}.input"
                    )
                except Exception as exc:
                    failures.append((f"log the input dataset of stage {record.stage!r}", exc))
            if record.model is not None:
                try:
                    backend.log_model(
                        child,
                        "model",
                        record.model,
                        serialization_format=self.serialization_format,
                    )
                except Exception as exc:
                    failures.append((f"log the model of stage {record.stage!r}", exc))
            if record.parent_metrics:
                try:
                    backend.log(self.run_id, metrics=record.parent_metrics)
                except Exception as exc:
                    failures.append(("log evaluation metrics on the parent run", exc))
            if record.parent_tags:
                try:
                    backend.log(self.run_id, tags=record.parent_tags)
                except Exception as exc:
                    failures.append(("tag the parent run", exc))
            if record.composed is not None:
                failures.extend(self._log_composed(record.composed))
            elif record.parent_metrics and not record.training:
                failures.extend(self._tag_version(record.parent_metrics))
            if record.parent_metrics and not record.training:
                self.evaluation = {m.key: m.value for m in record.parent_metrics}
        finally:
            try:
                backend.end_run(child, record.status, record.end_ms)
            except Exception as exc:
                failures.append((f"end the child run of stage {record.stage!r}", exc))
        for step, exc in failures:
            report_failure(step, exc, strict=self.strict, may_raise=may_raise)

    def _log_composed(self, composed: Composed) -> list[tuple[str, BaseException]]:
        """Log the composed workflow on the parent run as ``pipeline``; register it if asked."""
        assert self.backend is not None and self.run_id is not None
        try:
            self.model_uri = self.backend.log_model(
                self.run_id,
                COMPOSED_MODEL_NAME,
                composed.model,
                input_example=composed.input_example,
                serialization_format=self.serialization_format,
                step=self.composer.count - 1,
            )
        except Exception as exc:
            return [("log the composed `pipeline` model", exc)]
        if self.registered_model_name is None:
            return []
        try:
            version = self.backend.register_model(
                self.registered_model_name, self.model_uri, self.run_id
            )
        except Exception as exc:
            return [(f"register the model as {self.registered_model_name!r}", exc)]
        self.model_version = (self.registered_model_name, version)
        return []

    def _tag_version(self, metrics: tuple[Metric, ...]) -> list[tuple[str, BaseException]]:
        """Tag the newest registered version with evaluation metrics."""
        if self.model_version is None:
            return []
        assert self.backend is not None
        name, version = self.model_version
        try:
            self.backend.tag_model_version(
                name, version, {metric.key: repr(metric.value) for metric in metrics}
            )
        except Exception as exc:
            return [(f"tag version {version} of registered model {name!r}", exc)]
        return []

    def end(self, status: str = FINISHED) -> None:
        """End the parent run with ``status`` (once; a copy's session never ends the run)."""
        with self._lock:
            if self.ended:
                return
            self.ended = True
            _open_sessions.discard(self)
            if not self.owned or self.run_id is None or self.broken or self.pid != os.getpid():
                return
        if self.composer.fitted_kinds == {"transformer"}:
            notice(
                f"parent run {self.run_id} ends without a composed `pipeline` model: "
                "no estimator stage was fitted in it",
                key=f"no-composed:{self.run_id}",
                warn=False,
            )
        assert self.backend is not None
        total = Metric(key="total_stage_duration_s", value=self.total_duration_s)
        self._attempt(
            "log the total stage duration", self.backend.log, self.run_id, metrics=[total]
        )
        self._attempt("end the parent run", self.backend.end_run, self.run_id, status, now_ms())

    def _attempt(self, what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            call(*args, **kwargs)
        except Exception as exc:
            report_failure(what, exc, strict=self.strict)


def evaluation_metrics(values: dict[str, float], prefix: str, step: int) -> tuple[Metric, ...]:
    stamp = now_ms()
    return tuple(
        Metric(key=f"{prefix}{key}", value=value, step=step, timestamp=stamp)
        for key, value in values.items()
    )


# -- interpreter exit ----------------------------------------------------------------------------

_open_sessions: set[Session] = set()


def _exit_status() -> str:
    # Set by the interpreter when an exception ended the program.
    last = getattr(sys, "last_type", None)
    if last is None:
        return FINISHED
    return KILLED if issubclass(last, KeyboardInterrupt) else FAILED


def end_open_sessions(status: str | None = None) -> None:
    """End every parent run this process opened and left open (at interpreter exit)."""
    final = status or _exit_status()
    for session in list(_open_sessions):
        if session.pid != os.getpid():
            continue
        # Strict mode at exit: there is nowhere left to raise to.
        with contextlib.suppress(Exception):
            session.end(final)


def _forget_parent_sessions() -> None:
    # A forked child must neither end its parent's runs at exit nor keep them alive.
    _open_sessions.clear()


atexit.register(end_open_sessions)
os.register_at_fork(after_in_child=_forget_parent_sessions)
