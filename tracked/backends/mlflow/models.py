"""TODO."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
    from tracked.records.report import notice

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

    from tracked.records.trust import OWN_TRUSTED, never_trusted

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
    from tracked.records.sparse import is_sparse

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
