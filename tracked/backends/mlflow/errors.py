"""MLflow's errors mapped at the backend boundary to ``StoreUnavailable`` (the store is away) and
``StoreRejected`` (it refused the content).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from tracked.backends.base import REQUIRED_METHODS
from tracked.core.errors import StoreError, StoreRejected, StoreUnavailable

#: What a store's own trouble says (its disk, its lock), as opposed to a record it refuses.
_STORE_TROUBLE = (
    "readonly database",
    "read-only",
    "database is locked",
    "disk is full",
    "disk I/O error",
    "unable to open database",
    "No space left",
)


#: MLflow's text for an HTTP answer that is no JSON error: "... failed with error code 502".
_HTTP_STATUS = re.compile(r"failed with error code (\d{3})")


def _away_status(status: int) -> bool:
    return status >= 500 or status == 429


def is_store_away(exc: BaseException) -> bool:
    """Whether ``exc`` (or one of its causes) says the store is away, not that the record is
    wrong: connection errors and timeouts, HTTP 5xx and 429 answers, MLflow's
    TEMPORARILY_UNAVAILABLE (a database's operational error) and REQUEST_LIMIT_EXCEEDED, and a
    local store's full, locked or read-only disk.

    MLflow's default code, INTERNAL_ERROR, is no outage by itself: a local store raises it
    for a value it cannot hold (an integer SQLite cannot store); such a record is refused,
    reported with its run and reason, and never makes the store read as away. From an HTTP
    server INTERNAL_ERROR is a 500 answer: away.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, StoreError):  # mapped already
            return isinstance(link, StoreUnavailable)
        if _says_away(link):
            return True
        link = link.__cause__ or link.__context__
    return False


def _says_away(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, OSError):  # requests' connection errors and timeouts too
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return not isinstance(status, int) or _away_status(status)
    if isinstance(exc, MlflowException):
        if exc.error_code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"):
            return True
        text = exc.message if isinstance(exc.message, str) else str(exc)
        if "failed with exception" in text or "failed with timeout exception" in text:
            return True  # an HTTP request that got no answer (MLflow's own wording)
        status = _HTTP_STATUS.search(text)
        if status is not None:
            return _away_status(int(status.group(1)))
        if isinstance(exc, RestException):  # a server's JSON answer: its code is its status
            return _away_status(exc.get_http_status_code())
    text = str(exc)
    return any(word in text for word in _STORE_TROUBLE)


def mapped(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` raising only ``StoreUnavailable`` (the store is away) or ``StoreRejected``
    (anything else), each from the error MLflow raised: callers check types, never text."""

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            kind = StoreUnavailable if is_store_away(exc) else StoreRejected
            raise kind(str(exc)) from exc

    return call


#: The backend's calls that reach the store, each ``mapped``.
STORE_CALLS = (
    *REQUIRED_METHODS,
    "find_run",
    "experiment_of",
    "experiment_id",
)


def sealed(cls: type) -> type:
    """Map the store errors of every ``STORE_CALLS`` method of backend class ``cls``."""
    for name in STORE_CALLS:
        setattr(cls, name, mapped(getattr(cls, name)))
    return cls
