"""Helpers for tests that read or edit spool folders as their owner would (with the key)."""

from __future__ import annotations

import json
from pathlib import Path

from tracked.spool import codec
from tracked.spool.key import spool_key


def entry_documents(folder: Path) -> list[dict]:
    """The entry lines of a session folder as JSON documents (their MACs left out)."""
    documents = []
    for line in (folder / "entries.jsonl").read_bytes().splitlines():
        document = json.loads(line)
        document.pop("mac")
        documents.append(document)
    return documents


def write_entry_documents(folder: Path, documents: list[dict]) -> None:
    """Write entry documents back, signed with the user's key: edits its owner made."""
    key = spool_key(create=False)
    lines = [codec.signed_line(d, key, b"entry", folder.name) for d in documents]
    (folder / "entries.jsonl").write_bytes(b"".join(lines))
