"""Text helpers shared by every layer: qualified names, values as short text, and masking of
secrets in names, values and store URIs.
"""

from __future__ import annotations

import re
from typing import Any


def qualified_name(obj: object) -> str:
    """``module.QualName`` of ``obj``'s class; a script's classes are ``__main__.X`` also in
    the workers multiprocessing spawns (where the script runs as ``__mp_main__``)."""
    cls = type(obj)
    module = "__main__" if cls.__module__ == "__mp_main__" else cls.__module__
    return f"{module}.{cls.__qualname__}"


def to_text(value: object) -> str:
    """A printable string for any value; never raises.

    Lone surrogates and NUL characters, which stores reject, are escaped.
    """
    if isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except Exception:
            try:
                text = repr(value)
            except Exception:
                text = f"<unprintable {qualified_name(value)}>"
        if not isinstance(text, str):  # a broken __str__ may return anything
            text = f"<unprintable {qualified_name(value)}>"
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with a trailing ``...``."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


MASK = "***"


# A credential word as a whole part of a name: `db__password`, `apiKey`, `client_secret`,
# `AUTH_TOKEN`, `headers__Authorization`, `privateKey`; not `tokenizer`, `max_tokens` or
# `author`, which are not secrets.
_SECRET_NAME = re.compile(
    r"(?:^|[^a-z])(?:password|passwd|pwd|secrets?|token|api_?key|access_?key"
    r"|private_?key|session_?key|credentials?|auth|authorization|bearer|cookies?|dsn)"
    r"(?:[^a-z]|$)"
)


_URI_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s?#]+@")


# `password=...` / `Pwd={...}` in a connection string, `Bearer abc` in a header value.
_ASSIGNED_SECRET = re.compile(
    r"(?i)(?P<key>\b(?:password|passwd|pwd|secret|token|api_?key|access_?key)\s*=\s*)"
    r"(?:\{[^}]*\}|'[^']*'|\"[^\"]*\"|[^;&\s,'\"]+)"
)


_BEARER = re.compile(r"(?i)(?P<key>\bbearer\s+)[A-Za-z0-9._~+/=\-]+")


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_name(name: str) -> bool:
    """Whether a param or tag name looks like it holds a credential (``dbPassword`` too)."""
    return _SECRET_NAME.search(_CAMEL.sub("_", name).lower()) is not None


def mask_uri(text: str) -> str:
    """``text`` with the user and password of every URI in it replaced by ``***``."""
    return _URI_CREDENTIALS.sub(r"\g<scheme>***@", text)


def mask_secrets(text: str) -> str:
    """``text`` with the credentials inside it replaced by ``***``: a URI's user and
    password anywhere in it, ``password=`` / ``pwd=`` values of connection strings and
    ``Bearer`` tokens."""
    text = _ASSIGNED_SECRET.sub(rf"\g<key>{MASK}", text)
    text = _BEARER.sub(rf"\g<key>{MASK}", text)
    return mask_uri(text)


def masked(name: str, value: Any) -> Any:
    """``value`` as it may be logged under ``name``: ``***`` for a credential-like name,
    else with the credentials inside it masked."""
    if is_secret_name(name):
        return MASK
    return mask_secrets(value) if isinstance(value, str) else value


#: Longest param or tag value kept when it is read: above every store limit (MLflow's are
#: 6000 characters for a param, 8000 for a tag), so the backend still cuts what it logs and
#: notes the cut (``key_notes.json``), but a 50 MB value never becomes 50 MB of records.
CAPTURED_TEXT = 10_000


#: Characters past a cut that are still searched for credentials: one that straddles the
#: cut is masked, not half-kept.
_MASK_MARGIN = 512


def captured_text(value: object, limit: int = CAPTURED_TEXT) -> str:
    """``value`` as text that may be recorded: credentials masked, cut to ``limit``
    characters with the backend's marker (a trailing ``...``) when longer."""
    text = to_text(value)
    if len(text) <= limit:
        return mask_secrets(text)
    return mask_secrets(text[: limit + _MASK_MARGIN])[: limit - 3] + "..."
