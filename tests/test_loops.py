"""Stages called in loops: a pass of transformers fitted once and an estimator learning
batch after batch (``partial_fit``) is composed like a one-pass workflow."""

from __future__ import annotations

from pipelines import Batches, batches_data

import tracked


def test_a_partial_fit_loop_after_a_first_fitted_batch_is_composed_every_time(memory):
    X, y = batches_data()
    pipe = Batches()
    tracked.configure(pipe, backend=memory)
    tracked.configure(pipe, fold_after=None)  # every batch a run of its own, and a composed model
    with pipe:
        for batch in range(4):
            rows = slice(batch * 50, (batch + 1) * 50)
            pipe.learn(pipe.reduce(pipe.scale(X[rows])), y[rows])
    [parent] = memory.parents()
    assert 4 == [name for name, _, _ in parent.logged_models].count("pipeline")
    composed = parent.models["pipeline"]
    expected = pipe.clf.predict(pipe.pca.transform(pipe.scaler.transform(X)))
    assert expected.tolist() == composed.predict(X).tolist()


def test_transforming_the_test_set_before_fitting_still_composes(memory):
    """The common order: both sets transformed first, then the estimator fitted."""
    X, y = batches_data()
    pipe = Batches()
    tracked.configure(pipe, backend=memory)
    with pipe:
        train = pipe.reduce(pipe.scale(X[:150]))
        test = pipe.reduce(pipe.scale(X[150:]))
        pipe.learn(train, y[:150])
        predicted = pipe.classify(test)
    [parent] = memory.parents()
    assert predicted.tolist() == parent.models["pipeline"].predict(X[150:]).tolist()
