"""The spool's records as bytes, and back: one converter, every line authenticated.

The converter is cattrs': it structures and unstructures attrs classes natively, so the
records stay plain attrs classes (one class system, the library's) and their JSON form
follows their fields; ``forbid_extra_keys`` makes a field this version does not know an
error, never something silently dropped. Payloads (models, pictures, samples: arbitrary
objects) are pickled with cloudpickle, which keeps classes defined in a script by value.

Every line (header, entry, progress) is canonical JSON (sorted keys) holding its record and
``mac``: HMAC-SHA256 with the user's spool key (``tracked.spool.key``) over the purpose of
the line, the session id and the record's canonical JSON; a payload's MAC (in its entry's
line) covers the session, the entry's ``seq`` and the payload's bytes. Nothing is structured
or unpickled before its MAC verifies: a line or payload that does not verify is ``Damaged``.
"""

from __future__ import annotations

import json
from typing import Any

import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from tracked.spool.key import mac, verify
from tracked.spool.records import (
    ENTRY_KINDS,
    Entry,
    Header,
    PayloadRef,
    Progress,
    StagePayload,
)

#: The spool format this version writes and reads. Format 1 (tracked 0.1.0) had no number.
FORMAT = 2
#: The last version of tracked that reads format-1 spools.
FORMAT_1_VERSION = "0.1.0"

converter = cattrs.Converter(forbid_extra_keys=True)
# A progress note without a stage model keeps the exact form it had before the field came.
converter.register_unstructure_hook(
    Progress,
    make_dict_unstructure_fn(Progress, converter, model=override(omit_if_default=True)),
)


class Damaged(ValueError):
    """A line or payload of the spool that cannot be trusted: said in words, for the user."""


class Unreadable(ValueError):
    """A session folder of another spool format: refused as a whole, with what to do."""


def canonical(document: Any) -> bytes:
    # NaN and infinities are kept (as JSON's common NaN/Infinity extension): metrics may be.
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def signed_line(document: dict[str, Any], key: bytes, purpose: bytes, session: str) -> bytes:
    signed = {**document, "mac": mac(key, purpose, session.encode(), canonical(document))}
    return canonical(signed) + b"\n"


def _verified(raw: bytes, key: bytes, purpose: bytes, session: str, what: str) -> dict:
    """The document of a line whose MAC verifies, else ``Damaged`` saying why."""
    try:
        document = json.loads(raw)
    except ValueError:
        cut = "" if raw.endswith(b"\n") else " (cut short)"
        raise Damaged(f"{what} is not JSON{cut}") from None
    if not isinstance(document, dict):
        raise Damaged(f"{what} is a JSON {type(document).__name__}, not a record")
    claimed = document.pop("mac", None)
    if not verify(key, claimed, purpose, session.encode(), canonical(document)):
        raise Damaged(
            f"{what} does not verify with your spool key (changed after it was written, "
            "or not written by you)"
        )
    return document


# -- header -------------------------------------------------------------------------------------


def encode_header(header: Header, key: bytes) -> bytes:
    document = {"format": FORMAT, "header": converter.unstructure(header)}
    return signed_line(document, key, b"header", header.session)


def decode_header(raw: bytes, key: bytes, session: str) -> Header:
    """The header of the session folder ``session``.

    Raises:
        Unreadable: another format (older or newer): what to do is in the message.
        Damaged: not a header, or it does not verify.
    """
    try:
        peek = json.loads(raw)
    except ValueError:
        raise Damaged("header.json is not JSON") from None
    if not isinstance(peek, dict):
        raise Damaged(f"header.json is a JSON {type(peek).__name__}, not a header")
    fmt = peek.get("format")
    if fmt is None:
        raise Unreadable(
            f"written by tracked {FORMAT_1_VERSION} or earlier (spool format 1, whose records "
            f"are not authenticated), which this version does not read: sync it with that "
            f"version (`pip install tracked=={FORMAT_1_VERSION}`, then `tracked sync`), or "
            "remove the folder"
        )
    if fmt != FORMAT:
        if isinstance(fmt, int) and fmt > FORMAT:
            raise Unreadable(
                f"written by a newer tracked (spool format {fmt}; this version reads format "
                f"{FORMAT}): upgrade tracked, then run `tracked sync` again"
            )
        raise Damaged(f"header.json names an unknown spool format ({fmt!r})")
    document = _verified(raw, key, b"header", session, "header.json")
    try:
        header = converter.structure(document["header"], Header)
    except Exception as exc:
        raise Damaged(f"header.json is no header ({_short(exc)})") from None
    if header.session != session:
        raise Damaged(f"header.json belongs to session {header.session}, not to this folder")
    return header


# -- entries ------------------------------------------------------------------------------------


def encode_entry(entry: Entry, payload: PayloadRef | None, key: bytes, session: str) -> bytes:
    body = {"kind": entry.kind, **converter.unstructure(entry)}
    document: dict[str, Any] = {"entry": body}
    if payload is not None:
        document["payload"] = converter.unstructure(payload)
    return signed_line(document, key, b"entry", session)


def claimed(raw: bytes) -> str:
    """What a damaged line says it is (not trusted: to help the reader find it), or ''."""
    try:
        body = json.loads(raw).get("entry")
        parts = [f"entry {body['seq']}"] if isinstance(body.get("seq"), int) else []
        for name in ("stage", "kind", "run"):
            if isinstance(body.get(name), str):
                parts.append(f"{name} {body[name]!r}")
                break
        return f" (it says: {', '.join(parts)})" if parts else ""
    except Exception:
        return ""


def decode_entry(
    raw: bytes, key: bytes, session: str, what: str
) -> tuple[Entry, PayloadRef | None]:
    document = _verified(raw, key, b"entry", session, what)
    try:
        body = dict(document["entry"])
        cls = ENTRY_KINDS[body.pop("kind")]
        entry = converter.structure(body, cls)
        ref = document.get("payload")
        return entry, (None if ref is None else converter.structure(ref, PayloadRef))
    except KeyError as exc:
        raise Damaged(f"{what} is no entry of this version (unknown {exc})") from None
    except Exception as exc:
        raise Damaged(f"{what} is no entry ({_short(exc)})") from None


# -- payloads -----------------------------------------------------------------------------------


def encode_payload(payload: StagePayload) -> bytes:
    """The pickled payload (a plain dict of its parts: no class of ours inside)."""
    import cloudpickle

    return cloudpickle.dumps(_parts(payload), protocol=5)


def _parts(payload: StagePayload) -> dict[str, Any]:
    return {
        "model": payload.model,
        "composed": payload.composed,
        "artifacts": dict(payload.artifacts),
        "datasets": payload.datasets,
        "pictures": payload.pictures,
        "scores": payload.scores,
    }


def payload_mac(data: bytes, key: bytes, session: str, seq: int) -> str:
    return mac(key, b"payload", session.encode(), str(seq).encode(), data)


def decode_payload(data: bytes) -> StagePayload:
    """Unpickle a payload: only bytes this process made, or whose MAC verified."""
    import cloudpickle

    parts = cloudpickle.loads(data)
    return StagePayload(**parts)


def check_payload(data: bytes, ref: PayloadRef, key: bytes, session: str, seq: int) -> None:
    """``Damaged`` unless ``data`` is the whole payload that ``ref`` names."""
    if len(data) < ref.size:
        raise Damaged(
            f"cut short ({len(data)} of its {ref.size} bytes are in payloads.bin: the file "
            "was truncated)"
        )
    if not verify(key, ref.mac, b"payload", session.encode(), str(seq).encode(), data):
        raise Damaged("does not verify with your spool key (its bytes changed)")


# -- progress -----------------------------------------------------------------------------------


def encode_progress(event: Progress, key: bytes, session: str) -> bytes:
    return signed_line({"progress": converter.unstructure(event)}, key, b"progress", session)


def decode_progress(raw: bytes, key: bytes, session: str, what: str) -> Progress:
    document = _verified(raw, key, b"progress", session, what)
    try:
        return converter.structure(document["progress"], Progress)
    except Exception as exc:
        raise Damaged(f"{what} is no progress note ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
