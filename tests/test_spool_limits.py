"""A hostile spool fails one folder at a time, in bounded time and memory (issue "Security and
faults, round two", point 5): lines are verified before they are parsed, lines and files
have size bounds, a bad folder is refused alone and the others sync, ``tracked status``
summarises its refusals, and the spool's size cap never scans on the caller's thread."""

from __future__ import annotations

import json
import os
import threading
import tracemalloc
import warnings
from pathlib import Path

import pytest
from pipelines import run_iris
from servers import free_port
from test_spool_safety import cli

from tracked import TrackingWarning
from tracked.backends.memory import MemoryBackend
from tracked.core.names import LOCAL_ID_TAG
from tracked.spool import codec, reader
from tracked.spool import format as spool_format
from tracked.spool.entries import Header, StageEntry, StagePayload
from tracked.spool.folder import SessionSpool
from tracked.spool.format import MAX_LINE_BYTES, MAX_LOG_BYTES
from tracked.spool.key import spool_key
from tracked.spool.sync import spooled_sessions, sync

NESTED = b"[" * 100_000


def spooled(iris) -> Path:
    """The folder of a real Iris pass whose store is away."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        pipe, _ = run_iris(iris, tracking_uri=f"http://127.0.0.1:{free_port()}")
    return Path(os.environ["TRACKED_SPOOL_DIR"]) / pipe.run_id


def copy_of(folder: Path, name: str | None = None) -> Path:
    """Another session folder holding ``folder``'s files (its lines then verify for no
    session but the original: what matters here is that the reader is never thrown)."""
    other = folder.parent / (name or f"local-{os.urandom(16).hex()}")
    other.mkdir(mode=0o700)
    for child in folder.iterdir():
        if child.name != "lock":
            (other / child.name).write_bytes(child.read_bytes())
    return other


def synced_ids(memory: MemoryBackend) -> set[str]:
    return {run.tags.get(LOCAL_ID_TAG) for run in memory.runs.values()}


def test_nested_brackets_in_a_line_or_a_header_refuse_that_folder_alone(iris, spool_dir):
    healthy = spooled(iris)
    bad_line = spooled(iris)
    entries = (bad_line / "entries.jsonl").read_bytes()
    (bad_line / "entries.jsonl").write_bytes(NESTED + b"\n" + entries)
    bad_header = copy_of(healthy)
    (bad_header / "header.json").write_bytes(NESTED[:60_000] + b"\n")
    huge_header = copy_of(healthy)
    (huge_header / "header.json").write_bytes(NESTED + b"\n")
    code, out, err = cli("status", "--spool", str(spool_dir))
    assert "Traceback" not in err and "RecursionError" not in err
    assert 1 == code
    assert f"{bad_header} is not read: header.json is no spool header" in err
    assert f"{huge_header} is not read: header.json is 100001 bytes, over the" in err
    assert f"damaged: {bad_line.name}: line 1 of entries.jsonl is no spool line" in err
    assert healthy.name in out and bad_line.name in out
    memory = MemoryBackend()
    result = sync(spool_dir, tracking_uri="memory", backend_for=lambda uri: memory)
    assert [healthy.name] == result.synced
    # The damaged line is said; the records that verify are written; the folder is kept.
    assert "line 1 of entries.jsonl is no spool line" in result.remaining[bad_line.name] + str(
        result.failures
    )
    assert {healthy.name, bad_line.name} <= synced_ids(memory)
    assert bad_header.is_dir() and bad_line.is_dir() and not healthy.exists()


def test_a_line_over_the_bound_is_damage_said_in_one_sentence_and_skipped(iris, spool_dir):
    folder = spooled(iris)
    entries = (folder / "entries.jsonl").read_bytes()
    with open(folder / "entries.jsonl", "wb") as handle:
        handle.write(b"x" * (MAX_LINE_BYTES + 10) + b"\n")
        handle.write(entries)
    [session] = spooled_sessions(spool_dir)
    assert 1 == session.damage_count
    assert f"line 1 of entries.jsonl is over {MAX_LINE_BYTES} bytes" in session.damage[0]
    assert len(entries.splitlines()) == len(session.entries)  # the lines after it are read


def test_a_file_over_its_bound_refuses_the_folder_without_reading_it(iris, spool_dir):
    """A 300 MB entries file (sparse: it takes no disk) is refused by its size."""
    healthy = spooled(iris)
    huge = spooled(iris)
    with open(huge / "entries.jsonl", "r+b") as handle:
        handle.truncate(MAX_LOG_BYTES + 1)
    refused: dict[str, str] = {}
    tracemalloc.start()
    try:
        sessions = list(spooled_sessions(spool_dir, refused))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [healthy.name] == [s.session_id for s in sessions]
    assert f"entries.jsonl is {MAX_LOG_BYTES + 1} bytes, over the" in refused[str(huge)]
    assert peak < MAX_LOG_BYTES // 10


def test_payloads_are_checked_in_chunks_never_whole_in_memory(spool_dir):
    header = Header(session=f"local-{os.urandom(16).hex()}", tracking_uri="memory")
    spool = SessionSpool(spool_dir, header)
    data = os.urandom(1 << 16) * 512  # 32 MiB
    entry = StageEntry(
        seq=1, run="r", parent=None, stage="s", run_name="s", start_ms=1, end_ms=2,
        status="FINISHED", training=True,
    )  # fmt: skip
    spool.append(entry, StagePayload(artifacts={"a": b"x"}), data)
    spool.release()
    del data
    [session] = spooled_sessions(spool_dir)
    tracemalloc.start()
    try:
        damage = session.check_payloads()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [] == damage
    assert peak < 4 * reader.CHUNK_BYTES
    with open(spool.path / "payloads.bin", "r+b") as handle:
        handle.seek(1 << 24)
        handle.write(b"\0\1")
    assert "does not verify" in session.check_payloads()[0]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_status_of_100_000_junk_folders_is_a_few_lines_and_the_session_still_syncs(iris, spool_dir):
    healthy = spooled(iris)
    for index in range(50_000):
        os.mkdir(spool_dir / f"junk-{index}", 0o700)  # no session's name
        os.mkdir(spool_dir / f"local-{index:032x}", 0o700)  # a session's name, no header
    code, out, err = cli("status", "--spool", str(spool_dir))
    assert 1 == code
    assert "Traceback" not in err
    assert healthy.name in out
    assert len(err.splitlines()) <= 10, err[:2000]
    assert "99995 more folders, not named here" in err
    memory = MemoryBackend()
    result = sync(spool_dir, tracking_uri="memory", backend_for=lambda uri: memory)
    assert [healthy.name] == result.synced
    assert 100_000 == len(result.refused)
    code, out, err = cli("sync", "--spool", str(spool_dir), "--tracking-uri", "sqlite:///:memory:")
    assert len(err.splitlines()) <= 10, err[:2000]


def test_the_size_cap_never_scans_the_spool_on_the_callers_thread(spool_dir, monkeypatch):
    """The cap reads a running count; the scan that starts it runs on a thread of its own,
    and counts what other processes left (here: a folder of 5,000 bytes)."""
    other = spool_dir / f"local-{os.urandom(16).hex()}"
    other.mkdir(mode=0o700)
    (other / "payloads.bin").write_bytes(b"x" * 5000)
    scanned_on: list[threading.Thread] = []
    scan = spool_format.spool_size

    def watched(root):
        scanned_on.append(threading.current_thread())
        return scan(root)

    monkeypatch.setattr(spool_format, "spool_size", watched)
    spool_key(create=True)
    header = Header(session=f"local-{os.urandom(16).hex()}", tracking_uri="memory")
    spool = SessionSpool(spool_dir, header)
    usage = spool_format.spool_usage(spool_dir)
    assert usage.total >= 0  # reading it starts the scan, without waiting for it
    for thread in threading.enumerate():
        if thread.name == "tracked-spool-size":
            thread.join(timeout=30)
    assert scanned_on and threading.main_thread() not in scanned_on
    after_scan = usage.total
    assert after_scan >= 5000
    spool.append(
        StageEntry(
            seq=1, run="r", parent=None, stage="s", run_name="s", start_ms=1, end_ms=2,
            status="FINISHED", training=True,
        ),
        StagePayload(artifacts={"a": b"x"}),
        b"y" * 100,
    )  # fmt: skip
    assert usage.total >= after_scan + 100
    spool.remove()
    assert usage.total == after_scan


def as_format_2(folder: Path) -> None:
    """Rewrite a session folder in format 2 (the released one: the MAC inside each line)."""
    key = spool_key(create=False)
    for name, purpose in (
        ("header.json", b"header"),
        ("entries.jsonl", b"entry"),
        ("progress.jsonl", b"progress"),
    ):
        lines = []
        for line in (folder / name).read_bytes().splitlines(keepends=True):
            document = json.loads(codec.authentic(line, key, purpose, folder.name, name))
            if purpose == b"header":
                document["format"] = 2
            lines.append(codec.signed_line_v2(document, key, purpose, folder.name))
        (folder / name).write_bytes(b"".join(lines))


def test_a_format_2_folder_syncs_whole_and_its_notes_stay_format_2(iris, spool_dir):
    folder = spooled(iris)
    entries = len((folder / "entries.jsonl").read_bytes().splitlines())
    as_format_2(folder)
    assert (folder / "entries.jsonl").read_bytes().startswith(b'{"entry":')
    [session] = spooled_sessions(spool_dir)
    assert (2, entries, []) == (session.format, len(session.entries), session.damage)

    class Away(MemoryBackend):
        """Takes the first 5 runs, then is away: the sync stops, notes written."""

        def start_run(self, **kwargs):
            if len(self.runs) == 5:
                raise OSError("away")
            return super().start_run(**kwargs)

    memory = Away()
    result = sync(spool_dir, tracking_uri="memory", backend_for=lambda uri: memory)
    assert folder.name in result.remaining
    # Another store than the header's: its notes go in a file of their own.
    notes = b"".join(f.read_bytes() for f in folder.glob("progress-*.jsonl")).splitlines()
    assert notes and all(note.startswith(b'{"mac":') for note in notes)
    memory.start_run = MemoryBackend.start_run.__get__(memory)  # back
    result = sync(spool_dir, tracking_uri="memory", backend_for=lambda uri: memory)
    assert [folder.name] == result.synced
    local_ids = [run.tags.get(LOCAL_ID_TAG) for run in memory.runs.values()]
    assert len(local_ids) == len(set(local_ids)) == 7  # the parent and 6 stages, each once


#: A session folder tracked 0.1.0 left behind (format 2), and the spool key that signed it:
#: its payloads were pickled with that version's module names (tracked.recording.deferred, ...).
RELEASED = Path(__file__).parent / "data" / "spool-0.1.0"
RELEASED_KEY = Path(__file__).parent / "data" / "spool-0.1.0.key"


def test_a_folder_tracked_0_1_0_left_behind_syncs_whole(spool_dir, tmp_path, monkeypatch):
    import shutil

    from tracked.recording.composition.compose import Composed
    from tracked.recording.evaluation.deferred import Scores

    [original] = RELEASED.iterdir()
    shutil.copytree(original, spool_dir / original.name)
    key = tmp_path / "spool.key"  # a key file must be the user's alone (git makes it 0644)
    key.write_bytes(RELEASED_KEY.read_bytes())
    key.chmod(0o600)
    monkeypatch.setenv("TRACKED_SPOOL_KEY_FILE", str(key))
    refused: dict[str, str] = {}
    [session] = spooled_sessions(spool_dir, refused)
    assert ({}, 2, 4, []) == (refused, session.format, len(session.entries), session.damage)
    payload = codec.decode_payload((original / "payloads.bin").read_bytes()[4323:])
    assert (Composed, Scores) == (type(payload.composed), type(payload.scores))

    memory = MemoryBackend()
    result = sync(spool_dir, tracking_uri="memory", backend_for=lambda uri: memory)
    assert ([original.name], []) == (result.synced, list(result.remaining))
    [parent] = memory.parents()
    stages = sorted(run.name for run in memory.children(parent.run_id))
    assert ["classification:fit", "preprocessing:fit", "reduction:fit"] == stages
    assert "pipeline" in parent.models  # the composer's parts loaded: the model composed


@pytest.mark.timeout(60)
def test_a_pipe_under_a_spool_files_name_refuses_its_folder_and_never_blocks(iris, spool_dir):
    healthy = spooled(iris)
    piped = spooled(iris)
    (piped / "entries.jsonl").unlink()
    os.mkfifo(piped / "entries.jsonl", 0o600)  # opened for reading, it would wait forever
    refused: dict[str, str] = {}
    assert [healthy.name] == [s.session_id for s in spooled_sessions(spool_dir, refused)]
    assert "is not a plain file" in refused[str(piped)]


def test_a_folder_of_junk_lines_is_refused_whole_past_a_bound(iris, spool_dir):
    folder = spooled(iris)
    entries = (folder / "entries.jsonl").read_bytes()
    junk = b"junk\n" * (reader.DAMAGE_REFUSED + 1)
    (folder / "entries.jsonl").write_bytes(entries + junk)
    refused: dict[str, str] = {}
    assert [] == spooled_sessions(spool_dir, refused)
    why = refused[str(folder)]
    assert f"more than {reader.DAMAGE_REFUSED} of its lines are damaged" in why
    assert "is no spool line" in why
