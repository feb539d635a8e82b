"""The MLflow backend: runs, params, metrics, tags, artifacts and dataset inputs written
with an explicit client and run ids, never through MLflow's fluent state.

The models half (``log_model``, ``register_model``, ``tag_model_version``) is the
``models.ModelLogging`` mixin; mlflow is imported on first use, not at import.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tracked.backends.base import store_library_loaded
from tracked.backends.mlflow.client import (
    GuardedClient,
    StoreNotMigrated,
    _bound_requests,
    _open_client,
    absolute_store_uri,
    check_reachable,
    default_artifact_root,
    default_tracking_uri,
    import_mlflow,
    load_mlflow,
    source_tags,
)
from tracked.backends.mlflow.datasets import dataset_input
from tracked.backends.mlflow.errors import is_store_away, sealed
from tracked.backends.mlflow.fluent import outer_run_id
from tracked.backends.mlflow.keys import (
    MAX_DATASET_DIGEST_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    PARENT_RUN_TAG,
    KeyNotes,
    ParamConflict,
    sanitize_keys,
    unique_keys,
)
from tracked.backends.mlflow.models import ModelLogging
from tracked.core.config import SQLITE_WAL_ENV, env_flag
from tracked.core.text import mask_secrets
from tracked.core.values import DataSummary, Metric


@sealed
class MlflowBackend(ModelLogging):
    """Writes runs to an MLflow tracking store through ``MlflowClient`` and explicit run ids.

    Args:
        tracking_uri: the store; None resolves it now as MLflow does
            (``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in the current directory).
    """

    #: How a replay tells an outage from a record the store refuses (see ``is_store_away``).
    is_store_away = staticmethod(is_store_away)

    def __init__(self, tracking_uri: str | None = None) -> None:
        self._requested_uri = absolute_store_uri(tracking_uri or default_tracking_uri())
        #: Where a database store keeps artifacts when nothing says otherwise: MLflow's
        #: ``./mlruns``, resolved now, not in whichever folder is current when the writer
        #: first talks to the store.
        self._artifact_root = default_artifact_root(self._requested_uri)
        self._notes: dict[str, KeyNotes] = {}
        self._lock = threading.Lock()
        self._client: Any = None
        self._pid = os.getpid()
        self._source_tags: dict[str, str] | None = None
        self._experiments: dict[str, str] = {}
        self._run_experiment: dict[str, str] = {}
        #: Run id -> the logged models it made (``log_model``), until the run ends.
        self._outputs: dict[str, set[str]] = {}

        #: (when, what was said) of the last time the store was found stuck half-migrated.
        self._stuck: tuple[float, str] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tracking_uri={mask_secrets(self._requested_uri)!r})"

    @property
    def spool_uri(self) -> str:
        """The store's URI, known without connecting: where ``tracked sync`` writes to."""
        return self._requested_uri

    def __reduce__(self):
        # A copy (pickled to a worker, or deep-copied with its pipeline) talks to the same
        # store through that process's shared backend.
        return (shared_backend, (self._requested_uri,))

    @property
    def client(self) -> Any:
        """The ``MlflowClient``, created (and mlflow imported) on first use in each process.

        A forked child gets its own client: database connections must not cross a fork.
        """
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client = self._connect()
                    self._pid = os.getpid()
        return self._client

    #: A store found stuck at a partial migration is not looked at again for this long:
    #: every record of a sync would otherwise wait ``STUCK_AFTER_S`` to learn it again.
    STUCK_REMEMBERED_S = 60.0

    def _connect(self) -> GuardedClient:
        stuck = self._stuck
        if stuck is not None and time.monotonic() - stuck[0] < self.STUCK_REMEMBERED_S:
            raise StoreNotMigrated(stuck[1])
        try:
            return _connect(self._requested_uri, self._artifact_root)
        except StoreNotMigrated as exc:
            self._stuck = (time.monotonic(), str(exc))
            raise

    @property
    def tracking_uri(self) -> str:
        """The resolved tracking URI."""
        return self._requested_uri

    def prepare(self) -> None:
        """Import every part of mlflow this backend uses (once per process), so that the
        writer thread never imports while the caller's stages run."""
        import_mlflow(self.spool_uri)

    def outer_run_id(self) -> str | None:
        """The run the caller has open in this store (a fluent run, ``MLFLOW_RUN_ID``)."""
        return outer_run_id(self.spool_uri)

    def experiment_id(self, name: str) -> str:
        """Id of experiment ``name``, created when missing (safe against concurrent creators)."""
        cached = self._experiments.get(name)
        if cached is None:
            cached = self._experiments[name] = _get_or_create_experiment(self.client, name)
        return cached

    def source_tags(self) -> dict[str, str]:
        """MLflow's standard source tags, resolved once per process (see ``source_tags``)."""
        if self._source_tags is None or self._pid != os.getpid():
            self._source_tags = source_tags()
        return self._source_tags

    def experiment_of(self, run_id: str) -> str:
        """The experiment id of a run (remembered for the runs this backend started)."""
        experiment_id = self._run_experiment.get(run_id)
        if experiment_id is None:
            experiment_id = self._run_experiment[run_id] = self.client.get_run(
                run_id
            ).info.experiment_id
        return experiment_id

    def find_run(
        self, *, experiment: str | None, parent_run_id: str | None, key: str, value: str
    ) -> str | None:
        """The id of a run tagged ``key=value`` in the experiment, or None."""
        if experiment is not None:
            experiment_id = self.experiment_id(experiment)
        elif parent_run_id is not None:
            experiment_id = self.experiment_of(parent_run_id)
        else:
            return None
        runs = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{key}` = '{value}'", max_results=1
        )
        return runs[0].info.run_id if runs else None

    def start_run(
        self,
        *,
        experiment: str | None,
        run_name: str,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        start_time: int | None = None,
    ) -> str:
        if experiment is not None:
            experiment_id = self.experiment_id(experiment)
        elif parent_run_id is not None:
            experiment_id = self.experiment_of(parent_run_id)
        else:
            msg = "start_run needs an experiment or a parent run"
            raise ValueError(msg)
        # MLflow's source tags (the script's path, the git remote's URL) pass the masker too.
        all_tags = sanitize_keys({**self.source_tags(), **(tags or {})}, MAX_TAG_VALUE_LENGTH)
        if parent_run_id is not None:
            all_tags[PARENT_RUN_TAG] = parent_run_id
        run = self.client.create_run(
            experiment_id, start_time=start_time, tags=all_tags, run_name=mask_secrets(run_name)
        )
        run_id = run.info.run_id
        self._run_experiment[run_id] = experiment_id
        return run_id

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, str] | None = None,
        metrics: Sequence[Metric] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import Param, RunTag

        notes = self._notes.setdefault(run_id, KeyNotes())
        before = notes.size()
        clean_params = sanitize_keys(params or {}, MAX_PARAM_VALUE_LENGTH, notes)
        conflicts = {}
        for key, value in list(clean_params.items()):
            kept = notes.params.setdefault(key, value)
            if kept != value:
                conflicts[key] = value
                notes.conflicts[key] = [kept, value]
                del clean_params[key]
        renamed = unique_keys([m.key for m in metrics])
        notes.renamed["metrics"].update({k: name for k, name in renamed.items() if k != name})
        self.client.log_batch(
            run_id,
            metrics=[
                MlflowMetric(renamed[m.key], float(m.value), m.timestamp, m.step) for m in metrics
            ],
            params=[Param(k, v) for k, v in clean_params.items()],
            tags=[
                RunTag(k, v)
                for k, v in sanitize_keys(tags or {}, MAX_TAG_VALUE_LENGTH, notes, "tags").items()
            ],
            synchronous=True,
        )
        if notes.size() != before:
            self.log_artifact(run_id, KeyNotes.ARTIFACT, notes.document())
        if conflicts:
            names = ", ".join(sorted(conflicts))
            msg = (
                f"params {names} were logged on run {run_id} before with other values: the "
                f"first values are kept, the others are in {KeyNotes.ARTIFACT}"
            )
            raise ParamConflict(msg)

    def link_metrics(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        *,
        model_uri: str,
        dataset: tuple[str, str] | None = None,
    ) -> None:
        """Log ``metrics`` on the run again, linked to the logged model ``model_uri``
        (``models:/<id>``) and the dataset they were computed on, as MLflow 3's autolog
        does: the model's page then shows them. The run's own metrics stay as they were
        (MLflow keeps one row per metric value). A run that used a model another run logged
        (an inference run) gets the model as an input, as autolog's evaluation runs do."""
        from mlflow.entities import LoggedModelInput
        from mlflow.entities import Metric as MlflowMetric

        model_id = model_uri.removeprefix("models:/")
        name, digest = dataset if dataset is not None else (None, None)
        if digest is not None:
            digest = digest[:MAX_DATASET_DIGEST_LENGTH]  # as the dataset input's digest
        renamed = unique_keys([m.key for m in metrics])
        linked = [
            MlflowMetric(
                renamed[m.key],
                float(m.value),
                m.timestamp,
                m.step,
                model_id=model_id,
                dataset_name=name,
                dataset_digest=digest,
            )
            for m in metrics
        ]
        outputs = self._outputs.setdefault(run_id, set())
        if model_id not in outputs:
            # Not made here, or made by a replay in another process: the store knows.
            if self.client.get_logged_model(model_id).source_run_id == run_id:
                outputs.add(model_id)
            else:
                self.client.log_inputs(run_id, models=[LoggedModelInput(model_id)])
        self.client.log_batch(run_id, metrics=linked, synchronous=True)

    def log_artifact(self, run_id: str, path: str, content: bytes) -> None:
        """Store ``content`` as ``path``; a text file (``TEXT_ARTIFACTS``) with the
        credentials in it masked, whoever built it."""
        content = masked_text_artifact(path, content)
        with tempfile.TemporaryDirectory(prefix="tracked-artifact-") as tmp:
            local = os.path.join(tmp, os.path.basename(path))
            with open(local, "wb") as file:
                file.write(content)
            directory = os.path.dirname(path) or None
            self.client.log_artifact(run_id, local, artifact_path=directory)

    def log_dataset(self, run_id: str, summary: DataSummary, *, context: str, name: str) -> None:
        """Log a dataset input built from the summary: MLflow's schema of its first rows,
        the digest and the profile (shape, size, bytes) of the whole data."""
        inputs = [dataset_input(summary, context=context, name=name)]
        self.client.log_inputs(run_id, datasets=inputs)

    def end_run(self, run_id: str, status: str, end_time: int | None = None) -> None:
        self.client.terminate(run_id, status, end_time)
        self._run_experiment.pop(run_id, None)
        self._notes.pop(run_id, None)
        self._outputs.pop(run_id, None)


#: Artifacts that are text, masked before they are stored: everything tracked writes but
#: pictures, models and datasets' binary forms.
TEXT_ARTIFACTS = (".json", ".csv", ".txt", ".html", ".md", ".yaml", ".yml", ".log", ".tsv")


def masked_text_artifact(path: str, content: bytes) -> bytes:
    """``content`` with its credentials masked (``mask_secrets``) when ``path`` names a text
    file; other files, and text that is not UTF-8, as they are."""
    if not path.lower().endswith(TEXT_ARTIFACTS):
        return content
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return content
    masked = mask_secrets(text)
    return content if masked == text else masked.encode("utf-8")


def _connect(uri: str, artifact_root: str | None) -> GuardedClient:
    """A client of the store at ``uri``, after a quick check that the store answers: mlflow
    is imported here, the first time a process needs the store."""
    mlflow = load_mlflow()
    store_library_loaded()  # mlflow's exit handlers were just registered
    _bound_requests()
    check_reachable(uri)
    client = _open_client(mlflow, uri, artifact_root)
    if uri.startswith("sqlite:") and env_flag(SQLITE_WAL_ENV):
        _write_ahead(client._tracking_client.store.engine)
    return GuardedClient(client, serialize=uri.startswith("sqlite:"))


def _write_ahead(engine: Any) -> None:
    """Open the engine's connections with ``journal_mode=WAL`` and ``synchronous=NORMAL``.

    In sqlite's default mode (a rollback journal) every commit waits for the disk (an
    fsync: ~6 ms on the benchmark machine), one writer at a time across processes; in WAL
    with ``NORMAL`` a commit does not (the log is synced at checkpoints): a crash of the
    process loses no committed data, a power cut may lose the last commits, not the
    database. WAL is a property of the database file, kept after this process (sqlite keeps
    ``-wal`` and ``-shm`` files beside it), and does not work on network file systems:
    hence opt-in.
    """
    if getattr(engine, "_tracked_wal", False):
        return
    from sqlalchemy import event

    def pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(engine, "connect", pragmas)
    engine.dispose()  # connections already in the pool reconnect with them
    engine._tracked_wal = True


def _get_or_create_experiment(client: Any, name: str) -> str:
    """Id of experiment ``name``, created when missing: a creator that loses the race to
    another thread or process takes the winner's experiment.

    Raises:
        ValueError: the experiment is deleted (MLflow keeps the name taken).
    """
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name)
        except MlflowException:
            # Another thread or process created it in the meantime.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            experiment_id = experiment.experiment_id
    else:
        if experiment.lifecycle_stage == "deleted":
            msg = (
                f"MLflow experiment {name!r} is deleted; restore it "
                f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) "
                "or set another `experiment` on the pipeline class"
            )
            raise ValueError(msg)
        experiment_id = experiment.experiment_id
    return experiment_id


_shared: dict[str, MlflowBackend] = {}


_shared_lock = threading.Lock()


def shared_backend(tracking_uri: str | None) -> MlflowBackend:
    """One backend per tracking URI per process, so that store connections are reused.

    ``None`` is resolved now (``default_tracking_uri``), so that a changed environment
    reaches the next pipeline run.
    """
    if tracking_uri is None:
        tracking_uri = default_tracking_uri()
    tracking_uri = absolute_store_uri(tracking_uri)
    with _shared_lock:
        backend = _shared.get(tracking_uri)
        if backend is None:
            backend = _shared[tracking_uri] = MlflowBackend(tracking_uri)
        return backend
