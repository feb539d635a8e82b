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


EXIT_TIMEOUT_ENV = "TRACKED_EXIT_TIMEOUT"


DEFAULT_EXIT_TIMEOUT_S = 30.0


def wait_bound() -> float:
    """How long the library waits for its writes at most: ``TRACKED_EXIT_TIMEOUT`` seconds
    (default 30), the one bound of the ``with`` exit, ``close()``, ``tracked.flush()`` and
    interpreter exit. Whatever did not reach the store by then waits in the spool."""
    value = os.environ.get(EXIT_TIMEOUT_ENV)
    if not value:
        return DEFAULT_EXIT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds >= 0:  # "inf" waits as long as it takes, knowingly
        return seconds
    from tracked.records.report import notice

    notice(
        f"{EXIT_TIMEOUT_ENV}={value!r} is not a number of seconds; waiting at most "
        f"{DEFAULT_EXIT_TIMEOUT_S:g} s",
        key=f"env:{EXIT_TIMEOUT_ENV}:{value}",
    )
    return DEFAULT_EXIT_TIMEOUT_S
