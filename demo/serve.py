"""Serve the composed model of a demo run over REST and check its answers.

    python demo/iris.py                 # prints the parent run id
    python demo/serve.py RUN_ID [--tracking-uri URI] [--port PORT]

Starts `mlflow models serve -m runs:/RUN_ID/pipeline --env-manager local` on 127.0.0.1,
waits for /ping, posts the iris test split to /invocations, compares the answers with the
predictions of the same model loaded locally, and stops the server, always.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll ``url`` until it answers 200, the server exits, or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"the model server exited with code {process.returncode}"
            raise RuntimeError(msg)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    msg = f"the model server did not answer {url} within {timeout:.0f} s"
    raise TimeoutError(msg)


def post_json(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def serve_and_check(
    model_uri: str, tracking_uri: str, rows: list, port: int, timeout: float = 120.0
) -> list:
    """Serve ``model_uri``, post ``rows``, return the predictions; the server is always stopped."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    # `mlflow models serve` starts uvicorn from the interpreter's bin folder.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    mlflow_cli = shutil.which("mlflow", path=env["PATH"]) or "mlflow"
    command = [mlflow_cli, "models", "serve", "-m", model_uri, "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", process, timeout)
        return post_json(f"http://127.0.0.1:{port}/invocations", {"inputs": rows})["predictions"]
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """Stop the server and its workers (it runs in its own process group)."""
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
    if process.stderr is not None:
        process.stderr.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="parent run id printed by demo/iris.py")
    parser.add_argument("--tracking-uri", default=None, help="default: MLflow's own resolution")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    args = parser.parse_args(argv)

    import mlflow

    tracking_uri = args.tracking_uri or mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    model_uri = f"runs:/{args.run_id}/pipeline"
    X, y = load_iris(return_X_y=True)
    _, X_test, _, _ = train_test_split(X, y, test_size=0.2, random_state=42)

    local = mlflow.pyfunc.load_model(model_uri).predict(X_test).tolist()
    served = serve_and_check(model_uri, tracking_uri, X_test.tolist(), args.port or free_port())
    print(f"served predictions: {' '.join(str(p) for p in served)}")
    if served != local:
        print(f"MISMATCH: local predictions are {local}", file=sys.stderr)
        return 1
    print(f"the served model answers exactly as the local one on {len(served)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
