"""``tracked sync`` and ``tracked status``: the spool, replayed into a store and shown.

Sessions are replayed oldest first, so that a run created by one session is known when a
later one (a copy in another process, logging under it) refers to it. One sync works on a
spool at a time (it locks the spool's folder); a session folder whose lock is held (its
writer is alive, or another sync has it) is skipped with a message. A session whose
process died without ending its parent run is finished: its remaining records are written
and the parent run ends KILLED, with the reason in the tag ``tracked.end_reason``; so does
one whose end record is damaged.

Damage (a line or payload that does not verify, is cut short or is no record) is reported
with the run and the step it belongs to; the records that verify are written; the folder is
kept (it is removed only once every record in it reached the store and none was damaged),
and sync exits non-zero. A stage whose payload is damaged is written without it (its run
tagged ``tracked.spool_damaged``), so its parent run still ends.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from attrs import define, field

from tracked.core.names import END_REASON_TAG, SPOOL_DAMAGED_TAG
from tracked.core.report import describe
from tracked.core.text import mask_secrets
from tracked.core.values import KILLED, now_ms
from tracked.spool import codec
from tracked.spool.codec import Damaged, Unreadable
from tracked.spool.entries import EndRun, Entry, Progress, StageEntry
from tracked.spool.format import (
    LOCK,
    PAYLOADS,
    PROGRESS,
    open_private,
    punch_hole,
    root_refusal,
    session_folders,
    write_all,
)
from tracked.spool.key import SpoolKeyError, spool_key, unverifiable
from tracked.spool.lock import lock_waiting, try_lock, unlock
from tracked.spool.reader import SpooledSession, describe_entry
from tracked.spool.replay import Replayer, ReplayState, StoreAway, with_tags

#: How long a ``tracked sync`` waits for another one working on the same spool.
SYNC_WAIT_S = 600.0


@define
class SyncResult:
    """What one ``sync`` did."""

    synced: list[str] = field(factory=list)
    #: Session id -> why it is still in the spool.
    remaining: dict[str, str] = field(factory=dict)
    runs_created: int = 0
    entries_written: int = 0
    failures: list[str] = field(factory=list)
    #: One line per session written (or, in a dry run, that would be written).
    done: list[str] = field(factory=list)
    #: Folder -> why it was not read at all (another user's, writable by others, a link,
    #: another spool format).
    refused: dict[str, str] = field(factory=dict)

    @property
    def ok(self) -> bool:
        return not self.remaining and not self.refused


def read_sessions(spool: Path, refused: dict[str, str]) -> Iterator[SpooledSession]:
    """The session folders of ``spool`` that can be read, oldest first, one at a time; the
    others go into ``refused`` with why (never a traceback): a folder that cannot be read,
    whatever is wrong with it, is refused alone and the others are read."""
    folders = session_folders(spool, refused)
    if not folders:
        return
    try:
        key = spool_key(create=False)
    except (SpoolKeyError, OSError) as exc:
        for folder in folders:
            refused[str(folder)] = f"{folder}: {unverifiable(folder, None, str(exc))}"
        return
    for folder in folders:
        try:
            session = SpooledSession.read(folder, key)
        except FileNotFoundError:
            continue  # removed meanwhile (another sync)
        except (Unreadable, Damaged, OSError) as exc:
            refused[str(folder)] = f"{folder} is not read: {unverifiable(folder, key, str(exc))}"
            continue
        except Exception as exc:  # whatever else a hostile folder causes: that folder only
            refused[str(folder)] = f"{folder} is not read: {describe(exc)}"
            continue
        yield session


def spooled_sessions(spool: Path, refused: dict[str, str] | None = None) -> list[SpooledSession]:
    """``read_sessions`` as a list, for a caller that does not ask what was refused."""
    return list(read_sessions(spool, {} if refused is None else refused))


def session_state(session: SpooledSession) -> str:
    """``running`` (a process holds it: its writer, or a sync), ``ended`` (its writer left
    it for sync) or ``abandoned`` (its process died before it was done)."""
    if session.writing:
        return "running"
    return "ended" if session.released or session.closed else "abandoned"


def pending_entries(session: SpooledSession) -> list[Entry]:
    """The entries not (completely) written to the store yet."""
    state = ReplayState.from_progress(session.progress)
    return [e for e in session.entries if e.kind != "detach" and not state.complete(e.seq)]


def sync(
    spool: Path,
    *,
    tracking_uri: str | None = None,
    dry_run: bool = False,
    backend_for: Callable[[str], Any] | None = None,
    on_wait: Callable[[], None] | None = None,
) -> SyncResult:
    """Write every finished (or abandoned) session of ``spool`` to its store.

    Args:
        tracking_uri: the store to write to; default: each session's own.
        dry_run: say what would be written, write nothing, remove nothing.
        backend_for: the backend of a URI (default: tracked's MLflow backend).
        on_wait: called once when another sync holds the spool and this one waits for it
            (the command line says so on stderr).
    """
    if backend_for is None:
        from tracked.backends.mlflow import shared_backend as backend_for
    result = SyncResult()
    spool_lock = None
    if not dry_run and spool.is_dir() and root_refusal(spool) is None:
        spool_lock = lock_waiting(spool, SYNC_WAIT_S, on_wait)
        if spool_lock is None:
            result.refused[str(spool)] = (
                f"another `tracked sync` kept {spool} for {SYNC_WAIT_S:g} s"
            )
            return result
    try:
        known_runs: dict[str, str] = {}
        for session in read_sessions(spool, result.refused):
            _sync_one(session, tracking_uri, dry_run, backend_for, known_runs, result)
    finally:
        unlock(spool_lock)
    return result


def _sync_one(session, tracking_uri, dry_run, backend_for, known_runs, result) -> None:
    sid = session.session_id
    uri = tracking_uri or session.header.tracking_uri
    if not uri or "***@" in uri:
        result.remaining[sid] = (
            "its store's URI holds credentials, which the spool does not keep: "
            "give it with --tracking-uri"
        )
        return
    if dry_run:
        _dry_run(session, uri, known_runs, result)
        return
    lock = None
    try:
        lock = try_lock(session.path / LOCK)
        if lock is None:
            result.remaining[sid] = (
                f"in use (process {session.header.pid} on {session.header.host} still writes "
                "it, or another `tracked sync` has it): left for a later sync"
            )
            return
        if not session.path.is_dir():
            return  # synced and removed by another sync meanwhile
        _replay_session(session, backend_for(uri), _progress_file(session, uri), known_runs, result)
    except FileNotFoundError:
        return  # removed meanwhile
    except Exception as exc:  # e.g. a store that cannot be opened
        result.remaining[sid] = f"cannot be replayed: {describe(exc)}"
    finally:
        unlock(lock)


def _dry_run(session: SpooledSession, uri: str, known_runs, result: SyncResult) -> None:
    # What the real sync would do, said by the same functions it uses.
    state_name = session_state(session)
    sid = session.session_id
    if state_name == "running":
        result.remaining[sid] = f"in use (process {session.header.pid} still writes it)"
        return
    pending = pending_entries(session)
    closing = _closing_entries(session, state_name)
    state = ReplayState.from_progress(session.progress)
    result.done.append(
        f"would write {sid} ({session.header.run_name}): "
        f"{len(pending) + len(closing)} entries to {mask_secrets(uri)}"
        + _run_words(session, _known_run(session, state, known_runs))
        + _closing_words(session, closing)
    )
    for damage in session.damage:
        result.failures.append(f"{sid}: {damage}")
    result.remaining[sid] = "dry run"


def _progress_file(session: SpooledSession, uri: str) -> str:
    """Where the progress of a replay into ``uri`` is noted.

    Steps done in the session's own store say nothing about another store: a sync to
    ``--tracking-uri`` elsewhere writes everything there, and notes it in a file of its own.
    """
    if mask_secrets(uri) == session.header.tracking_uri:
        return PROGRESS
    digest = hashlib.sha1(mask_secrets(uri).encode()).hexdigest()[:12]
    return f"progress-{digest}.jsonl"


def _replay_session(session, backend, progress: str, known_runs, result: SyncResult) -> None:
    sid = session.session_id
    # Read under the lock: the folder as its writer left it.
    session = SpooledSession.read(session.path, session._key)
    state_name = session_state_locked(session)
    state = ReplayState.from_progress(session.progress_for(progress))
    state.runs = {**known_runs, **state.runs}
    damage = list(session.damage) + session.check_payloads(skip=state.complete)
    appender = _ProgressAppender(session, progress, state)
    replayer = Replayer(
        backend, session.header, state, appender.append, find_existing=True, mark_failed=False
    )
    entries = [*session.entries, *_closing_entries(session, state_name)]
    failures: list[str] = []
    written = 0
    try:
        for entry in entries:
            done_before = len(state.done)
            for what, exc in _replay_entry(replayer, session, entry, state):
                failures.append(f"{what}: {describe(exc)}")
            written += len(state.done) > done_before
            appender.flush()
    except StoreAway as away:
        cause = away.__cause__ or away
        result.remaining[sid] = f"the store is away: could not {away} ({describe(cause)})"
        return
    finally:
        unwritten = appender.close()
        known_runs.update(state.runs)
        result.runs_created += replayer.created
        result.entries_written += written
        if unwritten and sid in result.remaining:
            result.remaining[sid] += (
                f"; {unwritten} progress notes could not be written (the disk is full): "
                "the next sync writes those steps again"
            )
    _conclude(session, state, known_runs, failures, damage, result, unwritten)


def session_state_locked(session: SpooledSession) -> str:
    """The state of a session whose lock this process holds."""
    return "ended" if session.released or session.closed else "abandoned"


def _replay_entry(replayer: Replayer, session: SpooledSession, entry: Entry, state):
    if state.complete(entry.seq):
        return []
    try:
        payload = session.payload(entry)
    except Damaged as exc:
        # Written without it (reported with the damage): the run and its end still go.
        return replayer.replay(with_tags(entry, {SPOOL_DAMAGED_TAG: f"payload {exc}"}), None)
    except Exception as exc:  # a class this environment lacks: left for a later sync
        return [(f"load the payload of {describe_entry(entry)}", exc)]
    return replayer.replay(entry, payload)


def _conclude(
    session, state, known_runs, failures, damage, result: SyncResult, unwritten=0
) -> None:
    sid = session.session_id
    run = f"{sid} (run {session.header.run_name!r})"
    for bad in damage:
        result.failures.append(f"{run}: damaged: {bad}")
    result.failures.extend(f"{run}: the store refused to {failure}" for failure in failures)
    if damage or failures:
        parts = []
        if damage:
            parts.append(f"{len(damage)} damaged records (see above)")
        if failures:
            parts.append(f"the store refused {len(failures)} steps (see above)")
        result.remaining[sid] = (
            f"{' and '.join(parts)}: the records that verify were written; the folder "
            f"is kept at {session.path}"
            + (
                "; fix the cause, then run sync again"
                if failures
                else "; look at it, then remove it"
            )
            + (
                f"; {unwritten} progress notes could not be written (the disk is full): the "
                "next sync writes those steps again"
                if unwritten
                else ""
            )
        )
        return
    session.remove()
    result.synced.append(sid)
    result.done.append(
        f"synced {sid} ({session.header.run_name})"
        + _run_words(session, _known_run(session, state, known_runs))
    )


def _known_run(session: SpooledSession, state: ReplayState, known_runs) -> str | None:
    """The store id of the run a session writes (its own parent run, or, for a copy, the
    run it logs under), when known; else its local id."""
    ref = session.header.parent
    if ref is None:
        return None
    return state.runs.get(ref) or known_runs.get(ref) or ref


def _run_words(session: SpooledSession, run: str | None) -> str:
    if run is None or run == session.session_id:
        return ""  # its own run, known by the session id only so far
    return f" as run {run}" if session.header.owns_parent else f" under run {run}"


def _closing_entries(session: SpooledSession, state_name: str) -> list[EndRun]:
    """End every run a session left open when its process died, its spool is incomplete,
    or its end record is damaged: the runs of its series still open (a folded loop's run,
    which stays open between chunks) and then its parent run, each KILLED with the reason
    in ``tracked.end_reason``. The dry run and the real sync both ask this, so that they
    agree."""
    incomplete = session.incomplete
    if session.closed or not (state_name != "running" or incomplete is not None):
        return []
    header = session.header
    seq = max((e.seq for e in session.entries), default=-1) + 1
    last = max(
        (getattr(e, "end_ms", 0) or getattr(e, "start_ms", 0) for e in session.entries), default=0
    )
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    reason = (
        f"process {header.pid} on {header.host} ended without ending the run (killed?); "
        f"tracked sync ended it at {when}"
    )
    if incomplete is not None:
        reason = (
            f"the spool of process {header.pid} on {header.host} could not take all of its "
            f"records ({incomplete}): those after it are lost; tracked sync ended the run at {when}"
        )
    elif session.released or session.damage:
        reason = (
            f"the spool's record of the run's end is damaged ({session.damage_count} damaged "
            f"lines); tracked sync ended the run at {when}"
        )
    tags = {END_REASON_TAG: reason}
    closing = []
    for series in _open_series(session.entries):
        closing.append(
            EndRun(seq=seq, run=series.run, status=KILLED, end_ms=series.end_ms, tags=tags)
        )
        seq += 1
    if header.owns_parent:  # else a copy logging under another session's run: that one ends it
        closing.append(
            EndRun(seq=seq, run=header.session, status=KILLED, end_ms=last or now_ms(), tags=tags)
        )
    return closing


def _closing_words(session: SpooledSession, closing: list[EndRun]) -> str:
    """What the closing entries end, in words (the dry run's)."""
    series = sum(1 for end in closing if end.run != session.header.session)
    runs = [f"{series} open series run{'s' if series > 1 else ''}"] if series else []
    if len(closing) > series:
        runs.append("its parent run")
    return f" and end {' and '.join(runs)} KILLED" if runs else ""


def _open_series(entries: list[Entry]) -> list[StageEntry]:
    """The latest chunk of each series whose run no entry ended (its process died between
    chunks): a series' run stays open from its first chunk to the one that ``ends_run``."""
    open_runs: dict[str, StageEntry] = {}
    for entry in entries:
        if isinstance(entry, StageEntry):
            if entry.ends_run:
                open_runs.pop(entry.run, None)
            else:
                open_runs[entry.run] = entry
    return list(open_runs.values())


#: What a disk that refuses a write says.
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class _ProgressAppender:
    """Appends a replay's progress notes to the folder.

    On a full disk (the spool filled it) a note is kept in memory instead, and the sync goes
    on: once an entry is done (``flush``), the payloads of the entries delivered so far are
    given back to the disk (``punch_hole``: their bytes are no longer needed, the offsets of
    the others stay) and the notes held are written. A session delivered whole needs none of
    them (its folder goes); what ``close`` still could not write is counted, and the next
    sync repeats those steps (runs are found again by their local id, not made twice).
    """

    def __init__(self, session: SpooledSession, name: str, state: ReplayState) -> None:
        self._session = session
        self._state = state
        self._encode = lambda event: codec.encode_progress(
            event, session._key, session.session_id, session.format
        )
        self._fd = open_private(session.path / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._held: list[bytes] = []
        #: The end of the payloads given back to the disk so far.
        self._freed = 0

    def append(self, event: Progress) -> None:
        self._held.append(self._encode(event))
        if len(self._held) == 1:
            self._write_held()

    def flush(self) -> None:
        """Write the notes held; on a full disk, free the delivered payloads first."""
        if self._held and not self._write_held():
            self._free_delivered()
            self._write_held()

    def close(self) -> int:
        """Write what is held (freeing what can be); return how many notes were not."""
        self.flush()
        os.close(self._fd)
        return len(self._held)

    def _write_held(self) -> bool:
        data = b"".join(self._held)
        size = os.fstat(self._fd).st_size
        try:
            write_all(self._fd, data)
        except OSError as exc:
            if exc.errno not in _DISK_FULL:
                raise
            # A note cut short would spoil the line after it: the file goes back as it was
            # (shrinking a file needs no room).
            os.ftruncate(self._fd, size)
            return False
        self._held.clear()
        return True

    def _free_delivered(self) -> None:
        """Give back the payloads of the entries delivered, from the start of payloads.bin
        up to the first one not delivered (payloads lie in the order of their entries)."""
        end = self._freed
        for entry in self._session.entries:
            ref = self._session.payloads.get(entry.seq)
            if ref is None:
                continue
            if not self._state.complete(entry.seq):
                break
            end = max(end, ref.offset + ref.size)
        if end > self._freed and punch_hole(self._session.path / PAYLOADS, 0, end):
            self._freed = end
