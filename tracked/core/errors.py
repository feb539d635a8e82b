"""The library's exceptions and warnings, each subclassing the nearest builtin."""

from __future__ import annotations


class TrackingWarning(UserWarning):
    """Tracking itself failed or had nothing to record; the workflow was not affected.

    Raised as [`TrackingError`][tracked.TrackingError] instead when strict mode is on
    (``TRACKED_STRICT=1`` or ``strict = True`` on the pipeline class).
    """


class TrackingError(RuntimeError):
    """A tracking failure, raised only in strict mode.

    Outside strict mode the same failure is a [`TrackingWarning`][tracked.TrackingWarning].
    """


class PipelineDefinitionError(TypeError):
    """A ``TrackedPipeline`` subclass is defined wrongly (a typo in a stage kind, ...).

    Raised when the class statement runs, so mistakes surface before any data flows.
    """


class CliError(Exception):
    """A failure the user can fix (wrong name, store away): one line on stderr, exit 1."""


class StoreError(Exception):
    """A store operation failed; backends raise one of the two kinds below, mapped from
    their library's own errors inside the backend (callers check types, never text)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached now (connection refused, timeout, HTTP 5xx, 429): the
    same request may succeed later, so records wait in the spool."""


class StoreRejected(StoreError):
    """The store refused the request for its content: sending it again will not help."""


class ModelRefused(RuntimeError):
    """``tracked.load_model`` did not load a model: its files changed since they were logged,
    nothing recorded what they were, or loading it would unpickle without the caller's
    consent. The message says which, and what to do."""
