"""The named steps of each kind of entry.

Names never depend on positions: a stage's steps are ``create_run``, ``score:<metric>`` (a
metric that could not be computed: reported), ``log``, ``nested:<i>:create_run`` /
``nested:<i>:log`` / ``nested:<i>:end_run``, ``pictures``, ``artifact:<file>``,
``dataset:<i>``, ``model`` (in a sweep: ``aside``), ``link``, ``parent_log`` (or
``parent_metrics``, ``parent_tags``), ``composed``, ``register``, ``tag_version``,
``parent_link``, ``end_run``; a start's
``create_run`` and ``params``; an end's ``metrics`` and ``end_run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracked.backends.base import capabilities
from tracked.core.names import (
    LEFT_OUT_TAG,
    LOCAL_ID_TAG,
    VERIFIED_REASON_TAG,
    VERIFIED_TAG,
    judges_a_model,
)
from tracked.core.values import Metric
from tracked.spool import aside
from tracked.spool.entries import (
    EndRun,
    Entry,
    Header,
    NestedRun,
    StageEntry,
    StagePayload,
    StartRun,
)
from tracked.spool.step import Step, content_bytes, raise_again

if TYPE_CHECKING:
    from tracked.spool.replay import ReplayState

CREATE_RUN = "create_run"
COMPOSED_MODEL_NAME = "pipeline"


class _RunSteps:
    """The steps that create, log on and end runs; each resolves the run ids it needs
    when it runs."""

    #: A sweep's session: stages' heavy parts go to ``state.aside``, not to the store.
    keep_aside = False

    def __init__(
        self, backend: Any, header: Header, state: ReplayState, *, find_existing: bool
    ) -> None:
        self.backend = backend
        self.header = header
        self.state = state
        self.find_existing = find_existing
        #: Runs created in the store (not found there again).
        self.created = 0

    def _id(self, ref: str | None) -> str:
        run_id = self.state.resolve(ref)
        assert run_id is not None
        return run_id

    def _create_run(
        self, entry: StartRun | StageEntry | NestedRun, experiment: str | None, **extra: str
    ):
        local = entry.run
        # A stage called by another stage nests under that stage's run (created before it:
        # the caller's record is written first); under the parent run if that one failed.
        nested = getattr(entry, "nested_under", None)
        if nested is not None and nested in self.state.runs:
            parent = self.state.runs[nested]
        else:
            parent = self._resolve_parent(entry.parent, experiment)
        backend = self.backend
        if self.find_existing and callable(getattr(backend, "find_run", None)):
            found = backend.find_run(
                experiment=experiment, parent_run_id=parent, key=LOCAL_ID_TAG, value=local
            )
            if found is not None:
                return {"run": local, "id": found}
        tags = {**self.header.source_tags, **entry.tags, **extra, LOCAL_ID_TAG: local}
        run_id = backend.start_run(
            experiment=experiment,
            run_name=entry.run_name,
            parent_run_id=parent,
            tags=tags,
            start_time=entry.start_ms,
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

    def _start(self, entry: StartRun) -> list[Step]:
        where = entry.experiment or "of the outer run"
        steps = [
            Step(
                CREATE_RUN,
                f"start a parent run in experiment {where!r}",
                lambda: self._create_run(entry, entry.experiment),
            )
        ]
        if entry.params:
            steps.append(
                Step(
                    "params",
                    "log the pipeline's params",
                    lambda: self.backend.log(self._id(entry.run), params=entry.params),
                )
            )
        return steps

    def _end(self, entry: EndRun) -> list[Step]:
        backend = self.backend
        return [
            Step(
                "metrics",
                "log the total stage duration",
                lambda: backend.log(
                    self._id(entry.run), metrics=list(entry.metrics), tags=entry.tags or None
                ),
            ),
            Step(
                "end_run",
                "end the parent run",
                lambda: backend.end_run(self._id(entry.run), entry.status, entry.end_ms),
            ),
        ]

    def _nested(self, entry: StageEntry, nested: NestedRun, prefix: str) -> list[Step]:
        """Create a run nested under the stage's run, log its params and metrics, end it."""
        name, backend = nested.run_name, self.backend
        return [
            Step(
                f"{prefix}{CREATE_RUN}",
                f"record run {name!r}",
                lambda: self._create_run(nested, entry.experiment),
            ),
            Step(
                f"{prefix}log",
                f"log params and metrics of run {name!r}",
                lambda: backend.log(
                    self._id(nested.run), params=nested.params, metrics=list(nested.metrics)
                ),
            ),
            Step(
                f"{prefix}end_run",
                f"end run {name!r}",
                lambda: backend.end_run(self._id(nested.run), "FINISHED", entry.end_ms),
            ),
        ]

    def _parent_tags(self, entry: StageEntry) -> dict[str, str]:
        """The entry's parent tags; a pass verified against a composed model that never
        reached the store verified nothing that can be loaded: it is tagged false."""
        tags = dict(entry.parent_tags)
        if tags.get(VERIFIED_TAG) == "true" and entry.composed_step not in self.state.composed:
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
        name = self.header.registered_model_name
        run_id = self.state.resolve(self.header.parent)
        version = self.backend.register_model(name, uri, run_id)
        return {"version": (name, version)}

    def _tag_version(self, parent_metrics: list[Metric]) -> None:
        if self.state.model_version is None:
            return
        name, version = self.state.model_version
        tags = {m.key: repr(m.value) for m in parent_metrics}
        self.backend.tag_model_version(name, version, tags)


class StepBuilder(_RunSteps):
    """Makes the steps of an entry."""

    def of(self, entry: Entry, payload: StagePayload | None) -> list[Step]:
        if isinstance(entry, StartRun):
            return self._start(entry)
        if isinstance(entry, StageEntry):
            return self._stage(entry, payload or StagePayload())
        if isinstance(entry, EndRun):
            return self._end(entry)
        return []  # detach: nothing to write

    def _stage(self, entry: StageEntry, payload: StagePayload) -> list[Step]:
        stage, backend = entry.stage, self.backend
        left = aside.left_out(payload) if self.keep_aside else ""
        left_out = {LEFT_OUT_TAG: left} if left else {}
        steps = []
        if entry.new_run:  # else it logs on a run an earlier entry created (a series)
            create = lambda: self._create_run(entry, entry.experiment, **left_out)  # noqa: E731
            steps.append(Step(CREATE_RUN, f"record stage {stage!r}", create))
        computed = self._scores(entry, payload, steps)
        metrics = [*entry.metrics, *computed]
        # A series' trail stays on its run: its steps are calls, not the parent's evaluations.
        shared = computed if getattr(payload.scores, "to_parent", True) else []
        parent_metrics = [*entry.parent_metrics, *shared]
        if parent_metrics and not entry.training:
            self.state.evaluation = {m.key: m.value for m in parent_metrics}
        if entry.new_run:
            child = lambda: self._id(entry.run)  # noqa: E731 - resolved when the step runs
        else:  # a series' run, which an earlier sync (whose folder is gone) may have made
            child = lambda: self._resolve_parent(entry.run, entry.experiment)  # noqa: E731
        # On a run created earlier, the tags are logged again: a series' count and name.
        again = None if entry.new_run else dict(entry.tags)
        if entry.params or metrics or again:
            steps.append(
                Step(
                    "log",
                    f"log params and metrics of stage {stage!r}",
                    lambda: backend.log(child(), params=entry.params, metrics=metrics, tags=again),
                )
            )
        for index, nested in enumerate(entry.nested):
            steps.extend(self._nested(entry, nested, f"nested:{index}:"))
        steps.extend(self._files(entry, payload, child))
        steps.extend(self._link(entry, payload, metrics, child))
        steps.extend(self._parent(entry, payload, parent_metrics))
        if entry.ends_run:
            steps.append(
                Step(
                    "end_run",
                    f"end the child run of stage {stage!r}",
                    lambda: backend.end_run(child(), entry.status, entry.end_ms),
                )
            )
        return steps

    def _scores(self, entry: StageEntry, payload: StagePayload, steps: list[Step]) -> list[Metric]:
        """The evaluation metrics computed now; a step that reports each one that failed."""
        if payload.scores is None:
            return []
        # Each metric on its own: one that fails is reported and the others are kept.
        try:
            computed, failed = payload.scores.evaluate()
        except Exception as exc:
            computed, failed = (), (("evaluation metrics", exc),)
        for name, error in failed:
            what = f"compute the {name} metric of stage {entry.stage!r}"
            steps.append(Step(f"score:{name}", what, lambda error=error: raise_again(error)))
        return list(computed)

    def _files(self, entry: StageEntry, payload: StagePayload, child) -> list[Step]:
        stage, backend, steps = entry.stage, self.backend, []
        if self.keep_aside:
            if not aside.left_out(payload):
                return []
            options = self._model_options()
            keep = lambda: aside.keep(child(), stage, payload, options, entry.model_name)  # noqa: E731
            what = f"keep the pictures, files, datasets and model of {stage!r} aside"
            return [Step("aside", what, lambda: self.state.aside.extend(keep()))]
        pictures = payload.pictures
        if pictures is not None:
            steps.append(
                Step(
                    "pictures",
                    f"draw the evaluation of {stage!r}",
                    lambda: self._log_files(child(), pictures.render()),
                )
            )
        for name, content in dict(payload.artifacts).items():
            steps.append(
                Step(
                    f"artifact:{name}",
                    f"log {name} of stage {stage!r}",
                    lambda name=name, content=content: backend.log_artifact(
                        child(), name, content_bytes(content)
                    ),
                )
            )
        for index, (summary, context) in enumerate(payload.datasets or ()):
            steps.append(
                Step(
                    f"dataset:{index}",
                    f"log the input dataset of stage {stage!r}",
                    lambda summary=summary, context=context: backend.log_dataset(
                        child(), summary, context=context, name=f"{stage}.input"
                    ),
                )
            )
        if payload.model is not None:
            steps.append(
                Step(
                    "model",
                    f"log the model of stage {stage!r}",
                    lambda: {
                        "model": (
                            stage,
                            backend.log_model(
                                child(), entry.model_name, payload.model, **self._model_options()
                            ),
                        )
                    },
                )
            )
        return steps

    def _link(
        self, entry: StageEntry, payload: StagePayload, metrics: list[Metric], child
    ) -> list[Step]:
        """Link the stage run's metrics to the stage's model and input dataset (MLflow 3's
        model page shows them): to the model this entry logged (a fit's training metrics),
        else to the model the stage's latest fit logged (an inference's evaluation)."""
        link = capabilities(self.backend).link_metrics
        metrics = [m for m in metrics if judges_a_model(m.key)]
        if link is None or not metrics:
            return []
        stage = entry.stage
        own = payload.model is not None and not self.keep_aside
        dataset = None
        if payload.datasets:
            summary, _context = payload.datasets[0]
            digest = getattr(summary, "digest", None)  # a DataSummary (``log_dataset``'s)
            if isinstance(digest, str):
                dataset = (f"{stage}.input", digest)

        def run() -> None:
            # A fit whose model failed links nothing (not to an older fit's model).
            state = self.state
            uri = state.entry_models.get(entry.seq) if own else state.models.get(stage)
            if uri is not None:
                link(child(), metrics, model_uri=uri, dataset=dataset)

        what = f"link the metrics of stage {stage!r} to its model"
        return [Step("link", what, run, needs="model" if own else None)]

    def _model_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"serialization_format": self.header.serialization_format}
        if self.header.trusted_types:
            # Passed only when listed: a backend of another version need not know it.
            options["trusted_types"] = tuple(self.header.trusted_types)
        return options

    def _parent(
        self, entry: StageEntry, payload: StagePayload, parent_metrics: list[Metric]
    ) -> list[Step]:
        # A copy logging under another instance's parent run keeps what belongs to a parent
        # run (evaluation metrics, the composed model, its verdict) on its own stage runs: the
        # owner's model, metrics and their steps are the owner's.
        backend, steps = self.backend, []
        owner = lambda: self._id(entry.run if entry.copy else entry.parent)  # noqa: E731
        tags = bool(entry.parent_tags)
        if parent_metrics and not entry.copy:
            # With the parent's tags in one call (``parent_log``), unless a replay that began
            # before this version did one of the two.
            done = {(entry.seq, "parent_metrics"), (entry.seq, "parent_tags")} & self.state.done
            both, tags = tags and not done, tags and bool(done)
            log = lambda: backend.log(  # noqa: E731
                self._id(entry.parent),
                metrics=parent_metrics,
                tags=self._parent_tags(entry) if both else None,
            )
            what = "log evaluation metrics on the parent run"
            steps.append(Step("parent_log" if both else "parent_metrics", what, log))
        if tags:
            log_tags = lambda: backend.log(owner(), tags=self._parent_tags(entry))  # noqa: E731
            steps.append(Step("parent_tags", "tag the parent run", log_tags))
        registered = None if entry.copy else self.header.registered_model_name
        if payload.composed is not None:
            steps.extend(self._composed(entry, payload.composed, owner, registered))
        elif parent_metrics and not entry.training and registered:
            steps.append(
                Step(
                    "tag_version",
                    "tag the registered model version",
                    lambda: self._tag_version(parent_metrics),
                )
            )
        link = capabilities(backend).link_metrics
        if parent_metrics and not entry.copy and link is not None:

            def link_parent() -> None:
                # The composed model the pass used (logged by this entry or an earlier one).
                uri = self.state.composed_models.get(entry.composed_step)
                if uri is not None:
                    link(self._id(entry.parent), parent_metrics, model_uri=uri, dataset=None)

            what = "link the evaluation metrics on the parent run to the composed model"
            steps.append(Step("parent_link", what, link_parent))
        return steps

    def _composed(self, entry: StageEntry, composed: Any, owner, registered) -> list[Step]:
        backend, steps = self.backend, []
        steps.append(
            Step(
                "composed",
                "log the composed `pipeline` model",
                lambda: {
                    "composed_step": entry.composed_step,
                    "model_uri": backend.log_model(
                        owner(),
                        COMPOSED_MODEL_NAME,
                        composed.model,
                        # getattr: a payload pickled by an earlier version has none
                        input_example=getattr(composed, "logged_example", None),
                        signature_example=composed.input_example,
                        output_example=getattr(composed, "output_example", None),
                        step=entry.composed_step,
                        **self._model_options(),
                    ),
                },
            )
        )
        if registered:
            steps.append(
                Step(
                    "register",
                    f"register the model as {registered!r}",
                    self._register,
                    needs="composed",
                )
            )
        return steps
