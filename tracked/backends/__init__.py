"""Where records go. The MLflow backend is the only module that imports mlflow (lazily)."""

from tracked.backends.base import Backend
from tracked.backends.memory import MemoryBackend

__all__ = ["Backend", "MemoryBackend"]
