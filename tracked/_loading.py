"""``tracked.load_model``: load a model tracked logged, checked and with the reader's trust.

A thin front: the MLflow backend (and mlflow) load with the first model loaded, not with
``import tracked``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def load_model(
    model_uri: str,
    *,
    trusted: Sequence[str] = (),
    allow_pickle: bool = False,
    tracking_uri: str | None = None,
) -> Any:
    """Load a model that tracked logged (the composed ``pipeline`` or a stage's ``model``),
    checked against what was recorded when it was logged, in the format the writer recorded
    and with the trust the reader gives.

    The model's files are downloaded from the logged model's own location and their digest
    compared with the one recorded on the run (``tracked.model_digest.<name>``, for
    ``runs:/<run>/<name>``) or on the logged model (``models:/<model id>``,
    ``models:/<registered name>/<version>``): files changed, added, renamed or removed since
    they were logged are refused before any of them is read. A skops model is loaded with
    skops, trusting only the types the writer recorded (``tracked.model_trusted.<name>``:
    scikit-learn's and NumPy's own, and the pipeline's ``trusted_types``) and those in
    ``trusted``; the ``MLmodel`` file's own format and trust list decide nothing. A
    cloudpickle model runs any code its file holds when it loads: it is loaded only with
    ``allow_pickle=True``.

    Args:
        model_uri: ``runs:/<run id>/<name>``, ``models:/<model id>`` or
            ``models:/<registered model>/<version>``.
        trusted: more types (``module.Name``) a skops model may hold.
        allow_pickle: consent to unpickle a cloudpickle (or pickle) model.
        tracking_uri: the store; None resolves it as MLflow does (``MLFLOW_TRACKING_URI``,
            else ``sqlite:///mlflow.db`` in the current folder).

    Returns:
        The fitted scikit-learn model (a ``Pipeline`` for the composed ``pipeline``).

    Raises:
        ModelRefused: the files changed since they were logged, no digest was recorded, the
            model unpickles and ``allow_pickle`` is False, or the URI is of another kind.
    """
    # Here, not at the top: `import tracked` loads neither mlflow nor the MLflow backend.
    from tracked.backends.mlflow import loading

    return loading.load_model(
        model_uri, trusted=trusted, allow_pickle=allow_pickle, tracking_uri=tracking_uri
    )
