"""``TRACKED_SQLITE_WAL=1``: a sqlite store in write-ahead logging, its runs as before."""

from __future__ import annotations

import sqlite3

from pipelines import Iris, tracked_pass

import tracked


def journal_mode(tmp_path):
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]


class Stored(Iris):
    pass


def test_the_store_is_switched_to_wal_when_asked(tracking_uri, client, iris, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKED_SQLITE_WAL", "1")
    pipe = Stored()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    tracked_pass(pipe, iris)
    assert "wal" == journal_mode(tmp_path)
    parent = client.get_run(pipe.run_id)
    assert "FINISHED" == parent.info.status
    assert 0 < parent.data.metrics["accuracy"] <= 1


def test_the_store_keeps_its_journal_by_default(tracking_uri, iris, tmp_path):
    pipe = Stored()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    tracked_pass(pipe, iris)
    assert "delete" == journal_mode(tmp_path)
