"""``tracked sync`` and ``tracked status``: the spool, replayed into a store and shown.

Sessions are replayed oldest first, so that a run created by one session is known when a
later one (a copy in another process, logging under it) refers to it. A session still being
written by a live process is left alone; one whose process died without ending its parent
run is finished: its remaining records are written and the parent run ends KILLED, with the
reason in the tag ``tracked.end_reason``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attrs import define, field

from tracked._capture import mask_uri
from tracked._records import KILLED, now_ms
from tracked._replay import Replayer, ReplayState, StoreAway
from tracked._report import describe
from tracked._spool import PROGRESS, SpooledSession, spooled_sessions

END_REASON_TAG = "tracked.end_reason"


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
    #: Folder -> why it was not read at all (another user's, writable by others, a link).
    refused: dict[str, str] = field(factory=dict)

    @property
    def ok(self) -> bool:
        return not self.remaining and not self.refused


def session_state(session: SpooledSession) -> str:
    """``ended`` (its writer left it for sync), ``running`` (its process is alive and may
    still write it) or ``abandoned`` (its process died before it was done)."""
    if session.released:
        return "ended"
    return "running" if session.writer_alive() else "abandoned"


def pending_entries(session: SpooledSession) -> list[dict[str, Any]]:
    """The entries not (completely) written to the store yet."""
    state = ReplayState.from_progress(session.progress)
    return [
        entry
        for entry in session.entries
        if entry["kind"] != "detach" and (entry["seq"], Replayer.COMPLETE) not in state.done
    ]


def sync(
    spool: Path,
    *,
    tracking_uri: str | None = None,
    dry_run: bool = False,
    backend_for: Callable[[str], Any] | None = None,
) -> SyncResult:
    """Write every finished (or abandoned) session of ``spool`` to its store.

    Args:
        tracking_uri: the store to write to; default: each session's own.
        dry_run: say what would be written, write nothing, remove nothing.
        backend_for: the backend of a URI (default: tracked's MLflow backend).
    """
    if backend_for is None:
        from tracked.backends.mlflow import shared_backend as backend_for
    result = SyncResult()
    known_runs: dict[str, str] = {}
    for session in spooled_sessions(spool, result.refused):
        state_name = session_state(session)
        if state_name == "running":
            pid = session.header.get("pid")
            result.remaining[session.session_id] = f"still being written by process {pid}"
            continue
        uri = tracking_uri or session.header.get("tracking_uri")
        if not uri or "***@" in uri:
            result.remaining[session.session_id] = (
                "its store's URI holds credentials, which the spool does not keep: "
                "give it with --tracking-uri"
            )
            continue
        if dry_run:
            # What the real sync would do, said by the same functions it uses.
            pending = pending_entries(session)
            closing = _closing_entries(session, session.entries, state_name)
            result.done.append(
                f"would write {session.session_id} ({session.header.get('run_name')}): "
                f"{len(pending) + len(closing)} entries to {mask_uri(uri)}"
                + _run_words(
                    session,
                    _known_run(session, ReplayState.from_progress(session.progress), known_runs),
                )
                + (" and end its parent run KILLED" if closing else ""),
            )
            result.remaining[session.session_id] = "dry run"
            continue
        try:
            progress = _progress_file(session, uri)
            _replay_session(session, backend_for(uri), progress, known_runs, state_name, result)
        except Exception as exc:  # e.g. a payload whose classes this environment lacks
            result.remaining[session.session_id] = f"cannot be replayed: {describe(exc)}"
    return result


def _progress_file(session: SpooledSession, uri: str) -> str:
    """Where the progress of a replay into ``uri`` is noted.

    Steps done in the session's own store say nothing about another store: a sync to
    ``--tracking-uri`` elsewhere writes everything there, and notes it in a file of its own.
    """
    if mask_uri(uri) == session.header.get("tracking_uri"):
        return PROGRESS
    digest = hashlib.sha1(mask_uri(uri).encode()).hexdigest()[:12]
    return f"progress-{digest}.jsonl"


def _replay_session(
    session: SpooledSession,
    backend: Any,
    progress: str,
    known_runs: dict[str, str],
    state_name: str,
    result: SyncResult,
) -> None:
    sid = session.session_id
    state = ReplayState.from_progress(session.progress_for(progress))
    state.runs = {**known_runs, **state.runs}
    appender = _ProgressAppender(session.path / progress)
    replayer = Replayer(
        backend, session.header, state, appender.append, find_existing=True, mark_failed=False
    )
    entries = list(session.entries)
    entries.extend(_closing_entries(session, entries, state_name))
    failures: list[str] = []
    written = 0
    try:
        for entry in entries:
            payload = session.payload(entry)
            done_before = len(state.done)
            for what, exc in replayer.replay(entry, payload):
                failures.append(f"{what}: {describe(exc)}")
            written += len(state.done) > done_before
    except StoreAway as away:
        cause = away.__cause__ or away
        result.remaining[sid] = f"the store is away: could not {away} ({describe(cause)})"
        return
    finally:
        appender.close()
        known_runs.update(state.runs)
        result.runs_created += replayer.created
        result.entries_written += written
    if failures:
        run = f"{sid} (run {session.header.get('run_name')!r})"
        result.failures.extend(f"{run}: the store refused to {failure}" for failure in failures)
        result.remaining[sid] = (
            f"the store refused {len(failures)} steps (see above): the records are kept; "
            "fix the cause, then run sync again"
        )
        return
    session.remove()
    result.synced.append(sid)
    run = _known_run(session, state, known_runs)
    result.done.append(
        f"synced {sid} ({session.header.get('run_name')})" + _run_words(session, run)
    )


def _known_run(
    session: SpooledSession, state: ReplayState, known_runs: dict[str, str]
) -> str | None:
    """The store id of the run a session writes (its own parent run, or, for a copy, the
    run it logs under), when known; else its local id."""
    own = session.header.get("session")
    ref = own if session.header.get("parent") == own else session.header.get("parent")
    if ref is None:
        return None
    return state.runs.get(ref) or known_runs.get(ref) or ref


def _run_words(session: SpooledSession, run: str | None) -> str:
    if run is None or run == session.session_id:
        return ""  # its own run, known by the session id only so far
    own = session.header.get("session")
    if session.header.get("parent") == own:
        return f" as run {run}"
    return f" under run {run}"


def _closing_entries(
    session: SpooledSession, entries: list[dict[str, Any]], state_name: str
) -> list[dict]:
    """End the parent run of a session whose process died: KILLED, with the reason. The
    dry run and the real sync both ask this, so that they agree."""
    incomplete = session.incomplete
    if session.closed or not (state_name == "abandoned" or incomplete is not None):
        return []
    own = session.header.get("session")
    if own is None or session.header.get("parent") != own:
        return []  # a copy logging under another session's run: that one ends it
    seq = max((e["seq"] for e in entries), default=-1) + 1
    pid, host = session.header.get("pid"), session.header.get("host")
    last = max((e.get("end_ms") or e.get("start_ms") or 0 for e in entries), default=0)
    reason = (
        f"process {pid} on {host} ended without ending the run (killed?); "
        f"tracked sync ended it at {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    if incomplete is not None:
        reason = (
            f"the spool of process {pid} on {host} could not take all of its records "
            f"({incomplete}): those after it are lost; tracked sync ended the run at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
        )
    return [
        {
            "seq": seq,
            "kind": "end_run",
            "run": own,
            "status": KILLED,
            "end_ms": last or now_ms(),
            "metrics": [],
            "tags": {END_REASON_TAG: reason},
        }
    ]


class _ProgressAppender:
    def __init__(self, path: Path) -> None:
        import os

        from tracked._spool import _dumps, open_private

        self._dumps = _dumps
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._file = os.fdopen(fd, "ab")

    def append(self, event: dict[str, Any]) -> None:
        self._file.write(self._dumps(event))
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# -- status -----------------------------------------------------------------------------------


@define
class SessionStatus:
    session_id: str
    state: str
    run_name: str
    experiment: str
    tracking_uri: str
    entries: int
    pending: int
    bytes: int
    created_ms: int


def status(spool: Path, refused: dict[str, str] | None = None) -> list[SessionStatus]:
    """What the spool holds, one row per session, oldest first; the folders it does not read
    go into ``refused`` (see ``spooled_sessions``)."""
    rows = []
    for session in spooled_sessions(spool, refused):
        header = session.header
        state = session_state(session)
        rows.append(
            SessionStatus(
                session_id=session.session_id,
                state="incomplete" if session.incomplete is not None else state,
                run_name=str(header.get("run_name")),
                experiment=str(header.get("experiment") or "(of the outer run)"),
                tracking_uri=mask_uri(str(header.get("tracking_uri"))),
                entries=len(session.entries),
                pending=len(pending_entries(session)),
                bytes=session.size_bytes(),
                created_ms=int(header.get("created_ms", 0)),
            )
        )
    return rows
