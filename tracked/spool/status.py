"""``tracked status``: what the spool holds, one row per session, read without writing."""

from __future__ import annotations

from pathlib import Path

from attrs import define

from tracked.core.text import mask_secrets
from tracked.spool.sync import pending_entries, read_sessions, session_state


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
    #: One sentence per damaged line (payloads are checked by ``tracked sync``).
    damage: list[str]


def status(spool: Path, refused: dict[str, str] | None = None) -> list[SessionStatus]:
    """What the spool holds, one row per session, oldest first; the folders it does not
    read (unsafe, another format, no header that verifies) go into ``refused``."""
    refused = {} if refused is None else refused
    rows = []
    for session in read_sessions(spool, refused):
        header = session.header
        state = session_state(session)
        if session.incomplete is not None:
            state = "incomplete"
        if session.damage:
            state = "damaged"
        rows.append(
            SessionStatus(
                session_id=session.session_id,
                state=state,
                run_name=header.run_name,
                experiment=header.experiment or "(of the outer run)",
                tracking_uri=mask_secrets(str(header.tracking_uri)),
                entries=len(session.entries),
                pending=len(pending_entries(session)),
                bytes=session.size_bytes(),
                created_ms=header.created_ms,
                damage=list(session.damage),
            )
        )
    return rows
