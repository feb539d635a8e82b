"""Param, metric and tag keys made acceptable to MLflow (characters, lengths, duplicates), with
notes of what changed; credentials masked in keys and values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from tracked.core.errors import StoreRejected
from tracked.core.text import mask_secrets, masked, shorten

PARENT_RUN_TAG = "mlflow.parentRunId"


# MLflow 3.x store limits (mlflow.utils.validation); copied so that sanitising needs no import.
MAX_KEY_LENGTH = 250


MAX_PARAM_VALUE_LENGTH = 6000


MAX_TAG_VALUE_LENGTH = 8000


MAX_DATASET_DIGEST_LENGTH = 36


MAX_DATASET_SCHEMA_LENGTH = 1048575


MAX_INPUT_TAG_VALUE_LENGTH = 500


_BAD_KEY_CHARACTERS = re.compile(r"[^\w.\- :]")


def sanitize_key(key: str) -> str:
    """A param/metric/tag name MLflow accepts: bad characters become ``_``, cut to 250.

    Slashes are replaced too: MLflow treats names as paths and rejects ones that do not
    normalise to themselves.
    """
    clean = _BAD_KEY_CHARACTERS.sub("_", key)[:MAX_KEY_LENGTH]
    if clean in ("", ".") or clean.startswith(".."):
        clean = ("_" + clean)[:MAX_KEY_LENGTH]
    return clean


def unique_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each key -> its sanitised form; keys that become equal once sanitised (``a/b`` and
    ``a?b``) are kept apart with a numeric suffix rather than one overwriting the other."""
    renamed: dict[str, str] = {}
    taken: set[str] = set()
    for key in keys:
        if key in renamed:
            continue
        name = base = sanitize_key(key)
        counter = 1
        while name in taken:
            counter += 1
            suffix = f"_{counter}"
            name = base[: MAX_KEY_LENGTH - len(suffix)] + suffix
        renamed[key] = name
        taken.add(name)
    return renamed


def sanitize_keys(
    mapping: Mapping[str, str], limit: int, notes: KeyNotes | None = None, kind: str = "params"
) -> dict[str, str]:
    """``mapping`` with sanitised (``unique_keys``) keys and truncated values, credentials
    masked (the last net: capture masks them already); ``notes`` collects what changed,
    under ``kind``."""
    clean: dict[str, str] = {}
    # A name may hold a credential too (a dict hyperparameter keyed by a token): it is
    # masked before anything, key_notes.json included, sees it.
    shown = {key: mask_secrets(key) for key in mapping}
    names = unique_keys(list(shown.values()))
    for key, value in mapping.items():
        name = names[shown[key]]
        value = masked(shown[key], value)
        clean[name] = shorten(value, limit)
        if notes is not None:
            if name != shown[key]:
                notes.renamed[kind][shown[key]] = name
            if len(value) > limit:
                notes.truncated[kind][name] = value
    return clean


class KeyNotes:
    """What a run's logging changed to fit MLflow, kept as ``tracked/key_notes.json``:
    keys renamed (per kind: params, metrics, tags; original -> logged), values truncated
    (per kind: params, tags; logged key -> full value), and params logged again with another
    value (key -> [kept, rejected values])."""

    ARTIFACT = "tracked/key_notes.json"

    def __init__(self) -> None:
        #: Per kind (params, metrics, tags): original name -> logged name.
        self.renamed: dict[str, dict[str, str]] = {"params": {}, "metrics": {}, "tags": {}}
        #: Per kind (params, tags): logged name -> the whole value.
        self.truncated: dict[str, dict[str, str]] = {"params": {}, "tags": {}}
        self.conflicts: dict[str, list[str]] = {}
        self.params: dict[str, str] = {}

    def size(self) -> int:
        renamed = sum(len(names) for names in self.renamed.values())
        truncated = sum(len(values) for values in self.truncated.values())
        return renamed + truncated + len(self.conflicts)

    def document(self) -> bytes:
        import json

        content = {
            "renamed": self.renamed,
            "truncated": self.truncated,
            "param_conflicts": self.conflicts,
        }
        return json.dumps(content, indent=1, sort_keys=True).encode()


class ParamConflict(StoreRejected, ValueError):
    """A param was logged again on a run with another value (MLflow refuses that)."""
