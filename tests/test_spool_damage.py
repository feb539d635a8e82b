"""Real spooled sessions, damaged, planted, of other formats, synced twice at once, capped
(issue 16 points 2, 4, 5 and 6; issue 15 point 2): damage is reported with its run and step,
the good records are written, the folder is kept, and nothing unverified is unpickled."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pipelines import Iris, run_iris
from servers import free_port
from spooling import entry_documents
from test_spool_safety import cli, plant

import tracked
from tracked import TrackingWarning
from tracked.backends.memory import MemoryBackend
from tracked.core.names import LOCAL_ID_TAG
from tracked.spool import codec
from tracked.spool.key import mac
from tracked.spool.sync import sync
from tracked.testing import strict

END_REASON_TAG = "tracked.end_reason"


def unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"


def spooled(iris, **attributes) -> Path:
    """The folder of a real Iris pass whose store is away."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        pipe, _ = run_iris(iris, tracking_uri=unreachable(), **attributes)
    return Path(os.environ["TRACKED_SPOOL_DIR"]) / pipe.run_id


def runs_of(target: str) -> list:
    client = MlflowClient(target)
    experiment = client.get_experiment_by_name("tests")
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def sync_to(spool: Path, target: str) -> tuple[int, str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        return cli("sync", "--spool", str(spool), "--tracking-uri", target)


def stage_document(folder: Path, stage: str) -> tuple[int, dict]:
    """(line index, document) of the first entry of ``stage``."""
    for index, document in enumerate(entry_documents(folder)):
        if document["entry"].get("stage") == stage:
            return index, document
    raise LookupError(stage)


@pytest.fixture
def target(tmp_path, monkeypatch, new_store):
    monkeypatch.chdir(tmp_path)
    return new_store(tmp_path / "target.db")


def test_bytes_flipped_in_a_payload_are_reported_and_the_rest_is_written(iris, target, spool_dir):
    folder = spooled(iris)
    _, document = stage_document(folder, "classification")
    offset, size = document["payload"]["offset"], document["payload"]["size"]
    with open(folder / "payloads.bin", "r+b") as handle:
        handle.seek(offset + size // 2)
        handle.write(b"\xff" * 16)
    code, _out, err = sync_to(spool_dir, target)
    assert 1 == code
    assert "stage 'classification' (entry" in err
    assert "does not verify" in err
    assert folder.is_dir()  # kept
    runs = runs_of(target)
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert "FINISHED" == parent.info.status
    assert 6 == len(runs) - 1  # every stage run, the damaged one too
    [damaged] = [r for r in runs if r.info.run_name == "classification:fit"]
    assert "does not verify" in damaged.data.tags["tracked.spool_damaged"]


def test_bytes_flipped_in_an_entry_line_are_reported_with_the_run_it_claims(
    iris, target, spool_dir
):
    folder = spooled(iris)
    index, _ = stage_document(folder, "reduction")
    lines = (folder / "entries.jsonl").read_bytes().splitlines(keepends=True)
    lines[index] = lines[index].replace(b'"training":true', b'"training":false')
    (folder / "entries.jsonl").write_bytes(b"".join(lines))
    code, out, err = sync_to(spool_dir, target)
    assert 1 == code
    assert f"line {index + 1} of entries.jsonl does not verify" in err
    assert "stage 'reduction'" in err
    assert folder.is_dir()
    names = sorted(r.info.run_name for r in runs_of(target))
    assert "reduction:fit" not in names  # the damaged record, not written
    assert {"preprocessing:fit", "classification:fit", "reduction:inference"} <= set(names)
    code, out, err = cli("status", "--spool", str(spool_dir))
    assert 1 == code
    assert "is empty" not in out
    assert "damaged" in out and "Traceback" not in err


def test_a_cut_end_line_ends_the_parent_killed_with_the_reason(iris, target, spool_dir):
    folder = spooled(iris)
    data = (folder / "entries.jsonl").read_bytes()
    (folder / "entries.jsonl").write_bytes(data[: len(data) - 40])  # half of the end_run line
    code, _out, err = sync_to(spool_dir, target)
    assert 1 == code
    assert "line 8 of entries.jsonl does not verify" in err and "(cut short)" in err
    [parent] = [r for r in runs_of(target) if "mlflow.parentRunId" not in r.data.tags]
    assert "KILLED" == parent.info.status
    assert "damaged" in parent.data.tags[END_REASON_TAG]
    assert folder.is_dir()


def test_a_truncated_payloads_file_never_leaves_the_parent_running(iris, target, spool_dir):
    folder = spooled(iris)
    size = (folder / "payloads.bin").stat().st_size
    os.truncate(folder / "payloads.bin", size // 3)
    code, _out, err = sync_to(spool_dir, target)
    assert 1 == code
    assert "cut short" in err and "payloads.bin" in err
    [parent] = [r for r in runs_of(target) if "mlflow.parentRunId" not in r.data.tags]
    assert "FINISHED" == parent.info.status
    assert all(r.info.status != "RUNNING" for r in runs_of(target))
    assert folder.is_dir()


def test_a_header_that_is_a_list_is_refused_without_a_traceback(iris, target, spool_dir):
    folder = spooled(iris)
    (folder / "header.json").write_text('["a", "list"]\n')
    code, out, err = cli("status", "--spool", str(spool_dir))
    assert 1 == code
    assert "no spool header" in err and "Traceback" not in err
    assert "is empty" not in out
    code, out, err = sync_to(spool_dir, target)
    assert 1 == code
    assert "1 folders refused" in out
    assert folder.is_dir()


def planted_v2(spool: Path, marker: Path, target: str) -> Path:
    """A folder of format 2 made without the user's key: its MACs are another key's."""
    folder = plant(spool, f"local-{os.urandom(16).hex()}", marker, target)
    other = os.urandom(32)
    header = json.loads((folder / "header.json").read_text())
    document = {
        "format": codec.FORMAT,
        "header": {**header, "pid": 1, "host": socket.gethostname()},
    }
    (folder / "header.json").write_bytes(codec.signed_line(document, other, b"header", folder.name))
    payload = (folder / "payloads.bin").read_bytes()
    entry = json.loads((folder / "entries.jsonl").read_text())
    entry.pop("payload")
    ref = {
        "offset": 0,
        "size": len(payload),
        "mac": mac(other, b"payload", folder.name.encode(), b"0", payload),
    }
    line = codec.signed_line({"entry": entry, "payload": ref}, other, b"entry", folder.name)
    (folder / "entries.jsonl").write_bytes(line)
    return folder


def test_a_planted_folder_with_a_wrong_mac_runs_nothing(iris, target, spool_dir, tmp_path):
    healthy = spooled(iris)
    marker = tmp_path / "executed"
    planted = planted_v2(spool_dir, marker, target)
    code, _out, err = sync_to(spool_dir, target)
    assert 1 == code
    assert "header.json does not verify" in err
    assert not marker.exists()
    assert planted.is_dir() and not healthy.exists()
    local_ids = [r.data.tags.get(LOCAL_ID_TAG) for r in runs_of(target)]
    assert planted.name not in local_ids and healthy.name in local_ids


def test_an_old_format_folder_is_refused_with_the_version_to_sync_it(target, spool_dir, tmp_path):
    marker = tmp_path / "executed"
    old = plant(spool_dir, f"local-{os.urandom(16).hex()}", marker, target)
    code, out, err = sync_to(spool_dir, target)
    assert 1 == code
    assert "tracked 0.1.0" in err and "pip install tracked==0.1.0" in err
    assert not marker.exists() and old.is_dir()
    code, out, err = cli("status", "--spool", str(spool_dir))
    assert 1 == code and "is empty" not in out


def test_a_newer_format_is_refused_and_kept(target, spool_dir):
    folder = spool_dir / f"local-{os.urandom(16).hex()}"
    folder.mkdir(mode=0o700)
    (folder / "header.json").write_text(json.dumps({"format": 99}) + "\n")
    code, _out, err = sync_to(spool_dir, target)
    assert 1 == code
    assert "spool format 99" in err and "upgrade tracked" in err
    assert folder.is_dir()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_syncs_at_once_on_four_sessions_write_each_run_once(iris, target, spool_dir):
    folders = [spooled(iris, params={"C": 0.5 + i}) for i in range(4)]
    command = [
        sys.executable,
        "-m",
        "tracked",
        "sync",
        "--spool",
        str(spool_dir),
        "--tracking-uri",
        target,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    processes = [
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=500) for p in processes]
    assert [0, 0] == [p.returncode for p in processes], outputs
    synced = [int(out.rsplit(" runs synced", 1)[0].split()[-1]) for out, _ in outputs]
    assert 4 == sum(synced), outputs
    runs = runs_of(target)
    local_ids = [r.data.tags[LOCAL_ID_TAG] for r in runs]
    assert len(local_ids) == len(set(local_ids))  # no run twice
    assert 4 * 7 == len(runs)
    assert sorted(f.name for f in folders) == sorted(
        r.data.tags[LOCAL_ID_TAG] for r in runs if "mlflow.parentRunId" not in r.data.tags
    )
    client = MlflowClient(target)
    experiment = client.get_experiment_by_name("tests").experiment_id
    models = client.search_logged_models(experiment_ids=[experiment], max_results=1000)
    keys = [(m.name, m.source_run_id) for m in models]
    assert len(keys) == len(set(keys))  # no model twice
    per_parent = len(keys) / 4
    assert per_parent == int(per_parent) and per_parent >= 2


class Loop(Iris):
    fold_after = None  # every call a record of its own: the cap is per record


def test_a_capped_spool_keeps_runs_params_and_metrics_and_drops_heavy_parts(
    iris, target, spool_dir, monkeypatch
):
    monkeypatch.setenv("TRACKED_SPOOL_MAX_BYTES", "30000")
    X_train, _X_test, y_train, _y_test = iris
    pipe = Loop()
    tracked.configure(pipe, tracking_uri=unreachable())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pipe:
            for _ in range(12):
                pipe.preprocessing(X_train, y_train)
    messages = [str(w.message) for w in caught if "TRACKED_SPOOL_MAX_BYTES" in str(w.message)]
    assert 1 == len(messages), messages
    assert "TRACKED_SPOOL_MAX_BYTES=30000" in messages[0]
    dropped = int(messages[0].split(": ", 1)[1].split(" records")[0])
    assert 0 < dropped < 12
    code, _out, err = sync_to(spool_dir, target)
    assert 0 == code, err
    children = [r for r in runs_of(target) if "mlflow.parentRunId" in r.data.tags]
    assert 12 == len(children)
    tagged = [r for r in children if "tracked.spool_dropped" in r.data.tags]
    assert dropped == len(tagged)
    assert all(r.data.params for r in tagged)  # params kept
    assert "artifacts" in tagged[0].data.tags["tracked.spool_dropped"]
    client = MlflowClient(target)
    assert [] == client.list_artifacts(tagged[-1].info.run_id)  # the heavy parts: dropped
    assert client.list_artifacts(min(children, key=lambda r: r.info.start_time).info.run_id)


def test_a_cap_that_is_no_size_warns_and_the_default_applies(monkeypatch):
    from tracked.spool.format import DEFAULT_MAX_BYTES, max_bytes

    monkeypatch.setenv("TRACKED_SPOOL_MAX_BYTES", "1 GB")
    with pytest.warns(TrackingWarning, match="is not a size in bytes"):
        assert DEFAULT_MAX_BYTES == max_bytes()


class RefusingBackend(MemoryBackend):
    """A memory store that has a spool, and refuses the reduction stage's params."""

    spool_uri = "memory://refusing"

    def __init__(self) -> None:
        super().__init__(synchronous=False)
        self.refusing = True

    def log(self, run_id, **kwargs):
        if self.refusing and "n_components" in (kwargs.get("params") or {}):
            raise ValueError("refused by the store")
        return super().log(run_id, **kwargs)


def test_a_record_the_store_refused_keeps_its_folder_until_sync_sends_it(iris, spool_dir):
    backend = RefusingBackend()
    with strict(False), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_iris(iris, backend=backend)
    assert any("refused by the store" in str(w.message) for w in caught)
    [folder] = [p for p in spool_dir.iterdir() if p.is_dir()]
    assert (folder / "released").exists()  # kept: the store has not acknowledged it all
    [reduction] = [r for r in backend.runs.values() if r.name == "reduction:fit"]
    assert {} == reduction.params
    backend.refusing = False
    result = sync(spool_dir, backend_for=lambda uri: backend)
    assert result.ok, result
    assert "2" == reduction.params["n_components"]
    assert not folder.exists()
    assert 7 == len(backend.runs)  # nothing twice


def test_a_folder_its_live_process_writes_is_skipped_by_sync_until_the_run_ends(
    iris, target, spool_dir
):
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=unreachable())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        with pipe:
            pipe.preprocessing(X_train, y_train)
            code, _out, err = sync_to(spool_dir, target)
            assert 1 == code
            assert "in use" in err  # the writer holds the folder's lock
            assert [] == runs_of(target)
        code, out, err = sync_to(spool_dir, target)
    assert 0 == code, err
    assert "1 runs synced" in out
    assert 2 == len(runs_of(target))
