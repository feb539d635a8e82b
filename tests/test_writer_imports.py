"""The writer thread imports nothing while stages run.

A module that one thread is importing sits half-made in ``sys.modules``; scikit-learn
checks the user's data by looking there (``sys.modules.get("polars")``, ``"pandas"``), so a
half-imported module fails the user's own call (seen: ``partial_fit`` raising "partially
initialized module 'polars' has no attribute 'DataFrame'" while the writer logged a dataset).
The store's library is imported on the caller's thread when the session opens.
"""

from __future__ import annotations

import os

from processes import ROOT, TESTS, run_python

PROGRAM = r"""
import builtins, sys, threading

writer_imports = []
real_import = builtins.__import__

def watching(name, globals=None, locals=None, fromlist=(), level=0):
    fresh = level == 0 and name not in sys.modules
    module = real_import(name, globals, locals, fromlist, level)
    if fresh and threading.current_thread().name.startswith("tracked-writer"):
        writer_imports.append(name)
    return module

builtins.__import__ = watching

from pipelines import Batches, batches_data

X, y = batches_data()
with Batches() as pipe:
    for batch in range(4):
        part = slice(batch * 50, (batch + 1) * 50)
        pipe.learn(pipe.reduce(pipe.scale(X[part])), y[part])
print("WRITER-IMPORTS", sorted({name.split(".")[0] for name in writer_imports}))
"""

#: What scikit-learn, pandas and NumPy look up in sys.modules to classify data.
PROBED = {"pandas", "polars", "pyarrow", "torch", "cupy", "jax", "dask", "xarray", "modin"}


def test_the_writer_thread_imports_no_module_that_data_checks_probe(tmp_path, new_store):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": new_store(tmp_path / "mlflow.db"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
    }
    done = run_python("-c", PROGRAM, cwd=tmp_path, env=env)
    line = next(line for line in done.stdout.splitlines() if line.startswith("WRITER-IMPORTS"))
    imported = set(eval(line.split(" ", 1)[1]))  # a list literal the program printed
    assert set() == imported & PROBED, imported
