"""The MLflow backend: the only package of ``tracked`` that imports mlflow.

Lives here: the backend (``backend.MlflowBackend``, ``shared_backend``), the bounded and
retried client (``client``), MLflow's errors mapped to the store's state (``errors``), key
and value limits (``keys``), model logging, signatures and skops trust (``models``),
dataset inputs (``datasets``), requirements from the modules a model holds (``needs``),
fluent-run nesting and the autologging pause (``fluent``) and what ``tracked compare``
reads (``reading``).

mlflow itself is imported on first use, never at import: ``import tracked`` stays quick.
May import: ``tracked.backends.base`` and ``tracked.core``.
"""

from tracked.backends.mlflow.backend import MlflowBackend, shared_backend

__all__ = ["MlflowBackend", "shared_backend"]
