"""Writing spooled entries to a store, step by step, each step at most once.

The background writer and ``tracked sync`` share this code: an entry (the start of a parent
run, one stage call, the end of a parent run) becomes a fixed list of steps; each step that
reaches the store is noted (``progress``), so that replaying again after an interruption
skips it. Runs get the tag ``tracked.local_run_id``: a replay that was interrupted between
creating a run and noting it finds the run again instead of creating a second one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import define, field

from tracked._records import LOCAL_PREFIX, VERIFIED_REASON_TAG, VERIFIED_TAG, Metric
from tracked._report import foreign_logs_quieted

LOCAL_ID_TAG = "tracked.local_run_id"
COMPOSED_MODEL_NAME = "pipeline"

#: Error codes that mean "the store cannot take this now", not "this is wrong". A backend
#: that knows its store's errors better says so itself (``backend.is_store_away``: the MLflow
#: backend's tells MLflow's INTERNAL_ERROR default from an outage).
_AWAY_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"})


def _bytes(content: Any) -> bytes:
    """An artifact's content: bytes, or drawn now from what it is made of (``render()``)."""
    return content if isinstance(content, bytes) else content.render()


def _raise(error: BaseException) -> None:
    raise error


class StoreAway(Exception):
    """The store did not take a step for reasons of its own (down, read-only, full)."""


def is_store_away(exc: BaseException) -> bool:
    """Whether ``exc`` says the store is away rather than that the data is wrong, for a
    backend that does not say (``backend.is_store_away``): connection errors, timeouts and
    full or read-only disks are ``OSError``s (requests' errors are too); or an away code.
    """
    if isinstance(exc, OSError):
        return True
    if getattr(exc, "error_code", None) in _AWAY_CODES:
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_store_away(cause)


def metrics_of(rows: list[list[Any]]) -> list[Metric]:
    return [Metric(key=k, value=v, step=s, timestamp=t) for k, v, s, t in rows]


def metric_rows(metrics: tuple[Metric, ...] | list[Metric]) -> list[list[Any]]:
    return [[m.key, m.value, m.step, m.timestamp] for m in metrics]


@define
class ReplayState:
    """What reached the store so far, for one session."""

    #: Local run id -> the store's run id.
    runs: dict[str, str] = field(factory=dict)
    #: (entry seq, step index) of the steps done.
    done: set[tuple[int, int]] = field(factory=set)
    model_uri: str | None = None
    #: The composed models (their ``composed_step``) that reached the store.
    composed: set[int] = field(factory=set)
    model_version: tuple[str, str] | None = None
    #: The latest evaluation metrics of a prediction pass (not kept in the spool).
    evaluation: dict[str, float] = field(factory=dict)

    @classmethod
    def from_progress(cls, events: list[dict[str, Any]]) -> ReplayState:
        state = cls()
        for event in events:
            state.apply(event)
        return state

    def apply(self, event: dict[str, Any]) -> None:
        self.done.add((event["seq"], event["step"]))
        if "run" in event:
            self.runs[event["run"]] = event["id"]
        if "model_uri" in event:
            self.model_uri = event["model_uri"]
        if "composed_step" in event:
            self.composed.add(event["composed_step"])
        if "version" in event:
            self.model_version = tuple(event["version"])  # type: ignore[assignment]

    def resolve(self, ref: str | None) -> str | None:
        """The store's id for a run reference (a store id already, or a local one)."""
        if ref is None or not ref.startswith(LOCAL_PREFIX):
            return ref
        try:
            return self.runs[ref]
        except KeyError:
            msg = f"run {ref} was never created in the store"
            raise LookupError(msg) from None


Step = tuple[str, Callable[[], dict[str, Any] | None]]


class Replayer:
    """Writes entries of one session to ``backend``.

    Args:
        header: the session's header (experiment, registered model name, format).
        state: what is done already; updated as steps are done.
        note: called with each progress event (to persist it) after the step is done.
        find_existing: look a run up by its local id before creating it (``tracked sync``).
        mark_failed: count a step that failed for the data's sake as done (the writer: its
            failure is reported, and retrying cannot help); ``tracked sync`` retries them.
        between_steps: called before each step after the first (the writer's pause).
    """

    #: The step index of the event that says all of an entry's steps are done.
    COMPLETE = -1

    def __init__(
        self,
        backend: Any,
        header: dict[str, Any],
        state: ReplayState,
        note: Callable[[dict[str, Any]], None],
        *,
        find_existing: bool = False,
        mark_failed: bool = True,
        between_steps: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend
        self.header = header
        self.state = state
        self.note = note
        self.find_existing = find_existing
        self.mark_failed = mark_failed
        self.between_steps = between_steps
        #: Runs this replayer created in the store (not found there again).
        self.created = 0
        self._is_away = getattr(backend, "is_store_away", None) or is_store_away

    def replay(self, entry: dict[str, Any], payload: Any) -> list[tuple[str, BaseException]]:
        """Do the entry's steps not done yet; return the failures that are the data's fault.

        Raises:
            StoreAway: the store is away; the steps from the failed one on are not done.
        """
        seq = entry["seq"]
        if (seq, self.COMPLETE) in self.state.done:
            return []
        failures: list[tuple[str, BaseException]] = []
        steps = self._steps(entry, payload or {})
        for index, (what, step) in enumerate(steps):
            if (seq, index) in self.state.done:
                continue
            if self.between_steps is not None and index:
                self.between_steps()
            try:
                with foreign_logs_quieted():  # the failure is ours to report, in one line
                    result = step()
            except Exception as exc:
                if self._is_away(exc):
                    raise StoreAway(what) from exc
                failures.append((what, exc))
                if index == 0 and entry["kind"] == "start_run":
                    return failures  # left for `tracked sync`, once the cause is fixed
                if index == 0 and entry["kind"] == "stage":
                    break  # the run was not created: its other steps have nowhere to go
                if self.mark_failed:
                    self._mark(seq, index, {})
                continue
            self._mark(seq, index, result if isinstance(result, dict) else {})
        if not failures or self.mark_failed:
            self._mark(seq, self.COMPLETE, {})
        return failures

    def _mark(self, seq: int, index: int, result: dict[str, Any]) -> None:
        event = {"seq": seq, "step": index, **result}
        self.state.apply(event)
        self.note(event)

    # -- the steps of each kind of entry ----------------------------------------------------

    def _steps(self, entry: dict[str, Any], payload: dict[str, Any]) -> list[Step]:
        kind = entry["kind"]
        if kind == "start_run":
            return self._start_steps(entry)
        if kind == "stage":
            return self._stage_steps(entry, payload)
        if kind == "end_run":
            return self._end_steps(entry)
        return []  # "detach": nothing to write

    def _create_run(self, entry: dict[str, Any], experiment: str | None) -> dict[str, Any]:
        local = entry["run"]
        # A stage called by another stage nests under that stage's run (created before it:
        # the caller's record is written first); under the parent run if that one failed.
        nested = entry.get("nested_under")
        if nested is not None and nested in self.state.runs:
            parent = self.state.runs[nested]
        else:
            parent = self._resolve_parent(entry.get("parent"), experiment)
        backend = self.backend
        if self.find_existing and callable(getattr(backend, "find_run", None)):
            found = backend.find_run(
                experiment=experiment, parent_run_id=parent, key=LOCAL_ID_TAG, value=local
            )
            if found is not None:
                return {"run": local, "id": found}
        tags = {**self.header.get("source_tags", {}), **entry.get("tags", {}), LOCAL_ID_TAG: local}
        run_id = backend.start_run(
            experiment=experiment,
            run_name=entry["run_name"],
            parent_run_id=parent,
            tags=tags,
            start_time=entry.get("start_ms"),
        )
        self.created += 1
        return {"run": local, "id": run_id}

    def _resolve_parent(self, ref: str | None, experiment: str | None) -> str | None:
        """The store id of a parent run; one created by an earlier sync (whose spool folder
        is gone) is found by its ``tracked.local_run_id`` tag."""
        try:
            return self.state.resolve(ref)
        except LookupError:
            find = getattr(self.backend, "find_run", None)
            if not (self.find_existing and callable(find) and experiment is not None):
                raise
            found = find(experiment=experiment, parent_run_id=None, key=LOCAL_ID_TAG, value=ref)
            if found is None:
                raise
            self.state.runs[ref] = found  # type: ignore[index]
            return found

    def _start_steps(self, entry: dict[str, Any]) -> list[Step]:
        experiment = entry.get("experiment")
        steps: list[Step] = [
            (
                f"start a parent run in experiment {experiment or 'of the outer run'!r}",
                lambda: self._create_run(entry, experiment),
            )
        ]
        if entry.get("params"):
            steps.append(
                (
                    "log the pipeline's params",
                    lambda: self.backend.log(self._id(entry), params=entry["params"]),
                )
            )
        return steps

    def _end_steps(self, entry: dict[str, Any]) -> list[Step]:
        return [
            (
                "log the total stage duration",
                lambda: self.backend.log(
                    self._id(entry),
                    metrics=metrics_of(entry["metrics"]),
                    tags=entry.get("tags") or None,
                ),
            ),
            (
                "end the parent run",
                lambda: self.backend.end_run(self._id(entry), entry["status"], entry["end_ms"]),
            ),
        ]

    def _id(self, entry: dict[str, Any], key: str = "run") -> str:
        run_id = self.state.resolve(entry[key])
        assert run_id is not None
        return run_id

    def _stage_steps(self, entry: dict[str, Any], payload: dict[str, Any]) -> list[Step]:
        stage = entry["stage"]
        backend = self.backend
        scores = payload.get("scores")
        steps: list[Step] = []
        if scores is not None:
            # Each metric on its own: one that fails is reported and the others are kept.
            try:
                computed, failed = scores.evaluate()
            except Exception as exc:
                computed, failed = (), (("evaluation metrics", exc),)
            for name, error in failed:
                steps.append(
                    (
                        f"compute the {name} metric of stage {stage!r}",
                        lambda error=error: _raise(error),
                    )
                )
            rows = metric_rows(computed)
            entry = {
                **entry,
                "metrics": entry["metrics"] + rows,
                "parent_metrics": entry["parent_metrics"] + rows,
            }
        if entry["parent_metrics"] and not entry["training"]:
            self.state.evaluation = {key: value for key, value, _, _ in entry["parent_metrics"]}
        fmt = self.header.get("serialization_format", "skops")
        # Passed only when listed: a backend of another version need not know the argument.
        trust = {"trusted_types": tuple(t)} if (t := self.header.get("trusted_types")) else {}
        child = lambda: self._id(entry)  # noqa: E731 - resolved when the step runs
        parent = lambda: self._id(entry, "parent")  # noqa: E731
        steps.insert(
            0, (f"record stage {stage!r}", lambda: self._create_run(entry, entry.get("experiment")))
        )
        if entry["params"] or entry["metrics"]:
            steps.append(
                (
                    f"log params and metrics of stage {stage!r}",
                    lambda: backend.log(
                        child(), params=entry["params"], metrics=metrics_of(entry["metrics"])
                    ),
                )
            )
        for nested in entry.get("nested") or ():
            steps.extend(self._nested_steps(entry, nested))
        artifacts = dict(payload.get("artifacts") or {})
        pictures = payload.get("pictures")
        if pictures is not None:
            steps.append(
                (
                    f"draw the evaluation of {stage!r}",
                    lambda: self._log_files(child(), pictures.render()),
                )
            )
        for name, content in artifacts.items():
            steps.append(
                (
                    f"log {name} of stage {stage!r}",
                    lambda name=name, content=content: backend.log_artifact(
                        child(), name, _bytes(content)
                    ),
                )
            )
        for summary, context in payload.get("datasets") or ():
            steps.append(
                (
                    f"log the input dataset of stage {stage!r}",
                    lambda summary=summary, context=context: backend.log_dataset(
                        child(), summary, context=context, name=f"{stage}.input"
                    ),
                )
            )
        model = payload.get("model")
        if model is not None:
            steps.append(
                (
                    f"log the model of stage {stage!r}",
                    lambda: backend.log_model(
                        child(), "model", model, serialization_format=fmt, **trust
                    ),
                )
            )
        # A copy logging under another instance's parent run keeps what belongs to a parent
        # run (evaluation metrics, the composed model, its verdict) on its own stage runs: the
        # owner's model, metrics and their steps are the owner's.
        copy = bool(entry.get("copy"))
        owner = child if copy else parent
        if entry["parent_metrics"] and not copy:
            steps.append(
                (
                    "log evaluation metrics on the parent run",
                    lambda: backend.log(parent(), metrics=metrics_of(entry["parent_metrics"])),
                )
            )
        if entry["parent_tags"]:
            steps.append(
                (
                    "tag the parent run",
                    lambda: backend.log(owner(), tags=self._parent_tags(entry)),
                )
            )
        composed = payload.get("composed")
        registered = None if copy else self.header.get("registered_model_name")
        if composed is not None:
            steps.append(
                (
                    "log the composed `pipeline` model",
                    lambda: {
                        "composed_step": entry.get("composed_step", 0),
                        "model_uri": backend.log_model(
                            owner(),
                            COMPOSED_MODEL_NAME,
                            composed.model,
                            # getattr: a spool written by an earlier version has none
                            input_example=getattr(composed, "logged_example", None),
                            signature_example=composed.input_example,
                            output_example=getattr(composed, "output_example", None),
                            serialization_format=fmt,
                            step=entry.get("composed_step", 0),
                            **trust,
                        ),
                    },
                )
            )
            if registered:
                steps.append((f"register the model as {registered!r}", self._register))
        elif entry["parent_metrics"] and not entry["training"] and registered:
            steps.append(("tag the registered model version", lambda: self._tag_version(entry)))
        steps.append(
            (
                f"end the child run of stage {stage!r}",
                lambda: backend.end_run(child(), entry["status"], entry["end_ms"]),
            )
        )
        return steps

    def _nested_steps(self, entry: dict[str, Any], nested: dict[str, Any]) -> list[Step]:
        """Create a run nested under the stage's run, log its params and metrics, end it."""
        name, backend = nested["run_name"], self.backend
        return [
            (f"record run {name!r}", lambda: self._create_run(nested, entry.get("experiment"))),
            (
                f"log params and metrics of run {name!r}",
                lambda: backend.log(
                    self._id(nested),
                    params=nested["params"],
                    metrics=metrics_of(nested["metrics"]),
                ),
            ),
            (
                f"end run {name!r}",
                lambda: backend.end_run(self._id(nested), "FINISHED", entry["end_ms"]),
            ),
        ]

    def _parent_tags(self, entry: dict[str, Any]) -> dict[str, str]:
        """The entry's parent tags; a pass verified against a composed model that never
        reached the store verified nothing that can be loaded: it is tagged false."""
        tags = dict(entry["parent_tags"])
        if (
            tags.get(VERIFIED_TAG) == "true"
            and entry.get("composed_step") not in self.state.composed
        ):
            tags[VERIFIED_TAG] = "false"
            tags[VERIFIED_REASON_TAG] = (
                "the composed model this pass agrees with could not be logged (see the warning "
                "about logging the composed `pipeline` model)"
            )
        return tags

    def _log_files(self, run_id: str, files: dict[str, bytes]) -> None:
        for name, content in files.items():
            self.backend.log_artifact(run_id, name, content)

    def _register(self) -> dict[str, Any] | None:
        uri = self.state.model_uri
        if uri is None:
            return None  # the model was not logged: its failure is reported already
        name = self.header["registered_model_name"]
        run_id = self.state.resolve(self.header["parent"])
        version = self.backend.register_model(name, uri, run_id)
        return {"version": [name, version]}

    def _tag_version(self, entry: dict[str, Any]) -> None:
        if self.state.model_version is None:
            return
        name, version = self.state.model_version
        tags = {key: repr(value) for key, value, _, _ in entry["parent_metrics"]}
        self.backend.tag_model_version(name, version, tags)
