"""The composed model of a parent run: which transformers fed the estimator (``chain``: the
digest chain), the scikit-learn ``Pipeline`` built from them (``compose``), and its check
against each prediction pass (``verify``: the ``tracked.pipeline_verified`` tag)."""
