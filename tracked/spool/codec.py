"""The spool's records as bytes, and back: one converter, every line authenticated.

The converter is cattrs': it structures and unstructures attrs classes natively, so the
records stay plain attrs classes (one class system, the library's) and their JSON form
follows their fields; ``forbid_extra_keys`` makes a field this version does not know an
error, never something silently dropped. Payloads (models, pictures, samples: arbitrary
objects) are pickled with cloudpickle, which keeps classes defined in a script by value.

Every line (header, entry, progress) is ``<mac> <json>``: the MAC in 64 hex digits, a space,
then the record's canonical JSON (sorted keys). The MAC is HMAC-SHA256 with the user's spool
key (``tracked.spool.key``) over the purpose of the line, the session id and those JSON bytes;
a payload's MAC (in its entry's line) covers the session, the entry's ``seq`` and the
payload's bytes. The MAC is checked over the raw bytes before anything is parsed: a line
that does not verify is ``Damaged`` without a byte of it read as JSON (a hostile line of
nested brackets costs one HMAC, never a parser's recursion), and nothing is structured or
unpickled before its MAC verifies.

Format 2 (tracked 0.1.x, the released one) put the MAC inside the JSON, as a ``"mac"`` key
of the line's object. It is still read, verified before parsing too: the line without its
``"mac":"<hex>"`` member is exactly the bytes that were signed (canonical JSON), so the few
places that member can be (the first and last two of its kind in the line) are tried, each
one HMAC, and only bytes that verify are parsed.
"""

from __future__ import annotations

import io
import json
import pickle
import re
from typing import Any

import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from tracked.spool.entries import (
    ENTRY_KINDS,
    Entry,
    Header,
    PayloadRef,
    Progress,
    StagePayload,
)
from tracked.spool.key import mac, streamed_mac, verify, verify_mac

#: The spool format this version writes. Format 1 (tracked 0.1.0) had no number; format 2 (the
#: MAC inside each line's JSON) is still read.
FORMAT = 3
#: The formats this version reads.
READ_FORMATS = (2, 3)
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
    """``<mac> <json>\\n``: the line of ``document`` in this version's format."""
    body = canonical(document)
    return mac(key, purpose, session.encode(), body).encode() + b" " + body + b"\n"


def signed_line_v2(document: dict[str, Any], key: bytes, purpose: bytes, session: str) -> bytes:
    """The line of ``document`` in format 2 (the MAC inside): for a folder of that format."""
    signed = {**document, "mac": mac(key, purpose, session.encode(), canonical(document))}
    return canonical(signed) + b"\n"


#: The start of a line of format 3: its MAC and a space.
_MAC_FIRST = re.compile(rb"\A([0-9a-f]{64}) ")
#: The MAC member of a line of format 2 (never matched inside a JSON string: quotes there
#: are escaped).
_MAC_MEMBER = re.compile(rb'"mac":"([0-9a-f]{64})"')


def authentic(raw: bytes, key: bytes, purpose: bytes, session: str, what: str) -> bytes:
    """The signed JSON bytes of a line whose MAC verifies, else ``Damaged`` saying why; no
    byte of ``raw`` is parsed before that."""
    line = raw[:-1] if raw.endswith(b"\n") else raw
    cut = "" if raw.endswith(b"\n") else " (cut short)"
    found = _MAC_FIRST.match(line)
    if found is not None:
        body = line[found.end() :]
        if verify(key, found.group(1).decode(), purpose, session.encode(), body):
            return body
    elif line[:1] == b"{":
        body = _format_2_body(line, key, purpose, session)
        if body is not None:
            return body
    else:
        raise Damaged(f"{what} is no spool line (no MAC where it begins){cut}")
    raise Damaged(
        f"{what} does not verify with your spool key (changed after it was written, "
        f"or not written by you){cut}"
    )


def _format_2_body(line: bytes, key: bytes, purpose: bytes, session: str) -> bytes | None:
    """The bytes a format-2 line signed: the line without its own ``"mac"`` member, which
    is the first of its kind (a progress note), the last (a header, an entry without a
    payload) or the one before the last (an entry whose payload ref has a MAC too)."""
    members = list(_MAC_MEMBER.finditer(line))
    tried = members[:2] + [m for m in members[-2:] if m not in members[:2]]
    for member in tried:
        start, end = member.span()
        if line[end : end + 1] == b",":
            body = line[:start] + line[end + 1 :]
        elif line[start - 1 : start] == b",":
            body = line[: start - 1] + line[end:]
        else:
            continue
        if verify(key, member.group(1).decode(), purpose, session.encode(), body):
            return body
    return None


def _verified(raw: bytes, key: bytes, purpose: bytes, session: str, what: str) -> dict:
    """The document of a line whose MAC verifies, else ``Damaged`` saying why."""
    body = authentic(raw, key, purpose, session, what)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # signed with the key, so never expected
        raise Damaged(f"{what} verifies but is not JSON") from None
    if not isinstance(document, dict):
        raise Damaged(f"{what} is a JSON {type(document).__name__}, not a record")
    return document


# -- header -------------------------------------------------------------------------------------


def encode_header(header: Header, key: bytes) -> bytes:
    document = {"format": FORMAT, "header": converter.unstructure(header)}
    return signed_line(document, key, b"header", header.session)


#: The format number at the start of a header (either layout), read only to choose what
#: to say: the number is trusted once the header verifies.
_FORMAT_AT = re.compile(rb'\A(?:[0-9a-f]{64} )?\{"format": ?(\d{1,9})[,}]')


def header_format(raw: bytes) -> int:
    """The spool format a header says it is (before it is verified).

    Raises:
        Unreadable: another format (older or newer): what to do is in the message.
        Damaged: no spool header.
    """
    found = _FORMAT_AT.match(raw)
    if found is None:
        if raw[:1] != b"{":
            raise Damaged("header.json is no spool header (it does not begin with its format)")
        raise Unreadable(
            f"written by tracked {FORMAT_1_VERSION} or earlier (spool format 1, whose records "
            f"are not authenticated), which this version does not read: sync it with that "
            f"version (`pip install tracked=={FORMAT_1_VERSION}`, then `tracked sync`), or "
            "remove the folder"
        )
    fmt = int(found.group(1))
    if fmt > FORMAT:
        raise Unreadable(
            f"written by a newer tracked (spool format {fmt}; this version reads formats "
            f"{READ_FORMATS[0]} to {FORMAT}): upgrade tracked, then run `tracked sync` again"
        )
    if fmt not in READ_FORMATS:
        raise Damaged(f"header.json names an unknown spool format ({fmt})")
    return fmt


def decode_header(raw: bytes, key: bytes, session: str) -> Header:
    """The header of the session folder ``session``.

    Raises:
        Unreadable: another format (older or newer): what to do is in the message.
        Damaged: not a header, or it does not verify.
    """
    fmt = header_format(raw)
    document = _verified(raw, key, b"header", session, "header.json")
    if document.get("format") != fmt:
        raise Damaged("header.json says two formats")
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
    """What a damaged line says it is (not trusted, and never parsed: a few fields picked
    out of its first bytes to help the reader find it), or ''."""
    head = raw[:4096]
    parts = []
    seq = re.search(rb'"seq":(\d{1,12})[,}]', head)
    if seq is not None:
        parts.append(f"entry {int(seq.group(1))}")
    for name in (b"stage", b"kind", b"run"):
        said = re.search(rb'"' + name + rb'":"([\w .:<>-]{1,80})"', head)
        if said is not None:
            parts.append(f"{name.decode()} {said.group(1).decode()!r}")
            break
    return f" (it says: {', '.join(parts)})" if parts else ""


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


#: Modules renamed since tracked 0.1.0: a format-2 spool's payloads were pickled with these
#: names, and its objects (deferred scores, pictures, the composer's parts) load from the new.
RENAMED_MODULES = {
    **{
        f"tracked.records.{name}": f"tracked.core.{name}"
        for name in (
            "config",
            "errors",
            "frames",
            "names",
            "params",
            "ranking",
            "report",
            "settings",
            "sparse",
            "text",
            "trust",
            "values",
        )
    },
    "tracked.recording.observe": "tracked.recording.capture",
    "tracked.recording.series": "tracked.recording.folding",
    "tracked.recording.chain": "tracked.recording.composition.chain",
    "tracked.recording.compose": "tracked.recording.composition.compose",
    "tracked.recording.composed": "tracked.recording.composition.verify",
    "tracked.recording.deferred": "tracked.recording.evaluation.deferred",
    "tracked.recording.evaluate": "tracked.recording.evaluation.evaluate",
    "tracked.recording.plots": "tracked.recording.evaluation.plots",
    "tracked.recording.scoring": "tracked.recording.evaluation.scoring",
    "tracked.spool.records": "tracked.spool.entries",
}


class _Unpickler(pickle.Unpickler):
    """cloudpickle's payloads load with the standard unpickler; this one also finds the
    classes of a module that was renamed."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(RENAMED_MODULES.get(module, module), name)


def decode_payload(data: bytes) -> StagePayload:
    """Unpickle a payload: only bytes this process made, or whose MAC verified."""
    import cloudpickle  # noqa: F401 -- the functions a payload's by-value classes load with

    parts = _Unpickler(io.BytesIO(data)).load()
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


def check_payload_chunks(chunks, ref: PayloadRef, key: bytes, session: str, seq: int) -> None:
    """``check_payload`` over the payload read in ``chunks`` (never whole in memory)."""
    got = 0

    def counted():
        nonlocal got
        for chunk in chunks:
            got += len(chunk)
            yield chunk

    digest = streamed_mac(
        key, (b"payload", session.encode(), str(seq).encode()), ref.size, counted()
    )
    if got < ref.size:
        raise Damaged(
            f"cut short ({got} of its {ref.size} bytes are in payloads.bin: the file was truncated)"
        )
    if not verify_mac(ref.mac, digest):
        raise Damaged("does not verify with your spool key (its bytes changed)")


# -- progress -----------------------------------------------------------------------------------


def encode_progress(event: Progress, key: bytes, session: str, fmt: int = FORMAT) -> bytes:
    """A progress note, in the format of its folder (``fmt``: a format-2 folder that a sync
    of this version resumes keeps one format)."""
    sign = signed_line_v2 if fmt == 2 else signed_line
    return sign({"progress": converter.unstructure(event)}, key, b"progress", session)


def decode_progress(raw: bytes, key: bytes, session: str, what: str) -> Progress:
    document = _verified(raw, key, b"progress", session, what)
    try:
        return converter.structure(document["progress"], Progress)
    except Exception as exc:
        raise Damaged(f"{what} is no progress note ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
