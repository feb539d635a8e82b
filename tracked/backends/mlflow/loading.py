"""The reader's side of a model: ``load_model`` loads it with the format and the trust the
reader chooses, after checking its files against the digest recorded when it was logged;
``model_digest`` and ``Recorded`` are what the writer records for that.

``mlflow.pyfunc.load_model`` trusts the files: the ``MLmodel`` file names the format and
skops' trusted types, so whoever can write a model's artifacts (a default ``mlflow server``
has no authentication) chooses what the reader runs. Here nothing in the files decides.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import frozen

from tracked.backends.mlflow.client import absolute_store_uri, default_tracking_uri
from tracked.core.errors import ModelRefused
from tracked.core.names import MODEL_DIGEST_TAG, MODEL_FORMAT_TAG, MODEL_TRUSTED_TAG

#: Formats that unpickle: loading one runs whatever code its file holds.
PICKLE_FORMATS = ("cloudpickle", "pickle")


#: The description a by-value model carries in the store, where its reader sees it.
BY_VALUE_NOTE = (
    "Saved with cloudpickle, by value: it holds classes or functions of the writer's own "
    "script, and loading it runs any code its file holds. tracked.load_model loads it only "
    "with allow_pickle=True; mlflow.pyfunc.load_model loads it without asking."
)


def model_digest(folder: str | os.PathLike[str]) -> str:
    """sha256 over every file under ``folder``: each file's relative path (``/``-separated)
    and bytes, in sorted path order; a renamed, added, removed or changed file changes it."""
    root = Path(folder)
    files = sorted(
        (path.relative_to(root).as_posix(), path) for path in root.rglob("*") if path.is_file()
    )
    digest = hashlib.sha256()
    for relative, path in files:
        name = relative.encode("utf-8")
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@frozen
class Recorded:
    """What the writer recorded about a model's files when it logged them."""

    digest: str
    serialization_format: str
    trusted: tuple[str, ...]

    def run_tags(self, name: str) -> dict[str, str]:
        """The tags on the run that logged the model as ``name`` (``runs:/<run>/<name>``)."""
        return {f"{key}.{name}": value for key, value in self.model_tags().items()}

    def model_tags(self) -> dict[str, str]:
        """The tags on the logged model itself (``models:/<id>``)."""
        return {
            MODEL_DIGEST_TAG: self.digest,
            MODEL_FORMAT_TAG: self.serialization_format,
            MODEL_TRUSTED_TAG: json.dumps(list(self.trusted)),
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str], suffix: str, model_uri: str) -> Recorded:
        """Raises ``ModelRefused`` when the tags hold no digest."""
        digest = tags.get(MODEL_DIGEST_TAG + suffix)
        serialization_format = tags.get(MODEL_FORMAT_TAG + suffix)
        if not digest or not serialization_format:
            msg = (
                f"{model_uri} has no digest recorded ({MODEL_DIGEST_TAG}{suffix}): it was not "
                "logged by tracked (or by a version before 0.2), so nothing tells whether its "
                "files are the ones that were logged; log it again with tracked, or load it "
                "with mlflow.pyfunc.load_model only if you trust everyone who can write to "
                "the store"
            )
            raise ModelRefused(msg)
        try:
            trusted = tuple(json.loads(tags.get(MODEL_TRUSTED_TAG + suffix, "[]")))
        except ValueError:
            trusted = ()
        return cls(digest, serialization_format, trusted)


def load_model(
    model_uri: str,
    *,
    trusted: Sequence[str] = (),
    allow_pickle: bool = False,
    tracking_uri: str | None = None,
) -> Any:
    """``tracked.load_model`` (``tracked/_loading.py`` says what it checks and how it loads).

    Raises:
        ModelRefused: see ``tracked.load_model``.
    """
    import mlflow

    uri = absolute_store_uri(tracking_uri or default_tracking_uri())
    client = mlflow.MlflowClient(uri)
    logged, recorded = _resolve(client, model_uri)
    if recorded.serialization_format in PICKLE_FORMATS and not allow_pickle:
        msg = (
            f"{model_uri} is saved with {recorded.serialization_format} (by value: it holds "
            "classes or functions of its writer's script), and loading it runs any code its "
            "file holds; pass allow_pickle=True if you trust whoever logged it, or have it "
            "logged with skops (define those classes in an installed package)"
        )
        raise ModelRefused(msg)
    with tempfile.TemporaryDirectory(prefix="tracked-load-") as tmp:
        local = Path(_download(logged.artifact_location, uri, tmp))
        found = model_digest(local)
        if found != recorded.digest:
            msg = (
                f"the files of {model_uri} changed since they were logged (their sha256 is "
                f"{found}, {recorded.digest} was recorded when they were logged): they are "
                "not loaded. Someone with write access to the store's artifacts may have "
                "replaced them; log the model again from a pipeline you trust"
            )
            raise ModelRefused(msg)
        return _load_files(local, recorded, trusted, model_uri)


def _download(artifact_location: str, tracking_uri: str, folder: str) -> str:
    """The logged model's files, downloaded from its own artifact location: not through
    ``runs:/``, which also merges in run artifacts under the model's name."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(artifact_location, tracking_uri=tracking_uri)
    return repository.download_artifacts("", dst_path=folder)


def _resolve(client: Any, model_uri: str) -> tuple[Any, Recorded]:
    """The logged model ``model_uri`` names, and what was recorded about it."""
    if model_uri.startswith("runs:/"):
        run_id, _, name = model_uri.removeprefix("runs:/").strip("/").partition("/")
        if not run_id or not name or "/" in name:
            msg = f"expected runs:/<run id>/<model name>, got {model_uri!r}"
            raise ModelRefused(msg)
        run = client.get_run(run_id)
        recorded = Recorded.from_tags(run.data.tags, f".{name}", model_uri)
        return _newest(client, run.info.experiment_id, run_id, name, model_uri), recorded
    if model_uri.startswith("models:/"):
        rest = model_uri.removeprefix("models:/").strip("/")
        if "/" in rest:
            registered, _, version = rest.partition("/")
            found = client.get_model_version(registered, version)
            # A store may leave `model_id` empty; the source tracked registers is the model.
            source = found.source or ""
            model_id = found.model_id or (
                source.removeprefix("models:/") if source.startswith("models:/") else ""
            )
        else:
            model_id = rest
        if not model_id:
            msg = f"{model_uri} names no logged model (a version registered before MLflow 3?)"
            raise ModelRefused(msg)
        logged = client.get_logged_model(model_id)
        return logged, Recorded.from_tags(logged.tags, "", model_uri)
    msg = (
        f"tracked.load_model takes runs:/<run id>/<name> or models:/<id> URIs, got "
        f"{model_uri!r}: the digest to check the files against is recorded on the run and on "
        "the logged model"
    )
    raise ModelRefused(msg)


def _newest(client: Any, experiment_id: str, run_id: str, name: str, model_uri: str) -> Any:
    """The newest model named ``name`` that run ``run_id`` logged (what ``runs:/`` names)."""
    found = []
    token = None
    while True:
        page = client.search_logged_models(
            experiment_ids=[experiment_id], filter_string=f"name = '{name}'", page_token=token
        )
        found.extend(model for model in page if model.source_run_id == run_id)
        token = page.token
        if not token:
            break
    if not found:
        msg = f"run {run_id} logged no model named {name!r} ({model_uri})"
        raise ModelRefused(msg)
    return max(found, key=lambda model: model.creation_timestamp)


def _load_files(local: Path, recorded: Recorded, trusted: Sequence[str], model_uri: str) -> Any:
    """The model in ``local`` (its files verified), in the recorded format."""
    from mlflow.models import Model

    flavor = Model.load(str(local)).flavors.get("sklearn") or {}
    saved_as = flavor.get("serialization_format")
    if saved_as != recorded.serialization_format:
        # Only reachable when the recorded tags themselves disagree with the files.
        msg = (
            f"{model_uri} is saved as {saved_as!r}, but {recorded.serialization_format!r} "
            "was recorded when it was logged: it is not loaded"
        )
        raise ModelRefused(msg)
    path = (local / str(flavor.get("pickled_model", ""))).resolve()
    if local.resolve() not in path.parents or not path.is_file():
        msg = f"{model_uri}'s MLmodel names no model file inside the model's folder"
        raise ModelRefused(msg)
    if saved_as == "skops":
        import skops.io

        return skops.io.load(path, trusted=[*recorded.trusted, *trusted])
    if saved_as in PICKLE_FORMATS:
        with open(path, "rb") as file:
            # The caller consented (allow_pickle=True); cloudpickle's files are pickles.
            return pickle.load(file)
    msg = f"{model_uri} is saved as {saved_as!r}, a format tracked.load_model does not know"
    raise ModelRefused(msg)
