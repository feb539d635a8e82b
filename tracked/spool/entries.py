"""The spool's records as values: the header of a session, its entries and their payloads,
and the progress of their replay. Frozen attrs classes with keyword-only fields; the codec
(``tracked.spool.codec``) turns them into the bytes of the spool and back.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from attrs import field, frozen

from tracked.core.values import Metric, now_ms
from tracked.spool.format import hostname


@frozen(kw_only=True)
class Header:
    """Who wrote a session folder, and where its records go."""

    session: str
    #: The store (credentials masked): sync writes there unless told another.
    tracking_uri: str | None = None
    #: The recording process's (user, script, git commit): not ``tracked sync``'s.
    source_tags: dict[str, str] = field(factory=dict)
    experiment: str | None = None
    run_name: str = ""
    #: The parent run of the session's stage runs: its own (``session``) or another's.
    parent: str | None = None
    registered_model_name: str | None = None
    serialization_format: str = "skops"
    trusted_types: tuple[str, ...] = ()
    pid: int = field(factory=os.getpid)
    host: str = field(factory=hostname)
    created_ms: int = field(factory=now_ms)
    #: The fingerprint of the spool key that signs the folder (``tracked.spool.key``): which
    #: key to restore when it is missing. None in folders written before it was noted: they
    #: are checked against the current key.
    key_id: str | None = None

    @property
    def owns_parent(self) -> bool:
        """Whether the session opened its parent run (else: a copy logging under another's)."""
        return self.parent == self.session


@frozen(kw_only=True)
class StartRun:
    """A session opened its parent run."""

    kind: ClassVar[str] = "start_run"
    seq: int = 0
    run: str
    #: The run it nests under (an outer run's store id), or None.
    parent: str | None = None
    experiment: str | None = None
    run_name: str
    tags: dict[str, str] = field(factory=dict)
    params: dict[str, str] = field(factory=dict)
    start_ms: int


@frozen(kw_only=True)
class NestedRun:
    """A run nested under a stage's run (a search's candidate)."""

    run: str
    parent: str
    run_name: str
    start_ms: int
    params: dict[str, str] = field(factory=dict)
    metrics: tuple[Metric, ...] = ()
    tags: dict[str, str] = field(factory=dict)


@frozen(kw_only=True)
class StageEntry:
    """One stage call: a child run of the parent run (or of the stage that called it)."""

    kind: ClassVar[str] = "stage"
    seq: int = 0
    run: str
    parent: str | None
    nested_under: str | None = None
    experiment: str | None = None
    stage: str
    run_name: str
    start_ms: int
    end_ms: int
    status: str
    training: bool
    params: dict[str, str] = field(factory=dict)
    tags: dict[str, str] = field(factory=dict)
    metrics: tuple[Metric, ...] = ()
    parent_metrics: tuple[Metric, ...] = ()
    parent_tags: dict[str, str] = field(factory=dict)
    #: The step of its composed model (the latest one's when it composes none).
    composed_step: int = 0
    #: Logs under a parent run someone else owns (a copy, a forked child).
    copy: bool = False
    nested: tuple[NestedRun, ...] = ()
    #: False: it logs on a run an earlier entry created (a series of folded calls).
    new_run: bool = True
    #: False: the run stays open for later entries (a series' chunk before its last).
    ends_run: bool = True
    #: The name its model is logged under (a series' checkpoints: ``checkpoint-<call>``).
    model_name: str = "model"


@frozen(kw_only=True)
class EndRun:
    """A session ended its parent run."""

    kind: ClassVar[str] = "end_run"
    seq: int = 0
    run: str
    status: str
    end_ms: int
    metrics: tuple[Metric, ...] = ()
    tags: dict[str, str] = field(factory=dict)


@frozen(kw_only=True)
class Detach:
    """A copy's session said it is done (the run it logged under is someone else's)."""

    kind: ClassVar[str] = "detach"
    seq: int = 0


Entry = StartRun | StageEntry | EndRun | Detach
ENTRY_KINDS: dict[str, type] = {cls.kind: cls for cls in (StartRun, StageEntry, EndRun, Detach)}


@frozen(kw_only=True)
class StagePayload:
    """The heavy parts of a stage entry, kept as objects (pickled in the spool)."""

    #: The fitted operator to log as a model.
    model: Any = None
    #: The whole fitted workflow (``Composed``) to log on the parent run.
    composed: Any = None
    #: Artifact files: {name: bytes, or an object whose render() gives them}.
    artifacts: dict[str, Any] = field(factory=dict)
    #: Datasets the stage read: ((summary, context), ...).
    datasets: tuple[tuple[Any, str], ...] = ()
    #: What the evaluation pictures are drawn from (``render()`` gives the files).
    pictures: Any = None
    #: The default evaluation, computed when written (``evaluate()``). Scores that predict
    #: when written hold the model and its training data, and say so (``heavy``).
    scores: Any = None

    #: The parts dropped when the spool is full: everything but what metrics need.
    HEAVY: ClassVar[tuple[str, ...]] = ("model", "composed", "artifacts", "datasets", "pictures")

    def light(self) -> StagePayload:
        """This payload without its heavy parts (the scores stay: they give metrics; unless
        they are heavy themselves)."""
        return StagePayload(scores=None if self._heavy_scores() else self.scores)

    def parts(self) -> list[str]:
        """The heavy parts it holds, by name."""
        parts = [name for name in self.HEAVY if getattr(self, name)]
        return [*parts, "training metrics"] if self._heavy_scores() else parts

    def _heavy_scores(self) -> bool:
        return bool(getattr(self.scores, "heavy", False))


@frozen(kw_only=True)
class PayloadRef:
    """Where an entry's payload is in ``payloads.bin``, and its MAC."""

    offset: int
    size: int
    mac: str


@frozen(kw_only=True)
class Progress:
    """One step of an entry that reached the store (``step``: a name, see ``Replayer``)."""

    seq: int
    step: str
    #: A run created: its local id and the store's id for it.
    run: str | None = None
    id: str | None = None
    model_uri: str | None = None
    composed_step: int | None = None
    #: A registered model version: (name, version).
    version: tuple[str, str] | None = None
    #: A stage's model logged: (the stage, the model's URI), which the metrics of its later
    #: calls are linked to. Left out of the line when None (as every older line is).
    model: tuple[str, str] | None = None
