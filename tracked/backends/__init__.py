"""Where records go: the backend protocol and its implementations.

Lives here: ``base`` (the ``Backend`` protocol, its optional ``Capabilities``, the typed
``StoreUnavailable`` / ``StoreRejected`` errors), ``memory`` (runs in a dict, for tests) and
``mlflow/`` (the only package that imports mlflow).

May import: ``tracked.core`` only.
"""

from typing import Any

from tracked.backends.base import Backend

__all__ = ["Backend", "MemoryBackend"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `import tracked` does not need the memory backend's classes.
    if name == "MemoryBackend":
        from tracked.backends.memory import MemoryBackend

        return MemoryBackend
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
