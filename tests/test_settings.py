"""A pipeline's settings are declared once (tracked/core/settings.py), set in the class
body or with ``tracked.configure``, and resolved once per parent run: the environment over
``configure`` over the class body over the default. The instance's attributes are the user's."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import PipelineDefinitionError, TrackedPipeline
from tracked.core.config import ENVIRONMENT, environment_table
from tracked.core.settings import NAMES, Settings, table

ROOT = Path(__file__).parent.parent
X = np.arange(12.0).reshape(6, 2)


class Scale(TrackedPipeline):
    log_outputs = "full"

    def scale(self, X, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        return self.operator.transform(X)


def test_configure_wins_over_the_class_and_the_class_over_the_default(monkeypatch):
    monkeypatch.delenv("TRACKED_STRICT", raising=False)
    pipe = Scale()
    assert "full" == Settings.of(pipe).log_outputs
    assert 5 == Settings.of(pipe).max_tuning_runs
    assert pipe is tracked.configure(pipe, log_outputs="none", strict=True)
    assert ("none", True) == (Settings.of(pipe).log_outputs, Settings.of(pipe).strict)


def test_the_environment_wins_over_configure_for_strict(monkeypatch):
    pipe = tracked.configure(Scale(), strict=True)
    monkeypatch.setenv("TRACKED_STRICT", "0")
    assert Settings.of(pipe).strict is False


def test_none_is_a_value_where_it_means_something():
    class All(Scale):
        max_tuning_runs = None

    assert Settings.of(All()).max_tuning_runs is None


def test_a_run_keeps_the_settings_it_opened_with(memory):
    pipe = tracked.configure(Scale(), backend=memory)
    with pipe:
        pipe.scale(X)
        tracked.configure(pipe, log_outputs="none")  # read when the next parent run opens
        pipe.scale(X)
    with pipe:
        pipe.scale(X)
    first, second = (memory.children(run.run_id) for run in memory.parents())
    assert [True, True] == ["output.csv" in run.artifacts for run in first]
    assert [False] == ["output.csv" in run.artifacts for run in second]


def test_configure_switches_tracking_off_as_the_instance_attribute_does(memory):
    pipe = tracked.configure(Scale(), backend=memory, tracking=False)
    assert pipe.tracking is False
    with pipe:
        pipe.scale(X)
    assert [] == memory.parents()


def test_configure_refuses_unknown_names_and_values_that_do_not_fit():
    with pytest.raises(TypeError, match=r"no setting 'scorng'.*scoring"):
        tracked.configure(Scale(), scorng="f1")
    with pytest.raises(TypeError, match="no setting 'stages'"):
        tracked.configure(Scale(), stages={"scale": "transformer"})
    with pytest.raises(PipelineDefinitionError, match=r"Scale\.log_outputs must be one of"):
        tracked.configure(Scale(), log_outputs="ful")
    with pytest.raises(PipelineDefinitionError, match=r"Scale\.strict must be bool, not str"):
        tracked.configure(Scale(), strict="yes")


def test_a_copy_and_a_clone_keep_what_configure_set(memory):
    from sklearn.base import clone

    pipe = tracked.configure(Scale(), backend=memory, log_outputs="none")
    for twin in (clone(pipe), __import__("copy").deepcopy(pipe)):
        assert "none" == Settings.of(twin).log_outputs
    tracked.configure(clone(pipe), log_outputs="full")
    assert "none" == Settings.of(pipe).log_outputs  # the clone's change stays the clone's


class Hyper(TrackedPipeline):
    """Every hyperparameter is named like one of tracked's settings."""

    def __init__(
        self,
        scoring="f1",
        target="species",
        experiment=3,
        backend="gpu",
        stages=("a", "b"),
        strict="very",
        run_name="mine",
        fold_after="never",
        synchronous="yes",
    ):
        self.scoring = scoring
        self.target = target
        self.experiment = experiment
        self.backend = backend
        self.stages = stages
        self.strict = strict
        self.run_name = run_name
        self.fold_after = fold_after
        self.synchronous = synchronous

    def learn(self, X, y=None, stage="estimator"):
        self.operator = LogisticRegression().fit(X, y)
        return self.operator


class Plain(TrackedPipeline):
    def learn(self, X, y=None, stage="estimator"):
        self.operator = LogisticRegression().fit(X, y)
        return self.operator


def _record(pipe, memory, iris):
    X_train, _, y_train, _ = iris
    tracked.configure(pipe, backend=memory)
    with pipe:
        for _ in range(4):  # past fold_after: the default folds the third call on
            pipe.learn(X_train, y_train)
    [parent] = memory.parents()
    children = memory.children(parent.run_id)
    return parent, sorted(run.name for run in children), sorted(children[0].metrics)


def test_hyperparameters_named_like_settings_are_params_and_change_nothing(memory, iris):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # never read as the old spelling
        hyper_parent, hyper_children, hyper_metrics = _record(Hyper(), memory, iris)
    _, plain_children, plain_metrics = _record(Plain(), tracked.testing.MemoryBackend(), iris)

    expected = {
        "scoring": "f1",
        "target": "species",
        "experiment": "3",
        "backend": "gpu",
        "strict": "very",
        "run_name": "mine",
        "fold_after": "never",
        "synchronous": "yes",
    }
    assert expected == {k: hyper_parent.params[k] for k in expected}
    assert "Hyper" == hyper_parent.experiment  # the class name, as with no setting
    assert plain_children == hyper_children  # folded alike: fold_after is the default
    assert plain_metrics == hyper_metrics  # scored alike: scoring is the default
    assert Settings.of(Hyper()) == Settings.of(Plain())


def test_the_old_instance_spelling_works_for_a_release_with_a_deprecation(memory):
    pipe = Scale()
    pipe.backend = memory
    deprecated = r"tracked\.configure\(pipe, backend=\.\.\.\)"
    with pytest.warns(FutureWarning, match=deprecated), pipe:
        pipe.scale(X)
    assert 1 == len(memory.parents())


def test_a_class_body_value_that_does_not_fit_names_the_setting():
    with pytest.raises(PipelineDefinitionError, match=r"Bad\.fold_after must be None or"):

        class Bad(TrackedPipeline):
            fold_after = -1


def test_every_setting_and_environment_variable_is_on_the_configuration_page():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert "<!-- settings table -->" in page and "<!-- environment table -->" in page
    assert [f"`{name}`" for name in NAMES] == [
        row.split("|")[1].strip() for row in table().splitlines()[2:]
    ]
    used = set()
    for path in (ROOT / "tracked").rglob("*.py"):
        used |= set(re.findall(r"\bTRACKED_[A-Z_]+\b", path.read_text()))
    declared = {var.name for var in ENVIRONMENT}
    assert used == declared
    assert all(f"`{name}`" in environment_table() for name in declared)


def test_tracked_s_environment_is_read_in_one_module():
    """Every ``TRACKED_*`` variable is read by tracked/core/config.py (``env_text``,
    ``env_flag``): no other module touches ``os.environ`` for one of them."""
    offenders = []
    for path in (ROOT / "tracked").rglob("*.py"):
        if path.name == "config.py" or path.name == "testing.py":  # testing.strict() sets one
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if ("os.environ" in line or "getenv" in line) and re.search(
                r"TRACKED_|_ENV\b|_VAR\b", line
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert [] == offenders


class _Stateless:
    """An attribute tracked cannot look into: preparing a stage call fails on it."""

    @property
    def __dict__(self):
        msg = "no state to show"
        raise RuntimeError(msg)


class StrictHyper(TrackedPipeline):
    def __init__(self, strict=True):
        self.strict = strict

    def scale(self, X, stage="transformer"):
        return X * 2


def test_a_hyperparameter_named_strict_does_not_make_tracking_failures_raise(memory, monkeypatch):
    monkeypatch.delenv("TRACKED_STRICT", raising=False)
    pipe = tracked.configure(StrictHyper(strict=True), backend=memory)
    pipe.helper = _Stateless()
    with pytest.warns(tracked.TrackingWarning, match="could not prepare tracking of stage"):
        result = pipe.scale(X)
    np.testing.assert_array_equal(X * 2, result)


def test_the_strict_setting_makes_the_same_failure_raise(memory, monkeypatch):
    monkeypatch.delenv("TRACKED_STRICT", raising=False)
    pipe = tracked.configure(StrictHyper(strict=False), backend=memory, strict=True)
    pipe.helper = _Stateless()
    with pytest.raises(tracked.TrackingError, match="could not prepare tracking of stage"):
        pipe.scale(X)
