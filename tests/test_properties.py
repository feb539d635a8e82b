"""Property-based: params of arbitrary names and values land in a real sqlite store."""

from __future__ import annotations

import math

import pytest
import stores
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tracked
from tracked import TrackedPipeline
from tracked.backends.mlflow.keys import MAX_PARAM_VALUE_LENGTH, sanitize_key
from tracked.core.params import flatten
from tracked.core.text import shorten

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50)
    # Values around MLflow's 6000-character limit, cheap to generate.
    | st.builds(
        str.__mul__, st.sampled_from(["a", "\u00e9", "\u4e2d", "ab"]), st.integers(2990, 6100)
    )
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
identifiers = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)


class Operator:
    """An estimator-like object whose get_params returns whatever the test gives it."""

    def __init__(self, params):
        self._params = params

    def get_params(self, deep=True):
        return self._params


class Pipe(TrackedPipeline):
    experiment = "properties"

    def __init__(self, params=None):
        self.params = params

    def fit_stage(self, X, stage="transformer"):
        self.operator = Operator(self.params)
        return X


def logged_params(tracking_uri, client, params):
    pipe = Pipe(params)
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.fit_stage(1)
    experiment = client.get_run(pipe.run_id).info.experiment_id
    [child] = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'"
    )
    return child.data.params


@pytest.fixture(scope="module")
def store(tmp_path_factory, store_template):
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp("properties")
    uri = stores.fresh_store(store_template, folder / "mlflow.db", folder)
    return uri, MlflowClient(uri)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=st.dictionaries(identifiers, values, max_size=8))
def test_every_value_is_stored_as_its_text_within_mlflow_limits(store, params):
    uri, client = store
    flat = flatten(params)
    stored = logged_params(uri, client, params)
    assert len(flat) == len(stored)  # names that collide once sanitised are kept apart
    for key, value in flat.items():
        assert shorten(value, MAX_PARAM_VALUE_LENGTH) == stored[sanitize_key(key)] or any(
            shorten(value, MAX_PARAM_VALUE_LENGTH) == v
            for k, v in stored.items()
            if k.startswith(sanitize_key(key)[:240])
        )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=st.dictionaries(st.text(max_size=300), st.text(max_size=20), max_size=8))
def test_any_names_are_accepted_and_none_is_lost(store, params):
    uri, client = store
    stored = logged_params(uri, client, params)
    assert len(flatten(params)) == len(stored)
    assert sorted(shorten(v, MAX_PARAM_VALUE_LENGTH) for v in flatten(params).values()) == sorted(
        stored.values()
    )


def test_nan_and_inf_param_values_are_text():
    assert {"a": "nan", "b": "inf"} == flatten({"a": math.nan, "b": math.inf})


def test_names_that_collide_once_sanitised_are_kept_apart(store):
    uri, client = store
    assert {"a_b": "1", "a_b_2": "2", "a_b_3": "3"} == logged_params(
        uri, client, {"a/b": 1, "a?b": 2, "a%b": 3}
    )
