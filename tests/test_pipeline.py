"""TrackedPipeline follows scikit-learn's estimator conventions and pickles."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from pipelines import Iris
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

import tracked
from tracked import TrackedPipeline


def test_get_params_reads_the_constructor_arguments_back():
    assert {"n_components": 3, "C": 0.5} == Iris(n_components=3, C=0.5).get_params()


def test_get_params_deep_reaches_nested_estimators():
    class Wrapper(TrackedPipeline):
        def __init__(self, model=None, alpha=1):
            self.model = model
            self.alpha = alpha

    params = Wrapper(model=LogisticRegression(C=2.0)).get_params(deep=True)
    assert 2.0 == params["model__C"]
    assert {"model", "alpha"} == set(Wrapper().get_params(deep=False))


def test_set_params_sets_known_names_and_rejects_others():
    pipe = Iris().set_params(C=0.1)
    assert 0.1 == pipe.C
    with pytest.raises(ValueError, match="invalid parameter 'gamma' for Iris"):
        pipe.set_params(gamma=1)


def test_clone_builds_an_untracked_fresh_copy_with_the_same_params():
    pipe = Iris(n_components=3)
    twin = clone(pipe)
    assert type(pipe) is type(twin)
    assert pipe.get_params() == twin.get_params()
    assert twin.run_id is None


def test_repr_shows_non_default_params():
    assert "Iris()" == repr(Iris())
    assert "Iris(C=0.5)" == repr(Iris(C=0.5))


def test_an_instance_pickles_before_and_after_training(iris, tmp_path):
    X_train, X_test, y_train, _ = iris
    pipe = Iris()
    pipe.tracking = False
    restored = pickle.loads(pickle.dumps(pipe))
    assert pipe.get_params() == restored.get_params()
    pipe.train(X_train, y_train)
    restored = pickle.loads(pickle.dumps(pipe))
    assert (pipe.predict(X_test) == restored.predict(X_test)).all()


def test_a_copy_made_before_a_run_opens_its_own_parent(tracking_uri, client, iris):
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    restored = pickle.loads(pickle.dumps(pipe))
    with pipe:
        pipe.preprocessing(X_train, y_train)
    with restored:
        restored.preprocessing(X_train, y_train)
    assert restored.run_id is not None
    assert pipe.run_id != restored.run_id


def test_a_copy_made_during_a_run_logs_under_the_same_parent_and_never_ends_it(
    tracking_uri, client, iris
):
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.preprocessing(X_train, y_train)
        for restored in (pickle.loads(pickle.dumps(pipe)), copy.copy(pipe), copy.deepcopy(pipe)):
            restored.reduction(restored.scaler.transform(X_train), y_train)
            restored.close()
            assert "RUNNING" == client.get_run(pipe.run_id).info.status
    from test_mlflow_backend import children_of

    children = children_of(client, pipe.run_id)
    assert [c.info.run_name for c in children] == ["preprocessing:fit"] + ["reduction:fit"] * 3
    assert "FINISHED" == client.get_run(pipe.run_id).info.status


def test_a_shallow_copy_does_not_share_the_original_session(memory, iris):
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, backend=memory)
    twin = copy.copy(pipe)  # before any run: the copy is on its own
    pipe.preprocessing(X_train, y_train)
    twin.preprocessing(X_train, y_train)
    pipe.close()
    twin.close()
    assert pipe.run_id != twin.run_id
    assert 2 == len(memory.parents())


def test_stage_methods_pickle_by_reference_like_plain_methods(iris):
    X_train, _, y_train, _ = iris
    pipe = Iris()
    pipe.tracking = False
    bound = pickle.loads(pickle.dumps(pipe.preprocessing))
    np.testing.assert_array_equal(pipe.preprocessing(X_train, y_train), bound(X_train, y_train))
    assert Iris.preprocessing.__name__ == pickle.loads(pickle.dumps(Iris.preprocessing)).__name__
