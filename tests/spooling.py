"""Helpers for tests that read or edit spool folders as their owner would (with the key)."""

from __future__ import annotations

import json
from pathlib import Path

from tracked.spool import codec
from tracked.spool.key import spool_key


def documents(folder: Path, name: str = "entries.jsonl", purpose: bytes = b"entry") -> list[dict]:
    """The lines of a spool file of a session folder as JSON documents (verified, their MACs
    left out)."""
    key = spool_key(create=False)
    return [
        json.loads(codec.authentic(line, key, purpose, folder.name, name))
        for line in (folder / name).read_bytes().splitlines(keepends=True)
    ]


def entry_documents(folder: Path) -> list[dict]:
    """The entry lines of a session folder as JSON documents (their MACs left out)."""
    return documents(folder)


def write_entry_documents(folder: Path, documents: list[dict]) -> None:
    """Write entry documents back, signed with the user's key: edits its owner made."""
    key = spool_key(create=False)
    lines = [codec.signed_line(d, key, b"entry", folder.name) for d in documents]
    (folder / "entries.jsonl").write_bytes(b"".join(lines))
