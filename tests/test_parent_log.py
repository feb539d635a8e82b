"""A stage's evaluation metrics and tags for the parent run go in one call (``parent_log``);
a replay that began with the two separate steps finishes them one by one."""

from __future__ import annotations

from tracked.core.values import Metric
from tracked.spool.entries import Header, Progress, StageEntry, StagePayload
from tracked.spool.replay import Replayer, ReplayState
from tracked.testing import MemoryBackend


def entry() -> StageEntry:
    return StageEntry(
        seq=1,
        run="local-stage",
        parent="local-parent",
        experiment="tests",
        stage="classify",
        run_name="classify:inference",
        start_ms=1,
        end_ms=2,
        status="FINISHED",
        training=False,
        parent_metrics=(Metric(key="accuracy", value=0.9, timestamp=1),),
        parent_tags={"verdict": "yes"},
    )


def replay(done: set[str]) -> tuple[MemoryBackend, list[str], str]:
    backend = MemoryBackend()
    parent = backend.start_run(experiment="tests", run_name="parent")
    state = ReplayState(runs={"local-parent": parent})
    for step in done:
        state.apply(Progress(seq=1, step=step))
    noted: list[str] = []
    header = Header(session="local-parent", parent="local-parent")
    Replayer(backend, header, state, lambda event: noted.append(event.step)).replay(
        entry(), StagePayload()
    )
    return backend, noted, parent


def test_the_parent_s_metrics_and_tags_are_one_step():
    backend, noted, parent = replay(set())
    assert "parent_log" in noted
    assert not {"parent_metrics", "parent_tags"} & set(noted)
    assert 0.9 == backend.get(parent).metric("accuracy")
    assert "yes" == backend.get(parent).tags["verdict"]


def test_a_replay_that_logged_the_metrics_alone_adds_only_the_tags():
    backend, noted, parent = replay({"parent_metrics"})
    assert "parent_tags" in noted
    assert not {"parent_log", "parent_metrics"} & set(noted)
    assert "accuracy" not in backend.get(parent).metrics  # not logged a second time
    assert "yes" == backend.get(parent).tags["verdict"]
