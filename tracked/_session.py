"""The parent-run lifecycle of one pipeline instance, and the state that travels with it."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

from tracked._capture import flatten, non_default_params, qualified_name, to_text
from tracked._compose import Composed, Composer
from tracked._config import is_strict, killed_by_env
from tracked._errors import TrackingError
from tracked._outer import outer_run_id
from tracked._records import FAILED, FINISHED, KILLED, Metric, StageRecord, now_ms
from tracked._report import notice, report_failure
from tracked._version import __version__
from tracked.backends.base import Backend

ERROR_TAG_LIMIT = 1000
COMPOSED_MODEL_NAME = "pipeline"


def default_run_name(instance: object) -> str:
    """Class name plus the hyperparameters that differ from their defaults.

    Two runs of one class with other settings then differ at a glance in the MLflow UI.
    """
    changed = non_default_params(instance)
    name = type(instance).__name__
    if not changed:
        return name
    inner = ", ".join(f"{key}={to_text(value)}" for key, value in changed.items())
    return truncate_name(f"{name}({inner})")


def truncate_name(name: str, limit: int = 250) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


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


# -- per-instance context ----------------------------------------------------------------------


class Frame:
    """One running stage call: its name, and what it assigned to ``self.operator``."""

    __slots__ = ("assigned", "name", "operator")

    def __init__(self, name: str) -> None:
        self.name = name
        self.operator: object = None
        self.assigned = False


class Context:
    """Tracking state of one pipeline instance, stored in its ``__dict__``.

    Pickling keeps only what a copy needs to go on logging under the right parent run: a
    copy made while a parent run is open logs its stages under that run (and never ends it);
    a copy made before starts a parent run of its own.
    """

    def __init__(self, owner: object | None = None, *, attached: dict[str, Any] | None = None):
        self._owner = weakref.ref(owner) if owner is not None else None
        self.killed = killed_by_env()
        self.session: Session | None = None
        #: The latest session that opened a parent run (kept after it ends).
        self.last_session: Session | None = None
        self.attached = attached
        self._lock = threading.Lock()
        self._local = threading.local()

    def owned_by(self, instance: object) -> bool:
        if self._owner is None:  # fresh from unpickling: it belongs to its first user
            self._owner = weakref.ref(instance)
            return True
        return self._owner() is instance

    def transferable(self) -> dict[str, Any] | None:
        """What a copy needs to log under this context's open parent run, if any."""
        session = self.session
        if session is not None and session.usable:
            return {
                "run_id": session.run_id,
                "experiment": session.experiment,
                "backend": session.backend,
            }
        return self.attached

    def split(self) -> Context:
        """A context for a copy of the owner, not yet owned by anyone."""
        return Context(attached=self.transferable())

    def __getstate__(self) -> dict[str, Any]:
        attached = self.transferable()
        if attached is not None and not _picklable_backend(attached["backend"]):
            attached = {**attached, "backend": None}
        return {"attached": attached}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(attached=state["attached"])  # type: ignore[misc]

    def stack(self) -> list[Frame]:
        """The stages running on this instance in the calling thread, innermost last."""
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def operator_assigned(self, value: object) -> None:
        """``self.operator = value`` ran in this thread: the running stages saw it."""
        for frame in getattr(self._local, "stack", ()):
            frame.operator = value
            frame.assigned = True

    def open_session(self, instance: object) -> Session:
        """The current session, started if needed; a new one after the last has ended."""
        with self._lock:
            session = self.session
            if session is None or session.ended:
                session = self.session = _build_session(instance, self.attached)
        session.start()
        if session.run_id is not None:
            self.last_session = session
        return session

    def close(self, status: str = FINISHED) -> None:
        """End the session; a copy attached to another's run detaches from it for good."""
        with self._lock:
            session, self.session = self.session, None
            self.attached = None
        if session is not None:
            session.end(status)


def _picklable_backend(backend: object) -> bool:
    from tracked.backends.memory import MemoryBackend

    return not isinstance(backend, MemoryBackend)


def context_for(instance: object) -> Context:
    """The instance's context, created (or split off from a shallow copy's) when needed."""
    from tracked._capture import CONTEXT_ATTRIBUTE

    state = instance.__dict__
    context = state.get(CONTEXT_ATTRIBUTE)
    if context is None or not context.owned_by(instance):
        attached = context.transferable() if context is not None else None
        context = state[CONTEXT_ATTRIBUTE] = Context(instance, attached=attached)
    return context


def _build_session(instance: Any, attached: dict[str, Any] | None) -> Session:
    strict = is_strict(instance)
    experiment = getattr(instance, "experiment", None)
    if not isinstance(experiment, str):
        # None, or a hyperparameter named `experiment` hiding the class attribute.
        experiment = None
    run_name = getattr(instance, "run_name", None) or default_run_name(instance)
    outer = None
    try:
        if attached is not None:
            experiment = attached["experiment"]
            backend = attached["backend"] or _resolve_backend(instance)
        else:
            backend = _resolve_backend(instance)
            outer = outer_run_id(instance, backend)
        params = flatten(instance.get_params(deep=True)) if attached is None else {}
    except TrackingError:
        raise
    except Exception as exc:
        report_failure("connect to the tracking backend", exc, strict=strict)
        backend, params = None, {}
    if experiment is None and outer is None:
        experiment = type(instance).__name__
    tags = {
        "tracked.pipeline": qualified_name(instance),
        "tracked.version": __version__,
        **_library_versions(),
    }
    return Session(
        backend=backend,
        experiment=experiment,
        run_name=run_name,
        params=params,
        tags=tags,
        strict=strict,
        run_id=attached["run_id"] if attached is not None else None,
        outer_run_id=outer,
        registered_model_name=getattr(instance, "registered_model_name", None),
        serialization_format=getattr(instance, "serialization_format", "skops"),
    )


def _library_versions() -> dict[str, str]:
    """Versions of the libraries a fitted model depends on, without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package, tag in (
        ("scikit-learn", "tracked.sklearn_version"),
        ("numpy", "tracked.numpy_version"),
    ):
        with contextlib.suppress(PackageNotFoundError):
            versions[tag] = version(package)
    return versions


def _resolve_backend(instance: Any) -> Backend:
    from tracked.backends.base import is_backend

    backend = getattr(instance, "backend", None)
    if backend is not None:
        if not is_backend(backend):
            msg = (
                f"{type(instance).__name__}.backend is {backend!r}, not a tracking backend; "
                "a hyperparameter or attribute named `backend` hides TrackedPipeline.backend: "
                "rename it"
            )
            raise TypeError(msg)
        return backend
    from tracked.backends.mlflow import shared_backend

    uri = getattr(instance, "tracking_uri", None)
    if uri is not None and not isinstance(uri, str):
        msg = f"{type(instance).__name__}.tracking_uri must be a string or None, not {uri!r}"
        raise TypeError(msg)
    return shared_backend(uri)


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
