"""The MLflow backend: the only module that imports mlflow, and only when first used.

Everything MLflow-specific lives here: tag names, store limits, the model flavour and the
call sequence that makes ``runs:/<run>/<name>`` resolve without MLflow's fluent state.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from tracked.backends.base import store_library_loaded
from tracked.backends.mlflow import needs
from tracked.backends.mlflow.client import (
    GuardedClient,
    _bound_requests,
    _open_client,
    absolute_store_uri,
    check_reachable,
    default_artifact_root,
    default_tracking_uri,
    source_tags,
)
from tracked.backends.mlflow.errors import is_store_away
from tracked.backends.mlflow.fluent import outer_run_id
from tracked.backends.mlflow.keys import (
    MAX_DATASET_DIGEST_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    PARENT_RUN_TAG,
    KeyNotes,
    ParamConflict,
    sanitize_key,
    sanitize_keys,
    unique_keys,
)
from tracked.backends.mlflow.models import (
    _mlflow_example,
    _product,
    _signature,
    _skops_trusted_types,
    model_format,
)
from tracked.records.text import mask_secrets, mask_uri
from tracked.records.values import DataSummary, Metric


class MlflowBackend:
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tracking_uri={mask_uri(self._requested_uri)!r})"

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
                    import mlflow

                    store_library_loaded()  # mlflow's exit handlers were just registered
                    _bound_requests()
                    uri = self._requested_uri
                    check_reachable(uri)
                    self._client = GuardedClient(
                        _open_client(mlflow, uri, self._artifact_root),
                        serialize=uri.startswith("sqlite:"),
                    )
                    self._pid = os.getpid()
        return self._client

    @property
    def tracking_uri(self) -> str:
        """The resolved tracking URI."""
        return self._requested_uri

    def outer_run_id(self) -> str | None:
        """The run the caller has open in this store (a fluent run, ``MLFLOW_RUN_ID``)."""
        return outer_run_id(self.spool_uri)

    def experiment_id(self, name: str) -> str:
        """Id of experiment ``name``, created when missing (safe against concurrent creators)."""
        cached = self._experiments.get(name)
        if cached is not None:
            return cached
        from mlflow.exceptions import MlflowException

        client = self.client
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
        self._experiments[name] = experiment_id
        return experiment_id

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
        all_tags = {**self.source_tags(), **sanitize_keys(tags or {}, MAX_TAG_VALUE_LENGTH)}
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

    def log_model(
        self,
        run_id: str,
        name: str,
        model: object,
        *,
        input_example: object = None,
        signature_example: object = None,
        output_example: object = None,
        serialization_format: str = "skops",
        step: int = 0,
        trusted_types: Sequence[str] = (),
    ) -> str:
        """Log ``model`` (sklearn flavour) as ``runs:/<run>/<name>``; return ``models:/<id>``.

        The signature is inferred from ``signature_example`` (not stored) and
        ``output_example``, else from ``input_example``. The requirements are mlflow,
        scikit-learn, the format's library and the installed distributions (pinned) of every
        module whose classes or functions the model holds (``needs.requirements``): MLflow's
        own inference costs seconds (it reloads the model in a subprocess), this one
        in-memory pickle. The format is ``model_format``'s.

        ``mlflow.sklearn.log_model`` would resolve the store from MLflow's global tracking
        URI and, without an active run, create the logged model in the default experiment,
        where ``runs:/`` does not find it. So the steps are done here with this client.
        ``runs:/<run>/<name>`` resolves to the newest model of that name on the run.
        """
        import mlflow.sklearn
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus
        from mlflow.models import Model, infer_signature

        client = self.client
        experiment_id = self.experiment_of(run_id)
        modules = needs.held_modules(model)
        local = needs.local_modules(modules)
        serialization_format = model_format(model, serialization_format, local)
        requirements = needs.requirements(modules, ("mlflow", "scikit-learn", serialization_format))
        trusted = (
            _skops_trusted_types(model, trusted_types) if serialization_format == "skops" else None
        )
        signature = None
        # The signature comes from the whole example the composer kept (the logged one may be
        # cut), with what the model predicted on it there: predicting here would draw from
        # the global random state.
        source = signature_example if signature_example is not None else input_example
        if source is not None:
            given = output_example if source is signature_example else None
            source = _mlflow_example(source)
            output = given if given is not None else model.predict(source)
            signature = _signature(infer_signature, source, output)
        if input_example is not None:
            input_example = _mlflow_example(input_example)
        logged = client.create_logged_model(
            experiment_id=experiment_id, name=name, source_run_id=run_id
        )
        try:
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
            with tempfile.TemporaryDirectory(prefix="tracked-model-") as tmp:
                path = os.path.join(tmp, name)
                mlflow_model = Model(
                    artifact_path=logged.artifact_location,
                    model_uuid=logged.model_id,
                    run_id=run_id,
                    model_id=logged.model_id,
                )
                by_value = (
                    needs.pickled_by_value(local)
                    if serialization_format == "cloudpickle"
                    else contextlib.nullcontext()
                )
                with by_value:
                    mlflow.sklearn.save_model(
                        model,
                        path,
                        mlflow_model=mlflow_model,
                        serialization_format=serialization_format,
                        skops_trusted_types=trusted,
                        signature=signature,
                        input_example=input_example,
                        pip_requirements=requirements,
                    )
                client.log_model_artifacts(logged.model_id, path)
        except BaseException:
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            raise
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        return f"models:/{logged.model_id}"

    def log_artifact(self, run_id: str, path: str, content: bytes) -> None:
        with tempfile.TemporaryDirectory(prefix="tracked-artifact-") as tmp:
            local = os.path.join(tmp, os.path.basename(path))
            with open(local, "wb") as file:
                file.write(content)
            directory = os.path.dirname(path) or None
            self.client.log_artifact(run_id, local, artifact_path=directory)

    def log_dataset(self, run_id: str, summary: DataSummary, *, context: str, name: str) -> None:
        """Log a dataset input built from the summary: MLflow's schema of its first rows,
        the digest and the profile (shape, size, bytes) of the whole data."""
        import json

        import mlflow.data
        from mlflow.entities import Dataset, DatasetInput, InputTag

        if summary.kind == "pandas":
            sample = mlflow.data.from_pandas(summary.head, name=name)
            profile = {"num_rows": summary.shape[0], "num_elements": _product(summary.shape)}
        elif summary.kind == "sparse":
            # The schema (a tensor of the matrix's width and dtype) from one densified row:
            # a text matrix has tens of thousands of columns.
            sample = mlflow.data.from_numpy(summary.head.tocsr()[:1].toarray(), name=name)
            profile = {
                "features_shape": list(summary.shape),
                "features_size": _product(summary.shape),
                "features_nbytes": summary.nbytes,
                "sparse": True,
            }
        else:
            sample = mlflow.data.from_numpy(summary.head, name=name)
            profile = {
                "features_shape": list(summary.shape),
                "features_size": _product(summary.shape),
                "features_nbytes": summary.nbytes,
            }
        entity = sample._to_mlflow_entity()
        dataset = Dataset(
            name=name,
            digest=summary.digest[:MAX_DATASET_DIGEST_LENGTH],
            source_type=entity.source_type,
            source=entity.source,
            schema=entity.schema,
            profile=json.dumps(profile),
        )
        tags = [InputTag(key="mlflow.data.context", value=context)]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset=dataset, tags=tags)])

    def register_model(self, name: str, model_uri: str, run_id: str) -> str:
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        model_id = model_uri.removeprefix("models:/")
        version = client.create_model_version(
            name=name, source=model_uri, run_id=run_id, model_id=model_id
        )
        return str(version.version)

    def tag_model_version(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, sanitize_key(key), value)

    def end_run(self, run_id: str, status: str, end_time: int | None = None) -> None:
        self.client.terminate(run_id, status, end_time)
        self._run_experiment.pop(run_id, None)
        self._notes.pop(run_id, None)


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
