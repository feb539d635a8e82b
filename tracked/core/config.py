"""The environment variables tracked reads, declared in one place.

Each variable's name, default and doc text are here (the configuration page's table is built
from ``ENVIRONMENT``); the pipeline settings are declared in ``tracked/core/settings.py``.
Resolution order: the environment > ``tracked.configure`` > the class body > the default.
"""

from __future__ import annotations

import os

from attrs import frozen

from tracked.core.report import notice


@frozen
class EnvVar:
    """One environment variable: its ``name``, its ``default`` as the page shows it, ``doc``."""

    name: str
    default: str
    doc: str


ENVIRONMENT = (
    EnvVar(
        "TRACKED_ENABLED",
        "unset",
        "`0` (or `false`, `no`, `off`) switches tracking off for every pipeline instance "
        "created afterwards, whatever the class says",
    ),
    EnvVar("TRACKED_STRICT", "unset", "`1` turns strict mode on, `0` off, for every pipeline"),
    EnvVar(
        "TRACKED_EXIT_TIMEOUT",
        "30",
        "seconds: bounds every wait for the writer (the `with` exit, `close()`, "
        "`tracked.flush()`, `pipe.run_id`/`model_uri`, interpreter exit); `inf` waits as "
        "long as it takes ([a store that stalls](stores.md#a-store-that-stalls))",
    ),
    EnvVar("TRACKED_QUEUE_SIZE", "256", "bounds the writer's queue of records"),
    EnvVar(
        "TRACKED_SPOOL_DIR",
        "the user cache folder's `tracked/spool`",
        "where records wait while the store is away "
        "([stores](stores.md#when-the-store-is-away-the-writer-and-the-spool))",
    ),
    EnvVar(
        "TRACKED_SPOOL_MAX_BYTES",
        "1073741824 (1 GiB)",
        "the spool's size cap: past it, new records are not spooled (a warning says so)",
    ),
    EnvVar(
        "TRACKED_SPOOL_KEY_FILE",
        "the user config folder's `tracked/spool.key`",
        "the key that signs the spool's records ([security](security.md))",
    ),
    EnvVar(
        "TRACKED_SQLITE_WAL",
        "unset",
        "`1` opens a sqlite store in write-ahead logging with `synchronous=NORMAL` "
        "([performance](performance.md))",
    ),
)


def environment_table() -> str:
    """The configuration page's table of environment variables, in markdown."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{var.name}` | {var.default} | {var.doc} |" for var in ENVIRONMENT]
    return "\n".join(rows)


_OFF = frozenset({"0", "false", "no", "off"})


_ON = frozenset({"1", "true", "yes", "on"})


ENABLED_VAR = "TRACKED_ENABLED"
STRICT_VAR = "TRACKED_STRICT"
QUEUE_SIZE_ENV = "TRACKED_QUEUE_SIZE"
SPOOL_ENV = "TRACKED_SPOOL_DIR"
MAX_BYTES_ENV = "TRACKED_SPOOL_MAX_BYTES"
KEY_ENV = "TRACKED_SPOOL_KEY_FILE"
SQLITE_WAL_ENV = "TRACKED_SQLITE_WAL"


def env_text(name: str) -> str | None:
    """The value of tracked's variable ``name`` (one of ``ENVIRONMENT``), None when unset or
    blank: every ``TRACKED_*`` variable is read through here or ``env_flag``."""
    raw = os.environ.get(name)
    return raw.strip() if raw is not None and raw.strip() else None


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


def env_strict() -> bool:
    """Whether ``TRACKED_STRICT`` makes tracking failures raise, where no pipeline's settings
    apply (``tracked.flush``, a group). A pipeline's own strictness is
    ``tracked.core.settings.strict_of``: never read from its attributes, which are the user's
    (a hyperparameter may be called ``strict``)."""
    return bool(env_flag(STRICT_VAR))


EXIT_TIMEOUT_ENV = "TRACKED_EXIT_TIMEOUT"


DEFAULT_EXIT_TIMEOUT_S = 30.0


def wait_bound() -> float:
    """How long the library waits for its writes at most: ``TRACKED_EXIT_TIMEOUT`` seconds
    (default 30), the one bound of the ``with`` exit, ``close()``, ``tracked.flush()`` and
    interpreter exit. Whatever did not reach the store by then waits in the spool."""
    value = env_text(EXIT_TIMEOUT_ENV)
    if not value:
        return DEFAULT_EXIT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds >= 0:  # "inf" waits as long as it takes, knowingly
        return seconds

    notice(
        f"{EXIT_TIMEOUT_ENV}={value!r} is not a number of seconds; waiting at most "
        f"{DEFAULT_EXIT_TIMEOUT_S:g} s",
        key=f"env:{EXIT_TIMEOUT_ENV}:{value}",
    )
    return DEFAULT_EXIT_TIMEOUT_S
