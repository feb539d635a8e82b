"""The MLflow backend: the only module that imports mlflow, and only when first used.

Everything MLflow-specific lives here: tag names, store limits, the model flavour and the
call sequence that makes ``runs:/<run>/<name>`` resolve without MLflow's fluent state.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tracked._capture import mask_secrets, mask_uri, masked, shorten
from tracked._insight import DataSummary
from tracked._records import Metric
from tracked.backends import needs

PARENT_RUN_TAG = "mlflow.parentRunId"

# MLflow 3.x store limits (mlflow.utils.validation); copied so that sanitising needs no import.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_DATASET_DIGEST_LENGTH = 36
_BAD_KEY_CHARACTERS = re.compile(r"[^\w.\- :]")


def sanitize_key(key: str) -> str:
    """A param/metric/tag name MLflow accepts: bad characters become ``_``, cut to 250.

    Slashes are replaced too: MLflow treats names as paths and rejects ones that do not
    normalise to themselves.
    """
    clean = _BAD_KEY_CHARACTERS.sub("_", key)[:MAX_KEY_LENGTH]
    if clean in ("", ".") or clean.startswith(".."):
        clean = ("_" + clean)[:MAX_KEY_LENGTH]
    return clean


def unique_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each key -> its sanitised form; keys that become equal once sanitised (``a/b`` and
    ``a?b``) are kept apart with a numeric suffix rather than one overwriting the other."""
    renamed: dict[str, str] = {}
    taken: set[str] = set()
    for key in keys:
        if key in renamed:
            continue
        name = base = sanitize_key(key)
        counter = 1
        while name in taken:
            counter += 1
            suffix = f"_{counter}"
            name = base[: MAX_KEY_LENGTH - len(suffix)] + suffix
        renamed[key] = name
        taken.add(name)
    return renamed


def sanitize_keys(
    mapping: Mapping[str, str], limit: int, notes: KeyNotes | None = None, kind: str = "params"
) -> dict[str, str]:
    """``mapping`` with sanitised (``unique_keys``) keys and truncated values, credentials
    masked (the last net: capture masks them already); ``notes`` collects what changed,
    under ``kind``."""
    clean: dict[str, str] = {}
    for key, name in unique_keys(list(mapping)).items():
        value = masked(key, mapping[key])
        clean[name] = shorten(value, limit)
        if notes is not None:
            if name != key:
                notes.renamed[kind][key] = name
            if len(value) > limit:
                notes.truncated[kind][name] = value
    return clean


class KeyNotes:
    """What a run's logging changed to fit MLflow, kept as ``tracked/key_notes.json``:
    keys renamed (per kind: params, metrics, tags; original -> logged), values truncated
    (per kind: params, tags; logged key -> full value), and params logged again with another
    value (key -> [kept, rejected values])."""

    ARTIFACT = "tracked/key_notes.json"

    def __init__(self) -> None:
        #: Per kind (params, metrics, tags): original name -> logged name.
        self.renamed: dict[str, dict[str, str]] = {"params": {}, "metrics": {}, "tags": {}}
        #: Per kind (params, tags): logged name -> the whole value.
        self.truncated: dict[str, dict[str, str]] = {"params": {}, "tags": {}}
        self.conflicts: dict[str, list[str]] = {}
        self.params: dict[str, str] = {}

    def size(self) -> int:
        renamed = sum(len(names) for names in self.renamed.values())
        truncated = sum(len(values) for values in self.truncated.values())
        return renamed + truncated + len(self.conflicts)

    def document(self) -> bytes:
        import json

        content = {
            "renamed": self.renamed,
            "truncated": self.truncated,
            "param_conflicts": self.conflicts,
        }
        return json.dumps(content, indent=1, sort_keys=True).encode()


class ParamConflict(ValueError):
    """A param was logged again on a run with another value (MLflow refuses that)."""


def _product(shape: tuple[int, ...]) -> int:
    size = 1
    for n in shape:
        size *= n
    return size


def model_format(model: object, serialization_format: str, modules: set[str]) -> str:
    """The format ``model`` is saved in: ``serialization_format``, except that a model holding
    classes or functions that exist only in this process's script or in modules beside it
    (``modules``: ``needs.local_modules``) is saved with cloudpickle, which stores them by
    value. skops stores only their names: the model would load nowhere else."""
    if serialization_format != "skops" or not modules:
        return serialization_format
    from tracked._report import notice

    names = ", ".join(sorted(modules))
    notice(
        f"the model {type(model).__name__} holds classes or functions defined in {names}, "
        "which skops can only name, so it could not be loaded in another process: it is "
        "saved with cloudpickle, which stores them by value (loading it runs code, so trust "
        "its source). Define them in an installed package to keep the skops format",
        key=f"by-value:{names}",
    )
    return "cloudpickle"


class UntrustedModel(TypeError):
    """A skops model holds types nobody declared trusted: it is not logged."""


def _skops_trusted_types(model: object, declared: Sequence[str]) -> list[str] | None:
    """The types of ``model`` that skops does not trust by default, to list in the MLmodel
    file (``skops_trusted_types``): loading then works without ever falling back to pickle.

    Only scikit-learn's and NumPy's own types and those the pipeline declares
    (``trusted_types``) are listed; trust is never inferred from what the model holds.

    Raises:
        UntrustedModel: the model holds other types, or functions of modules that are never
            trusted (``os.system`` in a ``FunctionTransformer``): the message lists them.
    """
    import skops.io

    from tracked._capture import OWN_TRUSTED, never_trusted

    try:
        found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    except Exception as exc:
        msg = (
            f"skops cannot serialise {type(model).__name__} ({type(exc).__name__}: {exc}); "
            "set serialization_format = 'cloudpickle' on the pipeline class to use "
            "cloudpickle knowingly"
        )
        raise TypeError(msg) from exc
    forbidden = [name for name in found if never_trusted(name)]
    if forbidden:
        msg = (
            f"the model {type(model).__name__} is not logged: it holds "
            f"{', '.join(forbidden)}, which is never trusted (loading the model would call "
            "it); keep such functions out of the model"
        )
        raise UntrustedModel(msg)
    undeclared = [
        name for name in found if name.split(".", 1)[0] not in OWN_TRUSTED and name not in declared
    ]
    if undeclared:
        listed = ", ".join(repr(name) for name in undeclared)
        msg = (
            f"the model {type(model).__name__} is not logged: it holds types skops does not "
            f"trust by default and the pipeline does not declare: {listed}; if you trust "
            f"them, add them to the pipeline class's `trusted_types = ({listed},)`"
        )
        raise UntrustedModel(msg)
    return found or None


def _mlflow_example(example: Any) -> Any:
    """``example`` in a type MLflow's signatures and examples take: SciPy sparse arrays and
    COO/LIL/... matrices become ``csr_matrix`` (MLflow knows CSR and CSC matrices only); a
    list or pandas Series of documents (raw text in) becomes a 1-D object array, so that the
    served model receives an array of strings, not a one-column DataFrame that a text
    vectoriser would iterate over by column name (predicting one row, silently)."""
    from tracked._sparse import is_sparse

    if isinstance(example, (list, tuple)) or (
        hasattr(example, "iloc") and not hasattr(example, "columns")  # a pandas Series
    ):
        import numpy as np

        array = np.asarray(example)
        if array.ndim == 1 and (
            array.dtype.kind in "US"
            or (array.dtype == object and all(isinstance(v, str) for v in array.tolist()))
        ):
            return array.astype(object)  # Tensor("object", (-1,)): str and object arrays pass
    if is_sparse(example):
        import scipy.sparse

        if not isinstance(example, (scipy.sparse.csr_matrix, scipy.sparse.csc_matrix)):
            return scipy.sparse.csr_matrix(example)
    return example


def _signature(infer_signature: Any, example: Any, prediction: Any) -> Any:
    """MLflow's signature of ``example``, with pandas ``Categorical`` columns typed ``any``:
    MLflow infers them as ``string``, and its schema enforcement then refuses the very frame
    the model was trained on ("Can not safely convert category to <U0")."""
    signature = infer_signature(example, prediction)
    if not hasattr(example, "columns") or signature.inputs is None:
        return signature  # a Series has one dtype, not one per column
    if not signature.inputs.has_input_names():
        return signature
    dtypes = example.dtypes
    categorical = {str(name) for name, dtype in dtypes.items() if str(dtype) == "category"}
    if not categorical:
        return signature
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    inputs = [
        ColSpec(AnyType(), spec.name, spec.required) if spec.name in categorical else spec
        for spec in signature.inputs.inputs
    ]
    return ModelSignature(Schema(inputs), signature.outputs, signature.params)


def _check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Fail fast when an HTTP tracking server does not accept connections.

    MLflow's client retries a refused connection with backoff for minutes; a stage call
    must not wait that long to learn that the server is away.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        msg = f"the tracking server at {parts.hostname}:{port} is not reachable ({exc})"
        raise ConnectionError(msg) from None


#: A request of the library's own to an HTTP store waits this long at most for an answer
#: (connect and each read), and is tried again once: a store that does not answer within a
#: few seconds counts as away, and its records go to the spool. MLflow's own defaults (120 s,
#: 7 retries with backoff) would hold the writer for many minutes. Set
#: ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` to choose otherwise.
REQUEST_TIMEOUT_S = 5
REQUEST_RETRIES = 1

#: Set while the library calls the store on this thread: MLflow's request settings answer
#: with the library's bounds then (``_bound_requests``), and only then.
_own_call = threading.local()
_bounds_installed = False
_bounds_lock = threading.Lock()


def _bound_requests() -> None:
    """Give the library's own HTTP requests its bounds, leaving everyone else's alone.

    MLflow reads ``MLFLOW_HTTP_REQUEST_TIMEOUT`` and ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` from
    the environment at every request (tracking calls and artifact uploads alike), and offers
    no per-client setting. Changing the environment would change the user's own MLflow calls
    too; so the two settings answer with the library's bounds only on a thread inside a call
    of the library's (``GuardedClient.call``), and only when the user did not set them.
    """
    global _bounds_installed
    with _bounds_lock:
        if _bounds_installed:
            return
        from mlflow import environment_variables as variables

        for variable, bound in (
            (variables.MLFLOW_HTTP_REQUEST_TIMEOUT, REQUEST_TIMEOUT_S),
            (variables.MLFLOW_HTTP_REQUEST_MAX_RETRIES, REQUEST_RETRIES),
        ):
            original = variable.get

            def get(original=original, variable=variable, bound=bound):
                if getattr(_own_call, "depth", 0) and not variable.is_set():
                    return bound
                return original()

            variable.get = get
        _bounds_installed = True


#: Errors after which a store call certainly did not happen, so trying again is safe.
_TRANSIENT = ("database is locked", "QueuePool limit", "database table is locked")
#: MLflow creates a logged dataset with a check-then-insert: two processes logging the same
#: dataset at once make one insert fail; on the retry it finds the other's row.
_TRANSIENT_BY_CALL = {
    "log_inputs": ("UNIQUE constraint failed", "duplicate key value violates unique constraint")
}
RETRIES = 5
FIRST_BACKOFF_S = 0.1


class GuardedClient:
    """An ``MlflowClient`` whose calls are retried on transient store errors.

    sqlite has one writer at a time: calls to a sqlite store are serialised here (a
    reentrant lock), rather than left to fight over MLflow's connection pool and sqlite's
    lock ("QueuePool limit reached", "database is locked"). Calls that failed that way never
    reached the store, so they are retried, up to 5 times with doubling backoff from 0.1 s;
    so is a dataset input that lost a race with another process creating the same dataset.
    """

    def __init__(self, client: Any, *, serialize: bool) -> None:
        self._client = client
        self._lock = threading.RLock() if serialize else None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute
        transient = _TRANSIENT + _TRANSIENT_BY_CALL.get(name, ())
        return functools.partial(self.call, attribute, transient=transient)

    def call(
        self, function: Any, *args: Any, transient: tuple[str, ...] = _TRANSIENT, **kwargs: Any
    ) -> Any:
        """``function(*args, **kwargs)``, serialised and retried as the client's calls are."""
        delay = FIRST_BACKOFF_S
        _own_call.depth = getattr(_own_call, "depth", 0) + 1
        try:
            for attempt in range(RETRIES + 1):
                try:
                    if self._lock is None:
                        return function(*args, **kwargs)
                    with self._lock:
                        return function(*args, **kwargs)
                except Exception as exc:
                    if attempt == RETRIES or not any(t in str(exc) for t in transient):
                        raise
                time.sleep(delay)
                delay *= 2
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            _own_call.depth -= 1

    def terminate(self, run_id: str, status: str, end_time: int | None) -> None:
        """End a run as ``set_terminated`` does, without its "View run" line on stdout:
        the writer is a background thread of someone else's program."""
        from mlflow.entities import RunStatus

        store = self._client._tracking_client.store
        self.call(
            store.update_run_info,
            run_id,
            run_status=RunStatus.from_string(status),
            end_time=end_time or int(time.time() * 1000),
            run_name=None,
        )


def source_tags() -> dict[str, str]:
    """``mlflow.user``, ``mlflow.source.name``/``type`` and, in a git checkout,
    ``mlflow.source.git.commit``/``branch``: the tags MLflow's fluent runs get.

    Computed here rather than with MLflow's context registry, which also probes for
    notebooks and Databricks (importing IPython: a few hundred milliseconds).
    """
    import getpass
    import subprocess
    import sys

    tags = {"mlflow.source.type": "LOCAL"}
    with contextlib.suppress(Exception):
        tags["mlflow.user"] = getpass.getuser()
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-") else None
    source = os.path.abspath(script) if script else "<interactive>"
    tags["mlflow.source.name"] = source
    folder = os.path.dirname(source) if script else os.getcwd()
    for tag, args in (
        ("mlflow.source.git.commit", ["rev-parse", "HEAD"]),
        ("mlflow.source.git.branch", ["rev-parse", "--abbrev-ref", "HEAD"]),
    ):
        with contextlib.suppress(Exception):
            done = subprocess.run(
                ["git", "-C", folder, *args], capture_output=True, text=True, timeout=2, check=True
            )
            tags[tag] = done.stdout.strip()
    return tags


def default_tracking_uri() -> str:
    """MLflow's tracking URI, resolved as MLflow does, without importing mlflow if it can.

    ``import mlflow`` costs over a second: a stage call must not pay it. Once mlflow is
    imported (the user may have called ``mlflow.set_tracking_uri``), MLflow is asked.
    """
    from tracked._outer import mlflow_imported

    if not mlflow_imported():
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        if not os.path.isdir("mlruns"):  # else MLflow's old file store default applies
            return "sqlite:///" + os.path.abspath("mlflow.db")
    import mlflow

    return mlflow.get_tracking_uri()


#: What a store's own trouble says (its disk, its lock), as opposed to a record it refuses.
_STORE_TROUBLE = (
    "readonly database",
    "read-only",
    "database is locked",
    "disk is full",
    "disk I/O error",
    "unable to open database",
    "No space left",
)
#: MLflow's text for an HTTP answer that is no JSON error: "... failed with error code 502".
_HTTP_STATUS = re.compile(r"failed with error code (\d{3})")


def _away_status(status: int) -> bool:
    return status >= 500 or status == 429


def is_store_away(exc: BaseException) -> bool:
    """Whether ``exc`` (or one of its causes) says the store is away, not that the record is
    wrong: connection errors and timeouts, HTTP 5xx and 429 answers, MLflow's
    TEMPORARILY_UNAVAILABLE (a database's operational error) and REQUEST_LIMIT_EXCEEDED, and a
    local store's full, locked or read-only disk.

    MLflow's default code, INTERNAL_ERROR, is no outage by itself: a local store raises it
    for a value it cannot hold (an integer SQLite cannot store); such a record is refused,
    reported with its run and reason, and never makes the store read as away. From an HTTP
    server INTERNAL_ERROR is a 500 answer: away.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if _says_away(link):
            return True
        link = link.__cause__ or link.__context__
    return False


def _says_away(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException, RestException

    if isinstance(exc, OSError):  # requests' connection errors and timeouts too
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return not isinstance(status, int) or _away_status(status)
    if isinstance(exc, MlflowException):
        if exc.error_code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"):
            return True
        text = exc.message if isinstance(exc.message, str) else str(exc)
        if "failed with exception" in text or "failed with timeout exception" in text:
            return True  # an HTTP request that got no answer (MLflow's own wording)
        status = _HTTP_STATUS.search(text)
        if status is not None:
            return _away_status(int(status.group(1)))
        if isinstance(exc, RestException):  # a server's JSON answer: its code is its status
            return _away_status(exc.get_http_status_code())
    text = str(exc)
    return any(word in text for word in _STORE_TROUBLE)


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

                    from tracked._writer import run_first_at_exit

                    run_first_at_exit()  # before mlflow's own exit handlers, just registered
                    _bound_requests()
                    uri = self._requested_uri
                    _check_reachable(uri)
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


_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
#: Tracking URIs without a scheme that are not paths.
_SPECIAL_URIS = frozenset({"databricks", "databricks-uc", "uc"})


def absolute_store_uri(uri: str) -> str:
    """``uri`` with a relative local path made absolute against the current folder.

    A session resolves its store once, when it opens: ``sqlite:///rel.db``, ``./mlruns`` or
    ``file:mlruns`` then mean the same store whichever folder the process is in later.
    """
    from urllib.parse import urlsplit

    if uri.startswith("sqlite:///"):
        path, sep, query = uri[len("sqlite:///") :].partition("?")
        # ``file:...`` is SQLite's own URI filename (``?mode=ro&uri=true``): left as given.
        if path and path != ":memory:" and not path.startswith("file:") and not os.path.isabs(path):
            return "sqlite:///" + os.path.abspath(path) + sep + query
        return uri
    parts = urlsplit(uri)
    if parts.scheme == "file" and not parts.netloc and not os.path.isabs(parts.path):
        return "file://" + os.path.abspath(parts.path)
    if uri in _SPECIAL_URIS:
        return uri
    if not parts.scheme or (len(parts.scheme) == 1 and os.name == "nt"):  # a plain path
        return os.path.abspath(uri)
    return uri


def default_artifact_root(uri: str) -> str | None:
    """MLflow's default artifact root of a database store (``./mlruns``), made absolute; None
    for other stores (they choose their artifact locations themselves) or when the
    environment of an MLflow server chooses it."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme not in _DATABASE_SCHEMES or os.environ.get("_MLFLOW_SERVER_ARTIFACT_ROOT"):
        return None
    return os.path.abspath("mlruns")


#: MLflow creates a fresh database's schema on first use. Processes opening one fresh store
#: at once race there and fail with these; the store is fine once one of them has finished.
_SCHEMA_RACE = (
    "Online migration expected to match one row",
    "duplicate column name",
    "already exists",
    "out-of-date database schema",
    "no such table",
)
#: How long opening a store keeps trying after such errors.
SCHEMA_RACE_WAIT_S = 60.0


def _open_client(mlflow: Any, uri: str, artifact_root: str | None) -> Any:
    """An ``MlflowClient`` for ``uri`` whose store exists (a fresh database's schema made)
    and keeps artifacts under ``artifact_root`` (None: MLflow's choice)."""
    from mlflow.tracking._tracking_service import utils

    def create() -> Any:
        # The store first, with its artifact root: the client's own lookup (without one)
        # then finds the schema made, and its root is replaced below.
        utils._get_store(uri, artifact_root)
        return mlflow.MlflowClient(tracking_uri=uri)

    deadline = time.monotonic() + SCHEMA_RACE_WAIT_S
    delay = FIRST_BACKOFF_S
    with _store_creation_lock(uri):
        while True:
            try:
                client = create()
                break
            except Exception as exc:
                if time.monotonic() > deadline or not any(t in str(exc) for t in _SCHEMA_RACE):
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    if artifact_root is not None:
        client._tracking_client = _pinned_tracking_client(uri, artifact_root)
    return client


@contextlib.contextmanager
def _store_creation_lock(uri: str):
    """Serialise the creation of a sqlite store between the processes of this machine (the
    retries above cover processes that do not take this lock)."""
    if not uri.startswith("sqlite:"):
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: the retries alone
        yield
        return
    import hashlib

    digest = hashlib.sha1(uri.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"tracked-store-{digest}.lock")
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pinned_tracking_client(uri: str, artifact_root: str) -> Any:
    """MLflow's tracking client whose store keeps artifacts under ``artifact_root``.

    ``MlflowClient`` always asks for the store without an artifact root, which a database
    store resolves to ``./mlruns`` of the folder current at that moment.
    """
    from mlflow.tracking._tracking_service import utils
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    class PinnedTrackingClient(TrackingServiceClient):
        @property
        def store(self) -> Any:
            return utils._get_store(self.tracking_uri, artifact_root)

    return PinnedTrackingClient(uri)


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
