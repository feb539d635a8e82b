"""A pipeline's settings are resolved in one place, once per parent run: the environment
over the instance's attribute over the class's over the default."""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import StandardScaler

from tracked import TrackedPipeline
from tracked.records.settings import MAX_TUNING_RUNS, Settings

X = np.arange(12.0).reshape(6, 2)


class Scale(TrackedPipeline):
    log_outputs = "full"

    def scale(self, X, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        return self.operator.transform(X)


def test_the_instance_wins_over_the_class_and_the_class_over_the_default(monkeypatch):
    monkeypatch.delenv("TRACKED_STRICT", raising=False)
    pipe = Scale()
    assert "full" == Settings.of(pipe).log_outputs
    assert MAX_TUNING_RUNS == Settings.of(pipe).max_tuning_runs
    pipe.log_outputs = "none"
    pipe.strict = True
    assert ("none", True) == (Settings.of(pipe).log_outputs, Settings.of(pipe).strict)


def test_the_environment_wins_over_the_instance_for_strict(monkeypatch):
    pipe = Scale()
    pipe.strict = True
    monkeypatch.setenv("TRACKED_STRICT", "0")
    assert Settings.of(pipe).strict is False


def test_none_is_a_value_where_it_means_something():
    class All(Scale):
        max_tuning_runs = None

    assert Settings.of(All()).max_tuning_runs is None


def test_a_hyperparameter_named_like_a_setting_does_not_become_the_experiment():
    pipe = Scale()
    pipe.experiment = 3  # the user's own hyperparameter, not a name
    assert Settings.of(pipe).experiment is None


def test_a_run_keeps_the_settings_it_opened_with(memory):
    pipe = Scale()
    pipe.backend = memory
    with pipe:
        pipe.scale(X)
        pipe.log_outputs = "none"  # read when the next parent run opens, not in this one
        pipe.scale(X)
    with pipe:
        pipe.scale(X)
    first, second = (memory.children(run.run_id) for run in memory.parents())
    assert [True, True] == ["output.csv" in run.artifacts for run in first]
    assert [False] == ["output.csv" in run.artifacts for run in second]
