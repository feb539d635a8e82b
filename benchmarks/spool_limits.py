"""A hostile spool, measured: `tracked status` over 100,000 junk folders, a new session's first
spooled record in that spool (the size cap), and the memory of reading a folder whose
entries.jsonl is a 300 MB file (sparse: it takes no disk).

```bash
python benchmarks/spool_limits.py                       # the tracked on PYTHONPATH
python benchmarks/spool_limits.py --code /tmp/older     # another checkout's tracked, to compare
```

Each figure comes from a fresh child process (`python -c ...` with the chosen code first on
its path); the spool and its key live in a temporary folder, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATUS = """
import resource, sys, time
from tracked.cli import main
start = time.perf_counter()
code = main(["status", "--spool", sys.argv[1]])
wall = time.perf_counter() - start
print("FIGURES", wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""

FIRST_RECORD = """
import os, sys, time
from pathlib import Path
from tracked.spool.folder import SessionSpool
from tracked.spool.entries import Header, StartRun
start = time.perf_counter()
spool = SessionSpool(Path(sys.argv[1]), Header(session="local-" + os.urandom(16).hex()))
spool.append(StartRun(run="r", run_name="r", start_ms=1), None, None)
wall = time.perf_counter() - start
spool.remove()
print("FIGURES", wall, 0, file=sys.stderr)
"""


def child(code: str, script: str, spool: Path, env: dict[str, str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in KiB, lines printed) of one fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(spool)],
        env={**env, "PYTHONPATH": code},
        cwd=spool.parent,  # not this checkout: `python -c` puts the working folder first
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    figures = [line for line in done.stderr.splitlines() if line.startswith("FIGURES")]
    if not figures:
        raise SystemExit(done.stderr[-2000:])
    _, wall, rss = figures[-1].split()
    lines = len(done.stdout.splitlines()) + len(done.stderr.splitlines()) - 1
    return float(wall), int(rss), lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", default=os.environ.get("PYTHONPATH", ""))
    parser.add_argument("--folders", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "TRACKED_SPOOL_KEY_FILE": str(root / "key" / "spool.key")}
        spool = root / "spool"
        spool.mkdir(mode=0o700)
        start = time.perf_counter()
        for index in range(args.folders // 2):
            os.mkdir(spool / f"junk-{index}", 0o700)
            os.mkdir(spool / f"local-{index:032x}", 0o700)
        made = time.perf_counter() - start
        first = child(args.code, FIRST_RECORD, spool, env)  # also makes the key
        status = child(args.code, STATUS, spool, env)
        huge = root / "huge"
        huge.mkdir(mode=0o700)
        child(args.code, FIRST_RECORD.replace("spool.remove()", ""), huge, env)
        baseline = child(args.code, STATUS, huge, env)
        [folder] = list(huge.iterdir())
        with open(folder / "entries.jsonl", "r+b") as handle:
            handle.truncate(300 << 20)
        memory = child(args.code, STATUS, huge, env)
        print(
            json.dumps(
                {
                    "code": args.code,
                    "folders": args.folders,
                    "mkdir_s": round(made, 2),
                    "status_s": round(status[0], 2),
                    "status_lines": status[2],
                    "first_record_s": round(first[0], 3),
                    "status_300mb_file_peak_rss_mib": round(memory[1] / 1024, 1),
                    "status_small_folder_peak_rss_mib": round(baseline[1] / 1024, 1),
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
