"""Models in MLflow: how a model is saved (format, trusted types, requirements, signature)
and the calls that log, register and tag it with an explicit client and run id."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from attrs import frozen

from tracked.backends.mlflow import needs
from tracked.backends.mlflow.keys import MAX_TAG_VALUE_LENGTH, sanitize_keys
from tracked.backends.mlflow.loading import (
    BY_VALUE_NOTE,
    PICKLE_FORMATS,
    Recorded,
    model_digest,
)
from tracked.core.errors import StoreRejected
from tracked.core.names import MODEL_FORMAT_TAG

#: MLflow's description tag: the logged model's description in the UI.
NOTE_TAG = "mlflow.note.content"


class ModelLogging:
    """The model half of ``MlflowBackend``: ``log_model``, ``register_model`` and
    ``tag_model_version``.

    A mixin rather than a second object so that the backend keeps the one face the
    ``Backend`` protocol describes; it works through the backend's ``client`` and
    ``experiment_of``.
    """

    if TYPE_CHECKING:
        client: Any
        _outputs: dict[str, set[str]]

        def experiment_of(self, run_id: str) -> str: ...

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
        import mlflow.sklearn  # noqa: F401  (fails, if it must, before the store holds anything)
        from mlflow.entities import LoggedModelOutput, LoggedModelStatus

        client = self.client
        experiment_id = self.experiment_of(run_id)
        saving = Saving.of(model, serialization_format, trusted_types)
        signature = _model_signature(model, input_example, signature_example, output_example)
        if input_example is not None:
            input_example = _mlflow_example(input_example)
        logged = client.create_logged_model(
            experiment_id=experiment_id, name=name, source_run_id=run_id
        )
        try:
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
            digest = _save_and_upload(
                client, logged, run_id, name, model, saving, signature, input_example
            )
            _record(client, run_id, logged.model_id, name, saving, digest)
        except BaseException:
            client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
            raise
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
        self._outputs.setdefault(run_id, set()).add(logged.model_id)
        return f"models:/{logged.model_id}"

    def register_model(self, name: str, model_uri: str, run_id: str) -> str:
        from mlflow.exceptions import MlflowException

        client = self.client
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        model_id = model_uri.removeprefix("models:/")
        # A by-value model says so on the version its readers pick from the registry too.
        saved_as = client.get_logged_model(model_id).tags.get(MODEL_FORMAT_TAG)
        version = client.create_model_version(
            name=name,
            source=model_uri,
            run_id=run_id,
            model_id=model_id,
            description=BY_VALUE_NOTE if saved_as in PICKLE_FORMATS else None,
        )
        return str(version.version)

    def tag_model_version(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in sanitize_keys(tags, MAX_TAG_VALUE_LENGTH).items():
            self.client.set_model_version_tag(name, version, key, value)


@frozen
class Saving:
    """How one model is saved: decided (and refused, for untrusted types) before the store
    holds a logged model for it."""

    #: ``skops`` or ``cloudpickle`` (see ``model_format``).
    serialization_format: str
    #: Pinned pip requirements (see ``needs.requirements``).
    requirements: list[str]
    #: ``skops_trusted_types`` for the MLmodel file; None for cloudpickle.
    trusted: list[str] | None
    #: Modules of this process's script the model holds (pickled by value by cloudpickle).
    local: set[str]

    @classmethod
    def of(cls, model: object, serialization_format: str, trusted_types: Sequence[str]) -> Saving:
        """Raises ``UntrustedModel`` for a skops model holding types nobody declared."""
        modules = needs.held_modules(model)
        local = needs.local_modules(modules)
        serialization_format = model_format(model, serialization_format, local)
        requirements = needs.requirements(modules, ("mlflow", "scikit-learn", serialization_format))
        trusted = (
            _skops_trusted_types(model, trusted_types) if serialization_format == "skops" else None
        )
        return cls(serialization_format, requirements, trusted, local)


def _model_signature(
    model: Any, input_example: object, signature_example: object, output_example: object
) -> Any:
    """The model's signature, or None without an example to infer it from."""
    from mlflow.models import infer_signature

    # The signature comes from the whole example the composer kept (the logged one may be
    # cut), with what the model predicted on it there: predicting here would draw from
    # the global random state.
    source = signature_example if signature_example is not None else input_example
    if source is None:
        return None
    given = output_example if source is signature_example else None
    source = _mlflow_example(source)
    output = given if given is not None else model.predict(source)
    return _signature(infer_signature, source, output)


def served_model(model: Any, signature_example: object, output_example: object) -> Any:
    """``model`` as ``mlflow.pyfunc.load_model`` serves it once logged by ``log_model`` with
    these examples: the same signature (``_model_signature``), the same schema enforcement
    and the sklearn flavour's own pyfunc wrapper, built in memory (nothing saved or loaded).

    Checking a composed model through this, rather than through ``model.predict``, is what
    makes ``tracked.pipeline_verified`` speak of what pyfunc does: a frame pyfunc refuses,
    or converts into one the model predicts differently on, fails the check.
    """
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel
    from mlflow.sklearn import _SklearnModelWrapper  # the flavour's pyfunc implementation

    signature = _model_signature(model, None, signature_example, output_example)
    return PyFuncModel(
        model_meta=Model(signature=signature), model_impl=_SklearnModelWrapper(model)
    )


def served_predictions(served: Any, data: Any) -> Any:
    """What ``served`` (from ``served_model``) predicts on ``data``, given to it as MLflow
    takes it (``_mlflow_example``).

    Raises:
        ServingRefused: pyfunc refuses ``data`` (its schema enforcement, or the model on
            the frame that enforcement made); the message is MLflow's, without the frame.
    """
    from mlflow.exceptions import MlflowException

    try:
        return served.predict(_mlflow_example(data))
    except MlflowException as exc:
        text = str(exc.message)
        # MLflow puts the whole frame in the message before its reason: keep the reason.
        _, marker, reason = text.rpartition("Error: ")
        raise ServingRefused(reason if marker else text) from None


class ServingRefused(ValueError):
    """``mlflow.pyfunc`` refuses a frame (the message says why)."""


def _save_and_upload(
    client: Any,
    logged: Any,
    run_id: str,
    name: str,
    model: object,
    saving: Saving,
    signature: Any,
    input_example: Any,
) -> str:
    """Save the model's files in a temporary folder with MLflow's sklearn flavour, bound to
    the logged model ``logged``, and upload them to its artifact location; return their
    digest (``loading.model_digest``), taken before they left this process."""
    import mlflow.sklearn
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="tracked-model-") as tmp:
        path = os.path.join(tmp, name)
        mlflow_model = Model(
            artifact_path=logged.artifact_location,
            model_uuid=logged.model_id,
            run_id=run_id,
            model_id=logged.model_id,
        )
        by_value = (
            needs.pickled_by_value(saving.local)
            if saving.serialization_format == "cloudpickle"
            else contextlib.nullcontext()
        )
        with by_value:
            mlflow.sklearn.save_model(
                model,
                path,
                mlflow_model=mlflow_model,
                serialization_format=saving.serialization_format,
                skops_trusted_types=saving.trusted,
                signature=signature,
                input_example=input_example,
                pip_requirements=saving.requirements,
            )
        digest = model_digest(path)
        client.log_model_artifacts(logged.model_id, path)
    return digest


def _record(
    client: Any, run_id: str, model_id: str, name: str, saving: Saving, digest: str
) -> None:
    """Record, on the run and on the logged model, what the reader checks and loads the
    model by (``loading.Recorded``): the files' digest, the format and the trusted types.
    A by-value model also says so in the logged model's description."""
    from mlflow.entities import RunTag

    recorded = Recorded(digest, saving.serialization_format, tuple(saving.trusted or ()))
    model_tags = recorded.model_tags()
    if saving.serialization_format in PICKLE_FORMATS:
        model_tags[NOTE_TAG] = BY_VALUE_NOTE
    client.set_logged_model_tags(model_id, model_tags)
    tags = [RunTag(key, value) for key, value in recorded.run_tags(name).items()]
    client.log_batch(run_id, tags=tags, synchronous=True)


def model_format(model: object, serialization_format: str, modules: set[str]) -> str:
    """The format ``model`` is saved in: ``serialization_format``, except that a model holding
    classes or functions that exist only in this process's script or in modules beside it
    (``modules``: ``needs.local_modules``) is saved with cloudpickle, which stores them by
    value. skops stores only their names: the model would load nowhere else."""
    if serialization_format != "skops" or not modules:
        return serialization_format
    from tracked.core.report import notice

    names = ", ".join(sorted(modules))
    notice(
        f"the model {type(model).__name__} holds classes or functions defined in {names}, "
        "which skops can only name, so it could not be loaded in another process: it is "
        "saved with cloudpickle, which stores them by value (loading it runs code, so trust "
        "its source; its readers see tracked.model_format.<name> = cloudpickle on the run, "
        "and tracked.load_model asks them for allow_pickle=True). Define them in an "
        "installed package to keep the skops format",
        key=f"by-value:{names}",
    )
    return "cloudpickle"


class UntrustedModel(StoreRejected, TypeError):
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

    from tracked.core.trust import OWN_TRUSTED, never_trusted

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
    from tracked.core.sparse import is_sparse

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
    """MLflow's signature of ``example``, with the columns typed for what their dtype can hold,
    not only for the values the example shows:

    - pandas ``Categorical``: ``any``. MLflow infers ``string``, and its schema enforcement
      then refuses the very frame the model was trained on ("Can not safely convert
      category to <U0");
    - nullable integers (``Int8`` ... ``UInt64``): ``double``, as MLflow advises for integer
      columns that may hold missing values; inferred as ``long``, a frame with ``<NA>`` is
      refused ("cannot convert NA to integer") even when the example had none;
    - nullable ``boolean`` and timezone-aware datetimes: ``any``; ``boolean`` refuses
      ``<NA>`` ("cannot convert float NaN to bool"), ``datetime`` a timezone.

    Whether pyfunc then takes the frames and predicts what the model did is checked, not
    assumed: ``served_model``.
    """
    signature = infer_signature(example, prediction)
    if not hasattr(example, "columns") or signature.inputs is None:
        return signature  # a Series has one dtype, not one per column
    if not signature.inputs.has_input_names():
        return signature
    retyped = {str(name): kind for name, dtype in example.dtypes.items() if (kind := _held(dtype))}
    if not retyped:
        return signature
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

    types = {"any": AnyType(), "double": DataType.double}
    inputs = [
        ColSpec(types[retyped[spec.name]], spec.name, spec.required)
        if spec.name in retyped
        else spec
        for spec in signature.inputs.inputs
    ]
    return ModelSignature(Schema(inputs), signature.outputs, signature.params)


def _held(dtype: Any) -> str | None:
    """The signature type a pandas column of ``dtype`` needs (``any``, ``double``), or None
    when MLflow's inference is right for it."""
    name = str(dtype)
    if name == "category" or name == "boolean":
        return "any"
    if name.startswith(("Int", "UInt")) and getattr(dtype, "kind", "") in "iu":
        return "double"
    if name.startswith("datetime64") and getattr(dtype, "tz", None) is not None:
        return "any"
    return None
