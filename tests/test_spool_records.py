"""The spool's records and codec, in process: round trips, verification, formats, and replay
by named steps against a flaky in-memory store (issue 15.2 and 15.6, issue 16.2 and 16.4)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracked.backends.base import REQUIRED_METHODS
from tracked.backends.memory import MemoryBackend
from tracked.core.values import Metric
from tracked.spool import codec
from tracked.spool.codec import Damaged, Unreadable
from tracked.spool.entries import (
    Detach,
    EndRun,
    Header,
    NestedRun,
    PayloadRef,
    Progress,
    StageEntry,
    StagePayload,
    StartRun,
)
from tracked.spool.folder import SessionSpool
from tracked.spool.key import spool_key
from tracked.spool.sync import sync

SESSION = "local-" + "ab" * 16
texts = st.text(max_size=20)
metrics = st.builds(
    Metric,
    key=texts,
    value=st.floats(allow_nan=False),
    step=st.integers(0, 2**40),
    timestamp=st.integers(0, 2**42),
)
stage_entries = st.builds(
    StageEntry,
    seq=st.integers(0, 10**6),
    run=texts,
    parent=st.none() | texts,
    stage=texts,
    run_name=texts,
    start_ms=st.integers(0, 2**42),
    end_ms=st.integers(0, 2**42),
    status=st.sampled_from(["FINISHED", "FAILED", "KILLED"]),
    training=st.booleans(),
    params=st.dictionaries(texts, texts, max_size=4),
    metrics=st.lists(metrics, max_size=3).map(tuple),
    nested=st.lists(
        st.builds(NestedRun, run=texts, parent=texts, run_name=texts, start_ms=st.integers(0, 9)),
        max_size=2,
    ).map(tuple),
)


def key() -> bytes:
    return spool_key(create=True)


@settings(max_examples=60, deadline=None)
@given(stage_entries)
def test_a_stage_entry_reads_back_as_it_was_written(entry):
    ref = PayloadRef(offset=3, size=5, mac="00")
    line = codec.encode_entry(entry, ref, key(), SESSION)
    assert (entry, ref) == codec.decode_entry(line, key(), SESSION, "line 1")


def test_every_kind_of_record_reads_back_and_nan_metrics_stay_nan():
    start = StartRun(seq=0, run=SESSION, run_name="Iris", params={"C": "1"}, start_ms=5)
    end = EndRun(
        seq=2, run=SESSION, status="KILLED", end_ms=9, metrics=(Metric(key="m", value=math.nan),)
    )
    for entry in (start, end, Detach(seq=3)):
        line = codec.encode_entry(entry, None, key(), SESSION)
        back, ref = codec.decode_entry(line, key(), SESSION, "line")
        assert ref is None
        assert type(entry) is type(back)
        assert entry.seq == back.seq
    back, _ = codec.decode_entry(codec.encode_entry(end, None, key(), SESSION), key(), SESSION, "l")
    assert math.isnan(back.metrics[0].value)
    header = Header(session=SESSION, tracking_uri="sqlite:///x.db", trusted_types=("a.B",))
    assert header == codec.decode_header(codec.encode_header(header, key()), key(), SESSION)
    event = Progress(seq=4, step="artifact:a.csv", version=("reg", "2"))
    line = codec.encode_progress(event, key(), SESSION)
    assert event == codec.decode_progress(line, key(), SESSION, "line")


def test_a_flipped_byte_another_key_or_another_folder_is_damage_never_a_record():
    entry = StartRun(seq=0, run=SESSION, run_name="Iris", params={"C": "1"}, start_ms=5)
    line = codec.encode_entry(entry, None, key(), SESSION)
    flipped = line.replace(b'"C":"1"', b'"C":"2"')
    with pytest.raises(Damaged, match="does not verify"):
        codec.decode_entry(flipped, key(), SESSION, "line 1")
    with pytest.raises(Damaged, match="does not verify"):
        codec.decode_entry(line, os.urandom(32), SESSION, "line 1")
    with pytest.raises(Damaged, match="does not verify"):
        codec.decode_entry(line, key(), "local-" + "cd" * 16, "line 1")
    with pytest.raises(Damaged, match=r"does not verify.*\(cut short\)"):
        codec.decode_entry(line[: len(line) // 2], key(), SESSION, "line 1")


def test_headers_of_other_formats_are_refused_with_what_to_do():
    with pytest.raises(Unreadable, match=r"tracked 0\.1\.0.*pip install"):
        codec.decode_header(json.dumps({"session": SESSION}).encode(), key(), SESSION)
    with pytest.raises(Unreadable, match="upgrade tracked"):
        codec.decode_header(json.dumps({"format": codec.FORMAT + 1}).encode(), key(), SESSION)
    with pytest.raises(Damaged, match="no spool header"):
        codec.decode_header(b'["a", "list"]\n', key(), SESSION)


def test_format_2_lines_are_still_read_verified_before_they_are_parsed():
    """Format 2 (the released one: the MAC inside the JSON) reads back; a changed byte or a
    planted ``mac`` member elsewhere in the line does not verify."""
    signed = lambda document, purpose: codec.signed_line_v2(document, key(), purpose, SESSION)  # noqa: E731
    header = Header(session=SESSION, tracking_uri="sqlite:///x.db", source_tags={"mac": "x"})
    raw = signed({"format": 2, "header": codec.converter.unstructure(header)}, b"header")
    assert header == codec.decode_header(raw, key(), SESSION)
    entry = StartRun(seq=0, run=SESSION, run_name="Iris", tags={"mac": "a" * 64}, start_ms=5)
    ref = PayloadRef(offset=0, size=3, mac="b" * 64)
    document = {
        "entry": {"kind": "start_run", **codec.converter.unstructure(entry)},
        "payload": codec.converter.unstructure(ref),
    }
    line = signed(document, b"entry")
    assert (entry, ref) == codec.decode_entry(line, key(), SESSION, "line 1")
    event = Progress(seq=4, step="log", run="r", id="i")
    assert event == codec.decode_progress(
        codec.encode_progress(event, key(), SESSION, 2), key(), SESSION, "line"
    )
    with pytest.raises(Damaged, match="does not verify"):
        codec.decode_entry(line.replace(b'"Iris"', b'"Irix"'), key(), SESSION, "line 1")


def test_a_line_is_verified_before_a_byte_of_it_is_parsed():
    """100,000 nested brackets (which a JSON parser meets with a RecursionError), with or
    without a MAC in front, are damage, said in one sentence."""
    nested = b"[" * 100_000 + b"\n"
    for raw in (nested, b"f" * 64 + b" " + nested, b"{" + nested):
        with pytest.raises(Damaged, match="line 1"):
            codec.decode_entry(raw, key(), SESSION, "line 1")
        with pytest.raises((Damaged, Unreadable)):
            codec.decode_header(raw, key(), SESSION)


def test_a_payload_is_checked_before_it_is_unpickled():
    data = codec.encode_payload(StagePayload(artifacts={"a.txt": b"x"}))
    mac = codec.payload_mac(data, key(), SESSION, 7)
    ref = PayloadRef(offset=0, size=len(data), mac=mac)
    codec.check_payload(data, ref, key(), SESSION, 7)
    assert {"a.txt": b"x"} == codec.decode_payload(data).artifacts
    with pytest.raises(Damaged, match="cut short"):
        codec.check_payload(data[:-3], ref, key(), SESSION, 7)
    with pytest.raises(Damaged, match="does not verify"):
        codec.check_payload(data, ref, key(), SESSION, 8)  # another entry's


# -- replay by named steps against a flaky store ------------------------------------------------


class Model:
    """A model as the memory store keeps it (a deep copy)."""

    def __init__(self, name: str) -> None:
        self.name = name


class Composed:
    def __init__(self) -> None:
        self.model = Model("pipeline")
        self.input_example = [[1.0, 2.0]]


class Pictures:
    def render(self) -> dict[str, bytes]:
        return {"confusion.png": b"png bytes"}


def spool_a_session(root: Path) -> Path:
    """A session as a run writes it: start, two stages (one with a nested run, a composed
    model and its registration), end; every payload part."""
    header = Header(
        session=SESSION,
        tracking_uri="memory://store",
        experiment="tests",
        run_name="Flaky",
        parent=SESSION,
        registered_model_name="reg",
    )
    spool = SessionSpool(root, header)
    spool.append(
        StartRun(
            seq=0, run=SESSION, experiment="tests", run_name="Flaky", params={"C": "1"}, start_ms=1
        ),
        None,
        None,
    )
    for seq, stage in ((1, "scale"), (2, "fit")):
        run = f"{SESSION}-{seq}"
        entry = StageEntry(
            seq=seq,
            run=run,
            parent=SESSION,
            experiment="tests",
            stage=stage,
            run_name=f"{stage}:fit",
            start_ms=2,
            end_ms=3,
            status="FINISHED",
            training=False,
            params={"p": stage},
            metrics=(Metric(key="m", value=1.0, timestamp=1),),
            parent_metrics=(Metric(key="score", value=0.5, timestamp=1),),
            parent_tags={"t": stage},
            nested=(NestedRun(run=f"{run}-0", parent=run, run_name="candidate", start_ms=2),),
        )
        payload = StagePayload(
            model=Model(stage),
            composed=Composed() if stage == "fit" else None,
            artifacts={"a.csv": b"1,2"},
            datasets=(("summary", "fit"),),
            pictures=Pictures(),
        )
        spool.append(entry, payload, codec.encode_payload(payload))
    spool.append(
        EndRun(
            seq=3,
            run=SESSION,
            status="FINISHED",
            end_ms=4,
            metrics=(Metric(key="total", value=2.0, timestamp=1),),
        ),
        None,
        None,
    )
    spool.release()
    return spool.path


class FlakyBackend(MemoryBackend):
    """A memory store whose calls number ``fail_at`` fail: away (an OSError) or refused."""

    CALLS = REQUIRED_METHODS

    def __init__(self, failures: dict[int, str]) -> None:
        super().__init__()
        self.failures = dict(failures)
        self.calls = 0
        for name in self.CALLS:
            setattr(self, name, self._flaky(getattr(super(), name)))

    def _flaky(self, method):
        def call(*args, **kwargs):
            self.calls += 1
            kind = self.failures.pop(self.calls, None)
            if kind == "away":
                raise ConnectionError("the store is away")
            if kind == "refused":
                raise ValueError("the store refused it")
            return method(*args, **kwargs)

        return call


def snapshot(backend: MemoryBackend) -> dict:
    """What the store holds, by local run id (store ids depend on the order of creation)."""
    local = {r.run_id: r.tags["tracked.local_run_id"] for r in backend.runs.values()}
    return {
        local[r.run_id]: (
            r.name,
            local.get(r.parent_run_id),
            r.status,
            r.tags,
            r.params,
            {k: [(m.value, m.step) for m in v] for k, v in r.metrics.items()},
            r.artifacts,
            [name for name, _, _ in r.logged_models],
            len(r.datasets),
        )
        for r in backend.runs.values()
    } | {"registry": {k: len(v) for k, v in backend.registry.items()}}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    # The key of tests/conftest.py's spool_dir, which is not set up yet for a module fixture.
    previous = os.environ.get("TRACKED_SPOOL_KEY_FILE")
    os.environ["TRACKED_SPOOL_KEY_FILE"] = str(tmp_path_factory.getbasetemp() / "key" / "spool.key")
    try:
        return _template(tmp_path_factory)
    finally:
        if previous is None:
            os.environ.pop("TRACKED_SPOOL_KEY_FILE")
        else:
            os.environ["TRACKED_SPOOL_KEY_FILE"] = previous


def _template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template") / "spool"
    spool_a_session(root)
    undisturbed = MemoryBackend()
    copy = tmp_path_factory.mktemp("undisturbed") / "spool"
    shutil.copytree(root, copy)
    assert sync(copy, backend_for=lambda uri: undisturbed).ok
    return root, snapshot(undisturbed), undisturbed


def test_an_undisturbed_replay_writes_every_step_once(template):
    _, expected, backend = template
    [parent] = backend.parents()
    assert "FINISHED" == parent.status
    assert ["pipeline"] == [name for name, _, _ in parent.logged_models]
    assert {"reg": 1} == expected["registry"]
    assert 4 + 1 == len(backend.runs)  # parent, two stages, two nested


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.integers(1, 40), st.sampled_from(["away", "refused"]), min_size=1, max_size=3
    )
)
def test_a_store_failure_at_any_step_is_resumed_to_what_an_undisturbed_run_writes(
    template, failures
):
    root, expected, _ = template
    expected = dict(expected)
    with tempfile.TemporaryDirectory() as scratch:
        spool = Path(scratch) / "spool"
        shutil.copytree(root, spool)
        backend = FlakyBackend(failures)
        results = []
        for _ in range(5):
            results.append(sync(spool, backend_for=lambda uri: backend))
            if results[-1].ok:
                break
        assert results[-1].ok, results
        assert [] == list(spool.iterdir())
        written = snapshot(backend)
        if "refused" in failures.values():
            # A refused step is retried by the next sync, after the later records: a parent
            # tag that a later stage set again (last writer wins) may hold the earlier value.
            for store in (expected, written):
                store[SESSION] = (
                    *store[SESSION][:3],
                    sorted(store[SESSION][3]),
                    *store[SESSION][4:],
                )
        assert expected == written


def test_a_sync_waits_for_the_one_holding_the_spool_and_says_so_once(tmp_path):
    from tracked.spool.lock import try_lock, unlock
    from tracked.spool.sync import sync

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    held = try_lock(spool)
    waits = []

    def other_sync_ends():
        waits.append(True)
        unlock(held)

    result = sync(spool, on_wait=other_sync_ends, backend_for=lambda uri: None)
    assert [True] == waits
    assert result.ok and not result.refused


def test_every_renamed_module_a_released_spool_names_has_a_successor_that_imports():
    import importlib

    for old, new in codec.RENAMED_MODULES.items():
        assert old != new and importlib.import_module(new).__name__ == new
