"""What ``tracked compare`` reads from an MLflow store: the store itself, checked before
MLflow would discover slowly or wrongly that it is not there, and a experiment's pipeline
runs. Failures are ``CliError``s whose one line says what to do."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tracked.backends.mlflow.client import check_reachable, default_tracking_uri, load_mlflow
from tracked.core.errors import CliError
from tracked.core.names import PIPELINE_TAG
from tracked.core.text import mask_secrets


def open_store(tracking_uri: str | None) -> tuple[Any, str]:
    """An ``MlflowClient`` for ``tracking_uri`` (None: MLflow's own resolution) and the URI.

    Checks first what MLflow would otherwise discover slowly or wrongly: a local store that
    does not exist (MLflow would create an empty one) and an HTTP server that does not
    accept connections (MLflow would retry for minutes).

    Raises:
        CliError: the store is not there or cannot be opened.
    """
    mlflow = load_mlflow()
    uri = tracking_uri or default_tracking_uri()
    where = _describe_source(tracking_uri)
    path = _local_store_path(uri)
    if path is not None and not path.exists():
        msg = (
            f"no MLflow store at {path} ({where} {mask_secrets(uri)}); run in the folder that "
            "holds mlflow.db, pass --tracking-uri or set MLFLOW_TRACKING_URI"
        )
        raise CliError(msg)
    try:
        check_reachable(uri)
    except ConnectionError as exc:
        msg = (
            f"cannot reach the MLflow tracking server {mask_secrets(uri)} ({where}): {exc}; "
            "start the server or pass another --tracking-uri"
        )
        raise CliError(msg) from None
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
    except Exception as exc:
        raise _store_error(uri, exc) from None
    return client, uri


def pipeline_runs(client: Any, uri: str, experiment: str) -> list[Any]:
    """The active pipeline runs (tagged ``tracked.pipeline``) of ``experiment``.

    Raises:
        CliError: no such experiment, a deleted one, one without pipeline runs, or the
            store failed.
    """
    from mlflow.entities import ViewType

    try:
        found = client.get_experiment_by_name(experiment)
        if found is None and experiment.isdigit():
            found = _experiment_by_id(client, experiment)
        if found is None:
            known = [e.name for e in client.search_experiments(max_results=21)]
            listing = ", ".join(repr(name) for name in known[:20]) or "none"
            if len(known) > 20:
                listing += ", ..."
            msg = (
                f"no experiment {experiment!r} in {mask_secrets(uri)} (experiments there: "
                f"{listing}); check the name, or pass --tracking-uri for another store"
            )
            raise CliError(msg)
        if found.lifecycle_stage == "deleted":
            msg = (
                f"experiment {experiment!r} in {mask_secrets(uri)} is deleted; restore it with "
                f"`mlflow experiments restore --experiment-id {found.experiment_id}`"
            )
            raise CliError(msg)
        runs: list[Any] = []
        token = None
        while True:
            page = client.search_runs(
                [found.experiment_id],
                filter_string=f"tags.`{PIPELINE_TAG}` LIKE '%'",
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=1000,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            runs.extend(run for run in page if PIPELINE_TAG in run.data.tags)
            token = page.token
            if not token:
                break
    except CliError:
        raise
    except Exception as exc:
        raise _store_error(uri, exc) from None
    if not runs:
        msg = (
            f"experiment {experiment!r} in {mask_secrets(uri)} has no pipeline runs (runs tagged "
            f"{PIPELINE_TAG}); run a TrackedPipeline with experiment = {experiment!r} first"
        )
        raise CliError(msg)
    return runs


def _experiment_by_id(client: Any, experiment_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_experiment(experiment_id)
    except MlflowException:
        return None


def _describe_source(tracking_uri: str | None) -> str:
    if tracking_uri:
        return "--tracking-uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "MLFLOW_TRACKING_URI"
    return "MLflow's default"


def _local_store_path(uri: str) -> Path | None:
    """The file or folder of a local store URI (sqlite, file, plain path), else None."""
    if uri.startswith("sqlite:"):
        rest = uri.removeprefix("sqlite:").split("?", 1)[0]
        if not rest.startswith("///") or rest[3:] in ("", ":memory:"):
            return None  # in-memory database
        return Path(rest[3:]).absolute()
    scheme = urlsplit(uri).scheme
    if scheme == "file":
        return Path(urlsplit(uri).path).absolute()
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):  # a plain path (C:\ on Windows)
        return Path(uri).absolute()
    return None


def _store_error(uri: str, exc: BaseException) -> CliError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    msg = (
        f"cannot read the MLflow store {mask_secrets(uri)}: {type(exc).__name__}: {detail}; "
        "check --tracking-uri (or MLFLOW_TRACKING_URI) and that the store is up"
    )
    return CliError(mask_secrets(msg))
