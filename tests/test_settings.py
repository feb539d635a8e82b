"""A pipeline's settings are declared once (tracked/core/settings.py), set in the class
body or with ``tracked.configure``, and resolved once per parent run: the environment over
``configure`` over the class body over the default. The instance's attributes are the user's."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
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


#: Read as the setting, this would make ``fit`` a stage of its own.
FIT_AS_STAGE = {"fit": "estimator"}

#: An odd value for every setting but ``tracking`` (the one switch read from the instance):
#: each one would be refused, or would change the runs, if it were read as the setting.
ODD_VALUES = {
    "experiment": 3,
    "tracking_uri": "nowhere://at-all",
    "backend": "gpu",
    "strict": "very",
    "scoring": "no-such-scorer",
    "run_name": ("mine",),
    "registered_model_name": 7,
    "serialization_format": "json",
    "trusted_types": "os.system",
    "nest_under_active_run": "maybe",
    "log_outputs": "ful",
    "stages": {"fit": "estimator"},
    "synchronous": "yes",
    "log_input_example": -1,
    "target": "1 not a name",
    "pos_label": ("a", "b"),
    "max_tuning_runs": "all",
    "log_models": "some",
    "training_metrics": "none",
    "log_pictures": 0.5,
    "log_datasets": "x",
    "fold_after": -3,
    "checkpoint_every": "often",
}


class _Workflow(ClassifierMixin, BaseEstimator):
    """A classifier around two stages, shared by the two pipelines below (after
    ``TrackedPipeline`` in their bases, so that its clone is used)."""

    def prepare(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.scaler_ = StandardScaler().fit(X)
        self.operator = self.scaler_
        return self.scaler_.transform(X)

    def classify(self, X, y=None, predict=False, stage="estimator"):
        if not predict:
            self.model_ = LogisticRegression(max_iter=500).fit(X, y)
        self.operator = self.model_
        return self.model_.predict(X) if predict else self.model_

    def fit(self, X, y):
        self.classify(self.prepare(X), y)
        return self

    def predict(self, X):
        return self.classify(self.prepare(X, train=False), predict=True)

    @property
    def classes_(self):
        return self.model_.classes_


class EverySetting(TrackedPipeline, _Workflow):
    """Every setting's name is a hyperparameter, with a value no setting accepts."""

    def __init__(
        self,
        experiment=3,
        tracking_uri="nowhere://at-all",
        backend="gpu",
        strict="very",
        scoring="no-such-scorer",
        run_name=("mine",),
        registered_model_name=7,
        serialization_format="json",
        trusted_types="os.system",
        nest_under_active_run="maybe",
        log_outputs="ful",
        stages=FIT_AS_STAGE,
        synchronous="yes",
        log_input_example=-1,
        target="1 not a name",
        pos_label=("a", "b"),
        max_tuning_runs="all",
        log_models="some",
        training_metrics="none",
        log_pictures=0.5,
        log_datasets="x",
        fold_after=-3,
        checkpoint_every="often",
    ):
        self.experiment = experiment
        self.tracking_uri = tracking_uri
        self.backend = backend
        self.strict = strict
        self.scoring = scoring
        self.run_name = run_name
        self.registered_model_name = registered_model_name
        self.serialization_format = serialization_format
        self.trusted_types = trusted_types
        self.nest_under_active_run = nest_under_active_run
        self.log_outputs = log_outputs
        self.stages = stages
        self.synchronous = synchronous
        self.log_input_example = log_input_example
        self.target = target
        self.pos_label = pos_label
        self.max_tuning_runs = max_tuning_runs
        self.log_models = log_models
        self.training_metrics = training_metrics
        self.log_pictures = log_pictures
        self.log_datasets = log_datasets
        self.fold_after = fold_after
        self.checkpoint_every = checkpoint_every


class NoSetting(TrackedPipeline, _Workflow):
    """The same workflow with no hyperparameters: what the defaults record."""


def _shape(backend):
    """What the runs of ``backend`` look like, class names aside: each parent run's name,
    experiment and children (name, metric names and model), and the params of the first."""

    def tree(run):
        children = backend.children(run.run_id)
        return (
            run.name,
            run.experiment,
            run.status,
            sorted((c.name, sorted(c.metrics), sorted(c.models), c.status) for c in children),
            [tree(c) for c in children if backend.children(c.run_id)],
        )

    return [tree(run) for run in backend.parents()]


def _everything(cls, backend):
    """fit, inference and a cross_val_score of clones in a parent run; a group of two."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import cross_val_score

    X, y = load_iris(return_X_y=True)
    pipe = tracked.configure(cls(), backend=backend)
    with pipe:
        pipe.fit(X, y)
        pipe.predict(X)
        scores = cross_val_score(pipe, X, y, cv=2)
    with tracked.group("two", backend=backend):
        for _ in range(2):
            other = tracked.configure(cls(), backend=backend)
            with other:
                other.fit(X, y)
    return scores


def test_hyperparameters_named_like_every_setting_record_what_the_defaults_record(memory):
    import warnings

    defaults = tracked.testing.MemoryBackend()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # never read as the old spelling
        warnings.simplefilter("error", tracked.TrackingWarning)
        odd_scores = _everything(EverySetting, memory)
    plain_scores = _everything(NoSetting, defaults)

    np.testing.assert_array_equal(plain_scores, odd_scores)
    renamed = repr(_shape(memory)).replace("EverySetting", "NoSetting")
    assert repr(_shape(defaults)) == renamed
    [parent, _] = memory.parents()
    hyper = {name: str(value) for name, value in ODD_VALUES.items() if name != "stages"}
    assert {**hyper, "stages__fit": "estimator"} == {
        name: parent.params[name] for name in [*hyper, "stages__fit"]
    }
    assert Settings.of(EverySetting()) == Settings.of(NoSetting())


def test_hyperparameters_named_like_every_setting_in_a_sqlite_store_and_a_sweep(tracking_uri):
    import warnings

    from mlflow import MlflowClient
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    # The class body's tracking_uri is the setting; the constructor's is a hyperparameter.
    Stored = type("Stored", (EverySetting,), {"tracking_uri": tracking_uri})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", tracked.TrackingWarning)
        pipe = Stored()
        with pipe:
            pipe.fit(X, y)
            pipe.predict(X)
        results = tracked.sweep(
            Stored,
            {"fold_after": [-3, -4]},
            lambda p: p.fit(X, y).score(X, y),
            backend="threading",
        )
    assert 2 == len(results) and results.run_id is not None

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("Stored")  # the class name: no experiment set
    runs = client.search_runs([experiment.experiment_id])
    parent = client.get_run(pipe.run_id)
    assert "Stored" == parent.info.run_name
    assert "nowhere://at-all" == parent.data.params["tracking_uri"]
    assert {"FINISHED"} == {run.info.status for run in runs}
    stage_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == pipe.run_id]
    assert ["classify:fit", "classify:inference", "prepare:fit", "prepare:inference"] == sorted(
        r.info.run_name for r in stage_runs
    )
    assert pipe.model_uri is not None  # the composed model, as serialization_format's default
    swept = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == results.run_id]
    assert [("-3", "Stored"), ("-4", "Stored(fold_after=-4)")] == sorted(
        (r.data.params["fold_after"], r.info.run_name) for r in swept
    )


def test_the_old_instance_spelling_of_strict_makes_the_same_failure_raise(memory, monkeypatch):
    monkeypatch.delenv("TRACKED_STRICT", raising=False)
    pipe = tracked.configure(Scale(), backend=memory)
    pipe.strict = True  # no constructor argument: the deprecated spelling of the setting
    pipe.helper = _Stateless()
    with (
        pytest.warns(FutureWarning, match=r"configure\(pipe, strict=\.\.\.\)"),
        pytest.raises(tracked.TrackingError, match="could not prepare tracking of stage"),
    ):
        pipe.scale(X)
