"""The heavy parts of a sweep's stage runs, kept aside by the writer instead of logged.

A sweep writes many configurations of which one is kept: each configuration's stage runs get
their params, metrics and tags, and the parent run its composed model, but the writer keeps
the stages' pictures, artifact files, datasets and models aside (in the session's
``ReplayState.aside``) and tags the stage run ``tracked.left_out``. The sweep collects them
from its workers and logs those of its best configuration once it knows which one that is
(``write``); the others are dropped. Drawing the pictures (matplotlib) is most of what a
configuration costs the writer, and the other parts are a store call each.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

#: The parts of a stage's payload kept aside, in the order they are logged.
PARTS = ("pictures", "artifacts", "datasets", "model")


@frozen(kw_only=True)
class Aside:
    """One heavy part of a stage run, with what logging it needs."""

    #: The stage run's id in the store.
    run_id: str
    #: ``pictures`` (``content.render()`` gives the files), ``artifact`` (bytes),
    #: ``dataset`` (a ``DataSummary``; ``name`` is the dataset's, ``context`` its context)
    #: or ``model`` (the fitted operator; ``options`` go to ``log_model``).
    kind: str
    name: str
    content: Any
    context: str = ""
    options: dict[str, Any] = field(factory=dict)

    def what(self) -> str:
        """What logging it does, in words (for a failure's message)."""
        return f"log the {self.kind} {self.name!r} of the sweep's best configuration"


def left_out(payload: Any) -> str:
    """The ``tracked.left_out`` tag's value for a payload: the parts it holds, or ``""``."""
    return ", ".join(part for part in PARTS if getattr(payload, part, None))


def keep(
    run_id: str,
    stage: str,
    payload: Any,
    model_options: dict[str, Any],
    model_name: str = "model",
) -> list[Aside]:
    """A stage payload's heavy parts, as records to log later. Artifacts are drawn now
    (previews are small; their sources may hold the stage's data); pictures are not."""
    kept: list[Aside] = []
    if payload.pictures is not None:
        kept.append(Aside(run_id=run_id, kind="pictures", name=stage, content=payload.pictures))
    for name, content in dict(payload.artifacts).items():
        data = content if isinstance(content, bytes) else content.render()
        kept.append(Aside(run_id=run_id, kind="artifact", name=name, content=data))
    for summary, context in payload.datasets or ():
        kept.append(
            Aside(
                run_id=run_id,
                kind="dataset",
                name=f"{stage}.input",
                content=summary,
                context=context,
            )
        )
    if payload.model is not None:
        kept.append(
            Aside(
                run_id=run_id,
                kind="model",
                name=model_name,
                content=payload.model,
                options=dict(model_options),
            )
        )
    return kept


def write(backend: Any, kept: list[Aside]) -> list[tuple[str, BaseException]]:
    """Log ``kept`` on their runs; return what failed, with why (each part on its own)."""
    failures: list[tuple[str, BaseException]] = []
    for item in kept:
        try:
            _write_one(backend, item)
        except Exception as exc:
            failures.append((item.what(), exc))
    return failures


def _write_one(backend: Any, item: Aside) -> None:
    if item.kind == "pictures":
        for name, content in item.content.render().items():
            backend.log_artifact(item.run_id, name, content)
    elif item.kind == "artifact":
        backend.log_artifact(item.run_id, item.name, item.content)
    elif item.kind == "dataset":
        backend.log_dataset(item.run_id, item.content, context=item.context, name=item.name)
    elif item.kind == "model":
        backend.log_model(item.run_id, item.name, item.content, **item.options)
