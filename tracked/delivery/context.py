"""Per-instance tracking state, and how an instance's session is built from it."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from tracked._version import __version__
from tracked.backends.base import Backend, capabilities
from tracked.core.config import killed_by_env
from tracked.core.errors import TrackingError
from tracked.core.names import (
    CONTEXT_ATTRIBUTE,
    LOCAL_PREFIX,
    NUMPY_VERSION_TAG,
    PIPELINE_TAG,
    SKLEARN_VERSION_TAG,
    VERSION_TAG,
)
from tracked.core.params import flatten
from tracked.core.report import report_failure
from tracked.core.settings import Settings
from tracked.core.text import qualified_name
from tracked.core.values import FINISHED
from tracked.delivery import runtime
from tracked.delivery.groups import CloneGroup, GroupRef
from tracked.delivery.registry import REGISTRY
from tracked.delivery.session import Composition, Session, default_run_name


class Frame:
    """One running stage call: its name, what it assigned to ``self.operator``, and the
    records of the stages it called (``(session, record, their children, composed step)``),
    which are written as its nested runs once its own record is."""

    __slots__ = ("assigned", "children", "name", "operator")

    def __init__(self, name: str) -> None:
        self.name = name
        self.operator: object = None
        self.assigned = False
        self.children: list[tuple[Any, Any, list[Any], int]] = []


#: The running stage calls of every pipeline instance, per context id, innermost last. A
#: context variable, not a thread-local: asyncio tasks interleave on one thread, and each
#: must see only its own calls (new threads start empty, as they did with a thread-local).
#: Values are never mutated, only replaced, so copies of the context never share a stack.
_stacks: contextvars.ContextVar[Mapping[int, tuple[Frame, ...]]] = contextvars.ContextVar(
    "tracked_stage_stacks", default=MappingProxyType({})
)


class Context:
    """Tracking state of one pipeline instance, stored in its ``__dict__``.

    Captured when the instance is created: the environment's kill switch and the group the
    instance belongs to. Pickling keeps only what a copy needs to go on logging under the
    right parent run: a copy made while a parent run is open logs its stages under that run
    (and never ends it); a copy made before starts a parent run of its own (in the group).
    """

    def __init__(
        self,
        owner: object | None = None,
        *,
        attached: dict[str, Any] | None = None,
        group: GroupRef | None = None,
    ) -> None:
        self._owner = weakref.ref(owner) if owner is not None else None
        self.killed = killed_by_env()
        self.session: Session | None = None
        #: The latest session that opened a parent run (kept after it ends).
        self.last_session: Session | None = None
        self.attached = attached
        self.group = group
        self._lock = threading.Lock()
        #: The context this one's instance was cloned from (``sklearn.base.clone``).
        self._origin: weakref.ref[Context] | None = None
        #: Sessions of clones whose parent runs nest under this one's: ended with it (held
        #: strongly: the clones of ``cross_val_score`` are gone before it ends).
        self._dependents: set[Session] = set()
        #: The group run of this instance's clones that open runs outside its own.
        self._clone_group: CloneGroup | None = None
        #: Ends the open parent run when the instance is garbage-collected (see ``watch``).
        self._finalizer: weakref.finalize | None = None
        #: The open session was opened (or adopted) by a ``with`` block, which ends it.
        self._explicit = False
        #: ``fit`` calls of the instance running (``fitting``): only the outermost counts.
        self._fits = 0

    def clone_of(self, origin: Context) -> None:
        """This context's instance is a clone of ``origin``'s: while ``origin``'s parent run is
        open, this one's parent run nests under it and ends when it ends."""
        self._origin = weakref.ref(origin)

    def _open_origin(self) -> Session | None:
        """The open session of the instance this one was cloned from, if any."""
        origin = self._origin() if self._origin is not None else None
        if origin is None:
            return None
        session = origin.session
        return session if session is not None and session.usable and session.owned else None

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
        origin = self._origin() if self._origin is not None else None
        if self.attached is None and origin is not None and self._open_origin() is not None:
            # A clone shipped elsewhere (cross_val_score's workers) before it opened a run of
            # its own: there, it logs under the run it was cloned in, as a copy does.
            return origin.transferable()
        return self.attached

    def split(self) -> Context:
        """A context for a copy of the owner, not yet owned by anyone."""
        return Context(attached=self.transferable(), group=self.group)

    def __getstate__(self) -> dict[str, Any]:
        attached = self.transferable()
        if attached is not None and not _picklable_backend(attached["backend"]):
            attached = {**attached, "backend": None}
        return {"attached": attached, "group": self.group}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(attached=state["attached"], group=state.get("group"))  # type: ignore[misc]

    def stack(self) -> tuple[Frame, ...]:
        """The stages running on this instance in the calling thread (or asyncio task),
        innermost last."""
        return _stacks.get().get(id(self), ())

    def push(self, frame: Frame) -> contextvars.Token[Mapping[int, tuple[Frame, ...]]]:
        """``frame`` runs now, inside the running ones; give the token to ``pop``."""
        stacks = _stacks.get()
        return _stacks.set({**stacks, id(self): (*stacks.get(id(self), ()), frame)})

    def pop(self, token: contextvars.Token[Mapping[int, tuple[Frame, ...]]]) -> None:
        _stacks.reset(token)

    def operator_assigned(self, value: object) -> None:
        """``self.operator = value`` ran: the innermost running stage assigned it. Stages
        that called it assigned nothing by that (they record only what they did)."""
        stack = self.stack()
        if stack:
            stack[-1].operator = value
            stack[-1].assigned = True

    def open_session(
        self,
        instance: object,
        composer: Callable[[], Composition],
        *,
        explicit: bool = False,
    ) -> Session:
        """The current session, started if needed; a new one after the last has ended.

        ``composer`` makes the new session's composer (the recording layer's ``Composer``);
        ``explicit``: a ``with`` block opens it (and will end it).
        """
        origin = None
        if REGISTRY.abandoned or REGISTRY.clone_groups:
            runtime.end_done_with()
        with self._lock:
            session = self.session
            if session is None or session.ended:
                self._explicit = False
                origin = self._open_origin() if self.attached is None else None
                # A clone opened by a stage call (a search's, a fold's) joins its origin's
                # clone group; one the user opens with `with` is a run of its own.
                family = None
                if origin is None and self.attached is None and not explicit:
                    family = self._family()
                session = self.session = build_session(
                    instance,
                    self.attached,
                    self.group,
                    origin=origin,
                    family=family,
                    composer=composer(),
                )
                group = family._clone_group if family is not None else None
                if group is not None and session.outer_run_id == group.run_id:
                    group.joined(session)
            self._explicit = self._explicit or explicit
        if origin is not None and session.outer_run_id is not None:
            origin_context = self._origin() if self._origin is not None else None
            if origin_context is not None:
                origin_context._dependents.add(session)
        session.start()
        if session.started:
            self.last_session = session
            self.watch(instance)
        return session

    @contextlib.contextmanager
    def fitting(self) -> Iterator[None]:
        """Around a scikit-learn ``fit`` of the instance: when it is the outermost one and
        no stage runs, a parent run that stage calls opened outside a ``with`` block is the
        previous fit's, and ends (without waiting): this fit's stages open a new one."""
        if self._fits == 0 and not self.stack():
            session = self.session
            if session is not None and session.started and session.owned and not self._explicit:
                self.close(FINISHED, wait=False)
        self._fits += 1
        try:
            yield
        finally:
            self._fits -= 1

    def _family(self) -> Context | None:
        """The context of the instance this one was cloned from, while it lives."""
        return self._origin() if self._origin is not None else None

    def watch(self, instance: object) -> None:
        """End the instance's open parent run when the instance is garbage-collected: a
        search's clone, a fold's, is done with then (not only at interpreter exit)."""
        if self._finalizer is not None or not self.owned_by(instance):
            return
        # The finalizer may run in any thread at any allocation: it only queues this context.
        self._finalizer = weakref.finalize(instance, REGISTRY.abandoned.append, self)
        self._finalizer.atexit = False  # at exit, the runtime ends every open run itself

    def clone_group_run(
        self,
        instance: object,
        backend: Backend,
        experiment: str | None,
        parent_run_id: str | None,
        strict: bool,
    ) -> str | None:
        """The id of the group run that ``instance``, a clone of this context's instance,
        nests its parent run under; started with the first clone (None: none could be)."""
        with self._lock:
            group = self._clone_group
            if group is not None and not group.ended and group.backend is backend:
                return group.run_id
            owner = self._owner() if self._owner is not None else None
            if owner is None:
                return None
            name = f"{default_run_name(owner)} clones"
            if experiment is None and parent_run_id is None:
                experiment = type(instance).__name__
            group = CloneGroup.start(
                backend,
                experiment=experiment,
                parent_run_id=parent_run_id,
                name=name,
                pipeline=qualified_name(instance),
                strict=strict,
            )
            if group is None:
                return None
            self._clone_group = group
            finalizer = weakref.finalize(owner, group.mark_origin_gone)
            finalizer.atexit = False
            return group.run_id

    def close(self, status: str = FINISHED, *, wait: bool = True) -> None:
        """End the session; a copy attached to another's run detaches from it for good.

        Tracking failures are raised (strict mode) only when the run ends FINISHED: an
        exception that ended the block is the user's, and is never replaced. ``wait=False``
        hands the ends on without waiting for the writer (see ``Session.end``).
        """
        dependents, self._dependents = self._dependents, set()
        for dependent in dependents:
            # Clones nested under this parent run end with it (first: they are inside it).
            if not dependent.ended:
                with contextlib.suppress(Exception):
                    dependent.end(status, may_raise=False, wait=wait)
        with self._lock:
            session, self.session = self.session, None
            self.attached = None
        if session is not None:
            session.end(status, may_raise=status == FINISHED, wait=wait)


def _picklable_backend(backend: object) -> bool:
    return capabilities(backend).picklable


def context_for(instance: object) -> Context:
    """The instance's context, created (or split off from a shallow copy's) when needed."""
    state = instance.__dict__
    context = state.get(CONTEXT_ATTRIBUTE)
    if context is None or not context.owned_by(instance):
        if context is not None:
            context = context.split()
            context.owned_by(instance)
        else:
            context = Context(instance)
        state[CONTEXT_ATTRIBUTE] = context
    return context


def build_session(
    instance: Any,
    attached: dict[str, Any] | None,
    group: GroupRef | None = None,
    *,
    origin: Session | None = None,
    family: Context | None = None,
    composer: Composition,
) -> Session:
    """A session for ``instance``: its store, experiment, run name, params and outer run.

    The parent run nests under, in this order: the run a copy is attached to (it logs into
    it), the open parent run of the instance it was cloned from (``origin``), the instance's
    group, the calling thread's active MLflow run or ``MLFLOW_RUN_ID``. A clone whose origin
    has no open run (``family``: the origin's context) nests under the group run of the
    origin's clones, itself placed where the clone's run would have been.
    """
    settings = Settings.of(instance)
    experiment = settings.experiment
    run_name = settings.run_name or default_run_name(instance)
    outer = None
    try:
        if attached is not None:
            experiment = attached["experiment"]
            backend = attached["backend"] or _resolve_backend(instance, settings, group)
        else:
            backend, outer, experiment = _placement(instance, settings, group, origin)
            if family is not None:
                grouped = family.clone_group_run(
                    instance, backend, experiment, outer, settings.strict
                )
                outer = grouped if grouped is not None else outer
        where = f"pipeline {type(instance).__name__}"
        params = flatten(instance.get_params(deep=True), where=where) if attached is None else {}
    except TrackingError:
        raise
    except Exception as exc:
        report_failure("connect to the tracking backend", exc, strict=settings.strict)
        backend, params = None, {}
    if experiment is None and outer is None:
        experiment = type(instance).__name__
    return Session(
        backend=backend,
        experiment=experiment,
        run_name=run_name,
        params=params,
        tags=_parent_tags(instance),
        settings=settings,
        run_id=attached["run_id"] if attached is not None else None,
        outer_run_id=outer,
        composer=composer,
        # Nested in a sweep's group: one of its configurations (not a pipeline the sweep's
        # function opened inside it, nesting under the configuration's run).
        keep_aside=bool(group and outer == group.run_id and getattr(group, "keep_aside", False)),
    )


def _placement(
    instance: Any, settings: Settings, group: GroupRef | None, origin: Session | None
) -> tuple[Any, str | None, str | None]:
    """The backend of an instance's own parent run, the run it nests under and its
    experiment (the one the settings name, else the outer run's)."""
    experiment = settings.experiment
    backend = _resolve_backend(instance, settings, group)
    nest = _clone_parent(origin, backend)
    if nest is not None:
        return backend, nest, experiment or origin.experiment  # type: ignore[union-attr]
    if group is not None and backend is group.resolve_backend():
        return backend, group.run_id, experiment or group.experiment
    return backend, outer_run_of(backend, nest=settings.nest_under_active_run), experiment


def _parent_tags(instance: object) -> dict[str, str]:
    """The tags of every parent run: the pipeline class, tracked's version and those of the
    libraries a fitted model depends on."""
    return {
        PIPELINE_TAG: qualified_name(instance),
        VERSION_TAG: __version__,
        **_library_versions(),
    }


def outer_run_of(backend: object, *, nest: bool = True) -> str | None:
    """The run the caller has open in the backend's store (``nest``: the setting
    ``nest_under_active_run``)."""
    if not nest:
        return None
    find = capabilities(backend).outer_run_id
    return find() if find is not None else None


def _clone_parent(origin: Session | None, backend: Backend) -> str | None:
    """The run a clone's parent run nests under: the store id of the parent run of the
    instance it was cloned from, while that is open in the same store."""
    if origin is None or not origin.usable or origin.backend is not backend:
        return None
    run_id = origin.run_id
    if run_id is None or run_id.startswith(LOCAL_PREFIX):
        return None  # only in the spool: a store id is needed to nest under it
    return run_id


@functools.cache
def _library_versions() -> dict[str, str]:
    """Versions of the libraries a fitted model depends on, without importing them (read
    once per process: each lookup scans the installed distributions)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package, tag in (
        ("scikit-learn", SKLEARN_VERSION_TAG),
        ("numpy", NUMPY_VERSION_TAG),
    ):
        with contextlib.suppress(PackageNotFoundError):
            versions[tag] = version(package)
    return versions


def _resolve_backend(instance: Any, settings: Settings, group: GroupRef | None = None) -> Backend:
    """The instance's own store if it sets one, else its group's, else MLflow's default."""
    from tracked.backends.base import is_backend

    backend = settings.backend
    if backend is not None:
        if not is_backend(backend):
            msg = (
                f"{type(instance).__name__}.backend is {backend!r}, not a tracking backend "
                "(a value set on the class after it was defined is not checked there)"
            )
            raise TypeError(msg)
        return backend
    from tracked.backends.mlflow.backend import shared_backend

    uri = settings.tracking_uri
    if uri is not None and not isinstance(uri, str):
        msg = f"{type(instance).__name__}.tracking_uri must be a string or None, not {uri!r}"
        raise TypeError(msg)
    if uri is None and group is not None:
        return group.resolve_backend()
    return shared_backend(uri)
