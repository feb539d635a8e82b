"""The one boundary where tracking failures become warnings (or errors in strict mode).

The contract, as in MLflow's ``safe_patch``: exceptions from the user's own code propagate
untouched; exceptions from the instrumentation become a :class:`TrackingWarning` (once per
cause); in strict mode they raise :class:`TrackingError`.

Each problem is shown once: as the warning, which points at the user's line (the stage call,
the ``with``, ``close()`` or ``flush()``), not at this package. The ``tracked`` logger gets
the details (the full exception and its traceback) at DEBUG. Every message goes through
:func:`clean`: foreign exception text (SQLAlchemy's statements and parameters, tracebacks
inside messages) is cut to one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable
from typing import TypeVar

from tracked.core.errors import StoreError, TrackingError, TrackingWarning
from tracked.core.text import mask_secrets, shorten

logger = logging.getLogger("tracked")

T = TypeVar("T")


class _Masked(logging.Filter):
    """Masks the credentials (``mask_secrets``) in every record of the ``tracked`` logger:
    its message, its arguments and the traceback it carries, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: logging reports it when it formats the record
            return True
        record.msg, record.args = mask_secrets(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_secrets(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        return True


# A filter on tracked's own logger, not a process hook: it sees only tracked's records.
logger.addFilter(_Masked())


_seen: set[tuple[str, str, str]] = set()


_seen_lock = threading.Lock()


def _first_time(key: tuple[str, str, str]) -> bool:
    with _seen_lock:
        if key in _seen:
            return False
        _seen.add(key)
        return True


def reset_seen() -> None:
    """Forget which causes were reported, so that each is warned about again."""
    with _seen_lock:
        _seen.clear()


# SQLAlchemy appends the statement, its parameters and a link to every database error.
_FOREIGN_DETAILS = re.compile(
    r"\s*(?:\[SQL:.*?\]|\[parameters:.*?\]|\(Background on this error at:[^)]*\))",
    re.DOTALL,
)


_TRACEBACK = re.compile(r"\s*Traceback \(most recent call last\):.*", re.DOTALL)


def clean(text: str, limit: int | None = None) -> str:
    """``text`` as one line for a person: SQL statements, parameters and tracebacks that other
    libraries put in their messages removed, whitespace collapsed, credentials masked
    (``mask_secrets``), cut to ``limit`` characters."""
    text = _TRACEBACK.sub("", _FOREIGN_DETAILS.sub("", text))
    text = " ".join(text.split())
    text = mask_secrets(text)
    return shorten(text, limit) if limit is not None else text


def describe(exc: BaseException, limit: int = 500) -> str:
    """``TypeName: message`` in one clean line, cut to ``limit`` characters, credentials
    masked. A store error a backend mapped is described by what the store said."""
    if isinstance(exc, StoreError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return clean(f"{type(exc).__name__}: {_message(exc)}", limit)


#: MLflow's schema enforcement renders the whole input and schema before what went wrong
#: ("Failed to enforce schema of data '<frame>' with schema '<every column>'. Error: Model is
#: missing inputs ['a']"): a 500-character cut would keep the frame and lose the reason.
_ENFORCEMENT = "Failed to enforce schema of "


def _message(exc: BaseException) -> str:
    """The message of ``exc``, with MLflow's renderings of data and schemas left out."""
    text = str(exc)
    if text.startswith(_ENFORCEMENT) and ". Error: " in text:
        return "the model's input schema refused the data: " + text.rpartition(". Error: ")[2]
    return text


# The whole package: frames of any of its layers are the library's, not the user's.
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


#: Frames of these files are not the user's line either (``with`` exits run through them).
_PASS_THROUGH = ("contextlib.py", "wrapt" + os.sep)


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` called in this package that points at the
    first frame outside it: the user's stage call, ``with`` block, ``close()`` or ``flush()``.

    (``skip_file_prefixes`` does this from Python 3.12 on; this works on 3.10 too.)
    """
    frame = sys._getframe(1)
    level = 1  # the frame calling warnings.warn
    while frame is not None:
        filename = frame.f_code.co_filename
        if not (filename.startswith(_PACKAGE) or filename.endswith(_PASS_THROUGH)):
            return level
        frame = frame.f_back
        level += 1
    return max(level - 1, 1)  # no user frame (interpreter exit): the outermost one


def _details(exc: BaseException) -> str:
    """The exception's traceback and full text, credentials masked (for DEBUG)."""
    import traceback

    return mask_secrets("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))


def _warn(message: str) -> None:
    warnings.warn(TrackingWarning(message), stacklevel=user_stacklevel())


def report_failure(what: str, exc: BaseException, *, strict: bool, may_raise: bool = True) -> None:
    """Report that tracking step ``what`` failed with ``exc``.

    Args:
        what: the tracking step, phrased to follow "tracked could not ...".
        exc: what the tracker raised.
        strict: raise :class:`TrackingError` instead of warning.
        may_raise: False while a user's exception is in flight: it must not be masked,
            so strict mode falls back to a warning.
    """
    msg = clean(f"tracked could not {what}: {describe(exc)}")
    # The details (the exception's full text and traceback) are for the logger, at DEBUG.
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("%s\n%s", msg, _details(exc))
    if strict and may_raise:
        raise TrackingError(msg) from exc
    if _first_time((what, type(exc).__name__, str(exc)[:200])):
        if may_raise:
            _warn(msg)
        else:
            # Even with warnings turned into errors, the user's exception in flight wins.
            with contextlib.suppress(Warning):
                _warn(msg)


def guarded_entry(
    what: str,
    call: Callable[[], T],
    *,
    strict: bool | Callable[[], bool],
    may_raise: bool = True,
    default: T,
) -> T:
    """``call()`` at one of the library's entry points (the ``with`` enter and exit,
    ``close()``, ``run_id``, ``model_uri``, ``flush()``), as a stage call is guarded: a
    tracking failure (the store's library failing to import included) is reported by
    ``report_failure`` and ``default`` returned, so that the user's code runs on.

    Args:
        what: the step, phrased to follow "tracked could not ...".
        strict: whether the failure raises, or a callable asked only when one happened.
        may_raise: False while a user's exception is in flight (a ``with`` block that
            raised): nothing raised here may replace it.
    """
    try:
        return call()
    except Warning:
        if may_raise:
            raise  # a warning the user's filters turned into an error: theirs to see
        return default
    except TrackingError:
        if may_raise:
            raise  # strict mode, reported already: not wrapped in a second message
        return default
    except Exception as exc:
        raises = strict() if callable(strict) else strict
        report_failure(what, exc, strict=raises, may_raise=may_raise)
        return default


def notice(what: str, key: str, *, warn: bool = True) -> None:
    """A warning that is not a failure (e.g. nothing to capture), once per ``key``.

    With ``warn=False`` it is only a line on the ``tracked`` logger: for situations that
    are worth knowing but can be perfectly intended. Either way it is shown once: repeats
    go to the logger at DEBUG.
    """
    what = clean(what)
    first = _first_time(("notice", key, ""))
    if not first:
        logger.debug(what)
    elif warn:
        logger.debug(what)
        _warn(what)
    else:
        logger.warning(what)


#: The loggers that speak up when a store call fails (a logger's filter sees only its own).
FOREIGN_LOGGERS = (
    "mlflow.store.db.utils",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.artifact.artifact_repo",
    "mlflow.tracking._tracking_service.client",
    "mlflow.tracking.client",
    # A user id without a passwd entry (a container's) fails MLflow's user tag on every
    # logged model ("getpwuid(): uid not found"): nothing of the user's is lost by it.
    "mlflow.tracking.context.registry",
    "mlflow.utils.rest_utils",
    "mlflow.models.model",
    "mlflow.models.signature",
    "mlflow.models.utils",
    "mlflow.sklearn",
    "mlflow.utils.environment",
    "mlflow.utils.requirements_utils",
    "urllib3.connectionpool",
)


_quiet = threading.local()


_installed = False


_install_lock = threading.Lock()


class _ToDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not getattr(_quiet, "depth", 0):
            return True
        if logger.isEnabledFor(logging.DEBUG):
            details = record.exc_info[1] if record.exc_info else None
            text = mask_secrets(record.getMessage())
            if isinstance(details, BaseException):
                text = f"{text}\n{_details(details)}"
            logger.debug("%s: %s", record.name, text)
        return False


@contextlib.contextmanager
def foreign_logs_quieted():
    """While the block runs in this thread, other libraries' warnings and errors on
    ``FOREIGN_LOGGERS`` go to the ``tracked`` logger at DEBUG."""
    global _installed
    if not _installed:
        with _install_lock:
            if not _installed:
                to_debug = _ToDebug()
                for name in FOREIGN_LOGGERS:
                    logging.getLogger(name).addFilter(to_debug)
                _installed = True
    _quiet.depth = getattr(_quiet, "depth", 0) + 1
    try:
        yield
    finally:
        _quiet.depth -= 1
