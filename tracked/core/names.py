"""The names tracked writes into a store (tags, metric and artifact names) and the reserved
attribute names, in one place so readers and writers agree.
"""

from __future__ import annotations

#: The prefix of run ids that no store gave: runs known only to the spool so far.
LOCAL_PREFIX = "local-"


#: Parent tag: whether the composed model, as logged, predicts what a prediction pass did.
VERIFIED_TAG = "tracked.pipeline_verified"


#: Parent tag: why it does not (empty once a pass verifies it).
VERIFIED_REASON_TAG = "tracked.pipeline_verified_reason"


OPERATOR_ATTRIBUTE = "operator"


CONTEXT_ATTRIBUTE = "_tracked_context"

#: Where ``tracked.configure`` keeps an instance's own settings (a dict in its ``__dict__``).
SETTINGS_ATTRIBUTE = "_tracked_settings"


ERROR_TAG_LIMIT = 1000


#: On the stage runs of a copy that logs under another instance's parent run.
COPY_TAG = "tracked.copy"


#: On a stage run nested under the run of the stage that called it: that stage's name.
PARENT_STAGE_TAG = "tracked.parent_stage"


GROUP_TAG = "tracked.group"
#: On the group run of one instance's clones (a search): the pipeline class they are.
CLONES_OF_TAG = "tracked.clones_of"


DEFAULT_EXPERIMENT = "Default"

#: A stage run's metric: how long the call took.
DURATION_METRIC = "duration_s"
#: A stage run's metrics of numeric fitted attributes (``fitted.n_iter_``).
FITTED_METRIC_PREFIX = "fitted."


def judges_a_model(metric: str) -> bool:
    """Whether a stage run's metric says how good its model is (a training or evaluation
    score), which MLflow shows with the model, rather than describing the call."""
    return metric != DURATION_METRIC and not metric.startswith(FITTED_METRIC_PREFIX)


#: On every parent run: the pipeline class (``module.Name``) that made it.
PIPELINE_TAG = "tracked.pipeline"

#: What a stage run records of the stage's output (``log_outputs``): a preview, all, nothing.
LOG_OUTPUTS = ("preview", "full", "none")

#: Tag on the runs of a spooled session: the run's id in the spool (``local-...``).
LOCAL_ID_TAG = "tracked.local_run_id"

#: Parent tag of a run that ``tracked sync`` ended: why.
END_REASON_TAG = "tracked.end_reason"

#: Stage tag: the spool passed ``TRACKED_SPOOL_MAX_BYTES``; the record's heavy parts were not kept.
SPOOL_DROPPED_TAG = "tracked.spool_dropped"

#: Stage tag: the record's payload was damaged in the spool; what it held was not written.
SPOOL_DAMAGED_TAG = "tracked.spool_damaged"

#: On an inference run whose pictures were drawn from a sample: ``"5000 of 100000"`` rows.
PICTURE_ROWS_TAG = "tracked.picture_rows"

#: Why a call got its phase: new_operator, fitted_attributes, state_changed, state_unchanged,
#: state_unreadable, stateless_function, or nested_stages (a stage without an operator that
#: called other stages).
PHASE_BASIS_TAG = "tracked.phase_basis"

#: On a stage run whose output_preview.csv was cut beyond its rows: what it holds.
PREVIEW_TAG = "tracked.output_preview"

#: On every parent run: the tracked version that recorded it.
VERSION_TAG = "tracked.version"


#: On every parent run: the scikit-learn version its models were fitted with.
SKLEARN_VERSION_TAG = "tracked.sklearn_version"


#: On every parent run: the NumPy version.
NUMPY_VERSION_TAG = "tracked.numpy_version"


#: On every stage run (and a search's candidate runs): the stage method's name.
STAGE_TAG = "tracked.stage"


#: On every stage run: ``transformer`` or ``estimator``.
KIND_TAG = "tracked.kind"


#: On every stage run: ``fit`` or ``inference``.
PHASE_TAG = "tracked.phase"


#: On a stage run that holds a series of folded calls: how many calls it holds.
FOLDED_CALLS_TAG = "tracked.folded_calls"


#: MLflow's run name tag: setting it renames the run (a series' name says its calls).
RUN_NAME_TAG = "mlflow.runName"


#: On a stage run: the digest of what the stage received.
INPUT_DIGEST_TAG = "tracked.input_digest"


#: On a stage run: the digest of what the stage returned.
OUTPUT_DIGEST_TAG = "tracked.output_digest"


#: On a stage run: the operator's class (``module.Name``).
OPERATOR_TAG = "tracked.operator"


#: On a failed stage run: the exception, in one line.
ERROR_TAG = "tracked.error"


#: On a search CV candidate's run: its rank among the candidates.
CANDIDATE_TAG = "tracked.candidate"


#: On a sweep's group run: the best configuration's run.
BEST_RUN_TAG = "tracked.best_run_id"


#: On a sweep's group run: the metric that ranked them.
BEST_METRIC_TAG = "tracked.best_metric"

#: On a sweep's stage run: the heavy parts the writer kept aside instead of logging them
#: (``"pictures, artifacts, datasets, model"``); the sweep logs its best configuration's.
LEFT_OUT_TAG = "tracked.left_out"


#: On the run that logged model ``<name>`` (``tracked.model_digest.<name>``), and on the
#: logged model itself: sha256 over the model's files (sorted relative paths and bytes) as
#: they were logged; ``tracked.load_model`` refuses files that no longer match it.
MODEL_DIGEST_TAG = "tracked.model_digest"


#: Beside the digest: the format the model was saved in (``skops``, ``cloudpickle``): a
#: by-value (cloudpickle) model is announced where its reader looks, not only to its writer.
MODEL_FORMAT_TAG = "tracked.model_format"


#: Beside the digest: the types beyond skops' defaults the writer trusted (a JSON list).
MODEL_TRUSTED_TAG = "tracked.model_trusted"
