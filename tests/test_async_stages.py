"""``async def`` stages are recorded once awaited; generator stages are refused."""

from __future__ import annotations

import asyncio
import inspect

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import PipelineDefinitionError, TrackedPipeline
from tracked.testing import MemoryBackend

PAUSE_S = 0.2


class Async(TrackedPipeline):
    experiment = "async"

    async def scale(self, X, y=None, stage="transformer"):
        await asyncio.sleep(PAUSE_S)
        self.operator = self.scaler = StandardScaler().fit(X)
        return self.scaler.transform(X)

    async def clf(self, X, y=None, stage="estimator"):
        await asyncio.sleep(PAUSE_S)
        self.operator = self.model = LogisticRegression(C=0.3).fit(X, y)
        return self.model.predict(X)

    async def fail(self, X, y=None, stage="estimator"):
        await asyncio.sleep(0)
        raise KeyError("from the stage")


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    return X, (X[:, 0] > 0).astype(int)


def test_an_async_stage_stays_a_coroutine_function():
    assert inspect.iscoroutinefunction(Async.clf)
    assert inspect.iscoroutinefunction(Async().clf)


def test_an_awaited_stage_is_recorded_like_a_plain_one_with_the_run_spanning_the_await(
    tracking_uri, client
):
    X, y = _data()
    pipe = Async()
    tracked.configure(pipe, tracking_uri=tracking_uri)

    async def main():
        with pipe:
            return await pipe.clf(await pipe.scale(X), y)

    predicted = asyncio.run(main())
    assert (pipe.model.predict(pipe.scaler.transform(X)) == predicted).all()

    exp = client.get_run(pipe.run_id).info.experiment_id
    runs = client.search_runs(
        [exp],
        filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    assert ["scale:fit", "clf:fit"] == [run.info.run_name for run in runs]
    clf = runs[1]
    assert "sklearn.linear_model._logistic.LogisticRegression" == clf.data.tags["tracked.operator"]
    assert "0.3" == clf.data.params["C"]
    assert clf.outputs.model_outputs
    assert clf.data.metrics["duration_s"] >= PAUSE_S
    assert clf.info.end_time - clf.info.start_time >= PAUSE_S * 1000
    assert "training_accuracy" in client.get_run(pipe.run_id).data.metrics


# The classifier runs on unscaled data alongside the scaler: no composed model, rightly.
@pytest.mark.filterwarnings("ignore:no composed")
def test_concurrent_async_stages_of_one_pipeline_each_record_their_own_operator():
    backend = MemoryBackend()

    class Concurrent(Async):
        pass

    Concurrent.backend = backend
    X, y = _data()
    pipe = Concurrent()

    async def main():
        with pipe:
            await asyncio.gather(pipe.scale(X), pipe.clf(X, y))

    asyncio.run(main())
    runs = {run.name: run for run in backend.children(pipe.run_id)}
    assert {"scale:fit", "clf:fit"} == set(runs)
    assert runs["scale:fit"].tags["tracked.operator"].endswith("StandardScaler")
    assert runs["clf:fit"].tags["tracked.operator"].endswith("LogisticRegression")
    assert "tracked.parent_stage" not in runs["clf:fit"].tags  # siblings, not nested


def test_an_async_stage_raises_what_the_method_raises_and_its_run_fails():
    backend = MemoryBackend()

    class Failing(Async):
        pass

    Failing.backend = backend
    pipe = Failing()
    X, y = _data()
    with pytest.raises(KeyError, match="from the stage"), pipe:
        asyncio.run(pipe.fail(X, y))
    [run] = backend.children(pipe.run_id)
    assert "FAILED" == run.status


def test_a_generator_stage_is_refused_at_class_definition_naming_the_method():
    with pytest.raises(PipelineDefinitionError, match=r"Gen\.batches is a generator"):

        class Gen(TrackedPipeline):
            def batches(self, X, y=None, stage="transformer"):
                yield from X


def test_an_async_generator_stage_is_refused_at_class_definition_naming_the_method():
    with pytest.raises(PipelineDefinitionError, match=r"AGen\.batches is a generator"):

        class AGen(TrackedPipeline):
            async def batches(self, X, y=None, stage="transformer"):
                for row in X:
                    yield row
