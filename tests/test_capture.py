"""What is read from operators: text values, flattened params, phases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tracked.core.params import flatten, non_default_params, operator_params
from tracked.core.text import to_text
from tracked.recording.phase import decide_phase, snapshot


class Holder:
    pass


def test_to_text_never_raises_and_stays_encodable():
    class Broken:
        def __str__(self):
            raise RuntimeError("no")

        def __repr__(self):
            raise RuntimeError("no")

    assert to_text(Broken()).startswith("<unprintable ")
    assert "a\\x00b" == to_text("a\x00b")
    assert "\\ud800" == to_text("\ud800")
    to_text("\ud800").encode("utf-8")
    assert "1.5" == to_text(1.5)


def test_flatten_joins_nested_mappings_with_double_underscores():
    assert flatten({"a": 1, "b": {"c": 2, "d": {"e": None}}, "empty": {}}) == {
        "a": "1",
        "b__c": "2",
        "b__d__e": "None",
        "empty": "{}",
    }


def test_operator_params_use_get_params_deep():
    params = operator_params(make_pipeline(StandardScaler(), PCA(n_components=2)))
    assert "2" == params["pca__n_components"]
    assert "True" == params["standardscaler__with_mean"]


def test_the_phase_sees_new_refitted_and_untouched_operators():
    X = np.arange(12.0).reshape(6, 2)
    holder = Holder()
    holder.scaler = StandardScaler().fit(X)

    before = snapshot(holder)
    assert "inference" == decide_phase(before, holder.scaler)[0]
    holder.scaler.fit(X)  # same data, new fitted attributes
    assert "fit" == decide_phase(before, holder.scaler)[0]
    assert "fit" == decide_phase(before, StandardScaler().fit(X))[0]


def test_non_default_params_compare_arrays_without_failing():
    class Pipe:
        def __init__(self, weights=None, k=1):
            self.weights = weights
            self.k = k

    assert {"weights": pytest.approx(np.ones(2))} == non_default_params(Pipe(np.ones(2)))
    assert {} == non_default_params(Pipe())


def test_a_pipeline_built_empty_and_fitted_later_is_seen_as_fitted():
    from sklearn.linear_model import LogisticRegression

    holder = Holder()
    holder.model = make_pipeline(StandardScaler(), LogisticRegression())
    before = snapshot(holder)
    X = np.arange(20.0).reshape(10, 2)
    holder.model.fit(X, [0, 1] * 5)
    assert "fit" == decide_phase(before, holder.model)[0]
    assert "inference" == decide_phase(snapshot(holder), holder.model)[0]


def test_operators_kept_in_a_container_are_recognised():
    X = np.arange(12.0).reshape(6, 2)
    holder = Holder()
    holder.models = {"a": StandardScaler().fit(X), "b": StandardScaler()}
    before = snapshot(holder)
    holder.models["b"].fit(X)
    assert "inference" == decide_phase(before, holder.models["a"])[0]
    assert "fit" == decide_phase(before, holder.models["b"])[0]
