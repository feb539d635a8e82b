"""TODO."""

from __future__ import annotations

#: The prefix of run ids that no store gave: runs known only to the spool so far.
LOCAL_PREFIX = "local-"


#: Parent tag: whether the composed model, as logged, predicts what a prediction pass did.
VERIFIED_TAG = "tracked.pipeline_verified"


#: Parent tag: why it does not (empty once a pass verifies it).
VERIFIED_REASON_TAG = "tracked.pipeline_verified_reason"


OPERATOR_ATTRIBUTE = "operator"


CONTEXT_ATTRIBUTE = "_tracked_context"


ERROR_TAG_LIMIT = 1000


#: On the stage runs of a copy that logs under another instance's parent run.
COPY_TAG = "tracked.copy"


#: On a stage run nested under the run of the stage that called it: that stage's name.
PARENT_STAGE_TAG = "tracked.parent_stage"


GROUP_TAG = "tracked.group"


DEFAULT_EXPERIMENT = "Default"

#: On every parent run: the pipeline class (``module.Name``) that made it.
PIPELINE_TAG = "tracked.pipeline"

#: What a stage run records of the stage's output (``log_outputs``): a preview, all, nothing.
LOG_OUTPUTS = ("preview", "full", "none")
