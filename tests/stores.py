"""Fresh MLflow sqlite stores for the tests, copied from one migrated template.

Creating and migrating a sqlite store costs MLflow seconds (tens of them with every core
busy); a copy of a migrated one costs milliseconds. Tests whose subject is the creation of a
store (tests/test_fresh_store_race.py, tests/test_store_paths.py) make their own.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sqlite3
from pathlib import Path


def template(root: Path) -> Path:
    """The migrated template store under ``root``, made once for every xdist worker."""
    db = root / "template-store" / "mlflow.db"
    with open(root / "template-store.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not db.exists():
            db.parent.mkdir(exist_ok=True)
            partial = db.with_name("partial.db")
            # MLflow's own migration: the template is exactly what a first client would make.
            from mlflow import MlflowClient

            MlflowClient(f"sqlite:///{partial}").search_experiments()
            partial.rename(db)
    return db


def fresh_store(template_db: Path, path: Path, artifacts: Path | None = None) -> str:
    """Copy the template to ``path``; its default experiment keeps its artifacts where a store
    made there would (``<cwd>/mlruns/0``, or under ``artifacts``). Returns the store's URI."""
    shutil.copyfile(template_db, path)
    root = Path(artifacts) if artifacts is not None else Path(os.getcwd())
    with sqlite3.connect(path) as db:
        db.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (str(root / "mlruns" / "0"),),
        )
    db.close()
    return f"sqlite:///{path}"
