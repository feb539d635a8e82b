"""The one boundary where tracking failures become warnings (or errors in strict mode).

The contract, as in MLflow's ``safe_patch``: exceptions from the user's own code propagate
untouched; exceptions from the instrumentation become a :class:`TrackingWarning` (once per
cause) and a line on the ``tracked`` logger; in strict mode they raise :class:`TrackingError`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings

from tracked._capture import mask_uri, shorten
from tracked._errors import TrackingError, TrackingWarning

logger = logging.getLogger("tracked")

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


def describe(exc: BaseException, limit: int = 500) -> str:
    """``TypeName: message``, cut to ``limit`` characters, credentials in URIs masked."""
    return shorten(mask_uri(f"{type(exc).__name__}: {exc}"), limit)


def report_failure(what: str, exc: BaseException, *, strict: bool, may_raise: bool = True) -> None:
    """Report that tracking step ``what`` failed with ``exc``.

    Args:
        what: the tracking step, phrased to follow "tracked could not ...".
        exc: what the tracker raised.
        strict: raise :class:`TrackingError` instead of warning.
        may_raise: False while a user's exception is in flight: it must not be masked,
            so strict mode falls back to a warning.
    """
    msg = mask_uri(f"tracked could not {what}: {describe(exc)}")
    if strict and may_raise:
        raise TrackingError(msg) from exc
    logger.warning(msg, exc_info=logger.isEnabledFor(logging.DEBUG))
    if _first_time((what, type(exc).__name__, str(exc)[:200])):
        if may_raise:
            warnings.warn(TrackingWarning(msg), stacklevel=3)
        else:
            # Even with warnings turned into errors, the user's exception in flight wins.
            with contextlib.suppress(Warning):
                warnings.warn(TrackingWarning(msg), stacklevel=3)


def notice(what: str, key: str, *, warn: bool = True) -> None:
    """A warning that is not a failure (e.g. nothing to capture), once per ``key``.

    With ``warn=False`` it is only a line on the ``tracked`` logger: for situations that
    are worth knowing but can be perfectly intended.
    """
    what = mask_uri(what)
    logger.warning(what)
    if warn and _first_time(("notice", key, "")):
        warnings.warn(TrackingWarning(what), stacklevel=3)
