"""Configuration resolution, in one place.

Order: environment kill switch > instance attribute > class attribute > default.
"""

from __future__ import annotations

import os

from tracked.records.report import notice

_OFF = frozenset({"0", "false", "no", "off"})


_ON = frozenset({"1", "true", "yes", "on"})


ENABLED_VAR = "TRACKED_ENABLED"


STRICT_VAR = "TRACKED_STRICT"


def env_flag(name: str) -> bool | None:
    """The boolean value of environment variable ``name``, None when unset or empty."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    notice(
        f"{name}={raw!r} is not understood (use 1/true/yes/on or 0/false/no/off); ignoring it",
        key=f"env:{name}:{raw}",
    )
    return None


def killed_by_env() -> bool:
    """True when ``TRACKED_ENABLED`` switches tracking off everywhere."""
    return env_flag(ENABLED_VAR) is False


def is_strict(instance: object) -> bool:
    """Whether tracking failures raise for this pipeline instance."""
    env = env_flag(STRICT_VAR)
    if env is not None:
        return env
    return bool(getattr(instance, "strict", False))
