"""Text helpers shared by every layer: qualified names, values as short text, and the one
masker of credentials (``mask_secrets``) that every string leaving the process goes through.
"""

from __future__ import annotations

import base64
import functools
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


# A credential word as a whole part of a name (the name lower-cased, camelCase and hyphens
# split into `_`): `db__password`, `apiKey`, `client_secret`, `AUTH_TOKEN`, `X-Api-Key`,
# `headers__Authorization`, `privateKey`, `AccountKey`, `storage_options__key`; not
# `tokenizer`, `max_tokens`, `author` or `sort_key`, which are not secrets.
_SECRET_NAME = re.compile(
    r"(?:^|[^a-z])(?:password|passwd|passphrase|pwd|secrets?|token|api_?key|access_?key"
    r"|private_?key|session_?key|account_?key|shared_?access_?key|credentials?|auth"
    r"|authorization|bearer|cookies?|dsn)(?:[^a-z]|$)"
    # fsspec's and s3fs' `key` (beside `secret`) and an Azure SAS URL's `sig`: a name that
    # is the word itself, or ends so after a nesting separator (`storage_options__key`).
    r"|(?:^|__|\.)(?:key|sig)$"
)


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@functools.lru_cache(maxsize=4096)  # the same few names are asked about on every call
def is_secret_name(name: str) -> bool:
    """Whether a param or tag name looks like it holds a credential (``dbPassword``,
    ``X-Api-Key`` too)."""
    return _SECRET_NAME.search(_CAMEL.sub("_", name).lower().replace("-", "_")) is not None


# Well-known credential formats, whatever name they are under. The patterns are those of
# detect-secrets' plugins (Yelp/detect-secrets, Apache-2.0: aws.py, github_token.py,
# gitlab_token.py, slack.py, stripe.py, gcp_key.py, openai.py, jwt.py, private_key.py) and
# gitleaks' default rules (gitleaks/gitleaks, MIT: aws-access-token, github-fine-grained-pat,
# slack-app-token, pypi-upload-token, npm-access-token, hashicorp-tf-api-token), copied
# rather than depended on: detect-secrets pulls in requests and PyYAML and scans files line
# by line, where tracked masks short strings on the caller's thread. None of them matches a
# hex digest or a run id (tracked's own values).
_TOKEN_PATTERNS = (
    # AWS access key ids (gitleaks aws-access-token; detect-secrets has AKIA only).
    r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16}",
    # GitHub: classic tokens, then fine-grained personal access tokens.
    r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9_]{36,}",
    r"github_pat_[A-Za-z0-9_]{22,}",
    # GitLab tokens.
    r"(?:glpat|gloas|gldt|glrt|glcbt|glptt|glft|glimt|glagent|glsoat)-[A-Za-z0-9_\-]{20,50}",
    # Slack tokens, app tokens and webhooks.
    r"xox[abposr]-(?:[0-9]+-)+[A-Za-z0-9]+",
    r"xapp-[0-9]+-[A-Za-z0-9]+-[0-9]+-[A-Za-z0-9]+",
    r"https://hooks\.slack\.com/services/T[A-Za-z0-9_]+/B[A-Za-z0-9_]+/[A-Za-z0-9_]+",
    # Stripe secret and restricted keys (live and test).
    r"[rs]k_(?:live|test)_[0-9A-Za-z]{24,}",
    # Google API keys and OAuth client ids (GCP).
    r"AIza[0-9A-Za-z_\-]{35}",
    r"(?<![0-9])[0-9]+-[0-9A-Za-z_]{32}\.apps\.googleusercontent\.com",
    # OpenAI keys.
    r"sk-[A-Za-z0-9_\-]*[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}",
    # PyPI upload tokens, npm access tokens, HashiCorp Vault tokens.
    r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,}",
    r"npm_[A-Za-z0-9]{36}",
    r"hv[sbr]\.[A-Za-z0-9_\-]{24,}",
    # JSON Web Tokens: a JSON header and claims (`{"` is `eyJ` in base64url).
    r"eyJ[A-Za-z0-9_\-=]+\.eyJ[A-Za-z0-9_\-=]+\.?[A-Za-z0-9_\-.+/=]*",
    # Private key blocks, to their end (or to the end of a text that lost it).
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY"
    r"(?: BLOCK)?-----|.*)",
    r"PuTTY-User-Key-File-\d+:.*",
)


_TOKENS = re.compile("|".join(f"(?:{p})" for p in _TOKEN_PATTERNS), re.DOTALL)


# `name=value` and `name: value` pairs, in URLs and query strings (`?access_token=...`),
# connection strings (`Pwd={a;b}`), headers (`X-Api-Key: ...`, `Authorization: Basic ...`),
# JSON and Python reprs (`"db_password": "..."`, also escaped inside a JSON string) and
# keyword arguments (`P(password='...')`); the value is masked when the name is a secret
# name (``is_secret_name``). The name and its separator are one pattern, the value another,
# read only after a secret name: a value is never scanned to be passed over.
_PAIR = re.compile(r"""(?<![\w.\-])(?P<name>[A-Za-z_][\w.\-]*)\\?["']?\s*[:=]\s*""")


_VALUE = re.compile(
    r"""\\"(?:[^\\]|\\(?!"))*\\"|[bBrRuU]?"(?:[^"\\]|\\.)*"|[bBrRuU]?'(?:[^'\\]|\\.)*'"""
    r"""|\{[^}]*\}|\([^)]*\)|\[[^\]]*\]"""
    r"""|(?:(?i:basic|bearer|token|digest|negotiate|aws4-hmac-sha256)\s+)?[^\s;&,'"})\]<>]+"""
)


# A bare `Bearer abc` or `Basic dXNlcjpwYXNz` outside any `Authorization:` header.
_SCHEME = re.compile(r"(?i)(?P<key>\b(?P<scheme>bearer|basic)\s+)(?P<value>[A-Za-z0-9._~+/=\-]+)")


_URI_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s?#]+@")


# What each token format starts with: text without any of these holds none of them.
_TOKEN_HINT = re.compile(
    r"-----BEGIN|PuTTY|A3T|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|gh[pousr]_"
    r"|github_pat_|gl[a-z]+-|xox|xapp-|[rs]k_|AIza|googleusercontent|sk-|pypi-|npm_"
    r"|hv[sbr]\.|eyJ|hooks\.slack"
)


_SCHEME_HINT = re.compile(r"(?i)bearer|basic")


def _masked_value(value: str) -> str:
    """A pair's value masked: the quotes of a quoted value and an ``Authorization``
    header's scheme (``Basic``, ``Bearer``) kept, so that JSON stays JSON."""
    for quote in ('\\"', '"', "'"):
        if len(value) >= 2 * len(quote) and value.startswith(quote) and value.endswith(quote):
            return f"{quote}{MASK}{quote}"
    scheme, space, _ = value.partition(" ")
    if space and scheme.lower() in _SCHEMES:
        return f"{scheme} {MASK}"
    return MASK


_SCHEMES = frozenset({"basic", "bearer", "token", "digest", "negotiate", "aws4-hmac-sha256"})


def _mask_pairs(text: str) -> str:
    parts: list[str] = []
    pos = 0
    while (match := _PAIR.search(text, pos)) is not None:
        value = _VALUE.match(text, match.end()) if is_secret_name(match["name"]) else None
        if value is None:
            # Only the name is passed over: what follows may hold pairs of its own
            # (`url: https://h/?token=...`).
            parts.append(text[pos : match.end()])
            pos = match.end()
        else:
            parts.append(text[pos : match.end()])
            parts.append(_masked_value(value[0]))
            pos = value.end()
    if not parts:
        return text
    parts.append(text[pos:])
    return "".join(parts)


def _mask_scheme(match: re.Match[str]) -> str:
    value = match["value"]
    if match["scheme"].lower() == "basic" and not _is_basic_credentials(value):
        return match[0]  # "Basic usage", not a header
    return f"{match['key']}{MASK}"


def _is_basic_credentials(value: str) -> bool:
    """Whether ``value`` is base64 of ``user:password``, as in a Basic ``Authorization``."""
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return False
    return ":" in decoded


def mask_secrets(text: str) -> str:
    """``text`` with the credentials inside it replaced by ``***``: the one masker of every
    output (params, tags, run names, artifacts' text, warnings, log lines, the commands').

    Masked: well-known token formats under any name (AWS, Google, GitHub, GitLab, Slack,
    Stripe, OpenAI, PyPI, npm and Vault tokens, JWTs, private key blocks), the values of
    ``name=value`` / ``name: value`` pairs whose name is a credential name
    (``is_secret_name``: ``?access_token=``, ``"db_password": "..."``, ``X-Api-Key: ...``,
    ``Authorization: Basic ...``, ``Pwd={...}``), bare ``Bearer`` tokens and Basic
    credentials, and the user and password of every URI.
    """
    # Each pass runs only on text that has what it looks for: most param values ("100",
    # "auto", "l2") pass none of these checks, and cost about a microsecond.
    if _TOKEN_HINT.search(text):
        text = _TOKENS.sub(MASK, text)
    if "=" in text or ":" in text:
        text = _mask_pairs(text)
    if _SCHEME_HINT.search(text):
        text = _SCHEME.sub(_mask_scheme, text)
    if "@" in text:
        text = _URI_CREDENTIALS.sub(rf"\g<scheme>{MASK}@", text)
    return text


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
