"""Record a class-based machine-learning workflow in MLflow without a line of tracking code.

Subclass :class:`TrackedPipeline`, give each stage method a ``stage="transformer"`` or
``stage="estimator"`` default, and every call becomes an MLflow child run of one parent run.
"""

from tracked._flush import flush
from tracked._group import group
from tracked._loading import load_model
from tracked._pipeline import TrackedPipeline
from tracked._sweep import sweep
from tracked._version import __version__
from tracked.core.errors import (
    ModelRefused,
    PipelineDefinitionError,
    TrackingError,
    TrackingWarning,
)
from tracked.core.settings import configure

__all__ = [
    "ModelRefused",
    "PipelineDefinitionError",
    "TrackedPipeline",
    "TrackingError",
    "TrackingWarning",
    "__version__",
    "configure",
    "flush",
    "group",
    "load_model",
    "sweep",
]
