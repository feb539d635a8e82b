"""One job of one benchmark case, in a fresh process (started by run.py, not by hand).

    python benchmarks/child.py CASE MODE --store sqlite:///<tmp>/mlflow.db [--rows N]
        [--passes P] [--quick]

Runs ``cases.<module>.run(MODE, options)`` and prints its figures as one JSON object on the
last line of stdout. Anything the case prints goes to stderr, so stdout stays parseable.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402 - the clock starts before anything is imported
import contextlib  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

from cases import CASES  # noqa: E402
from cases.common import Options  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("mode", choices=("workflow", "overhead", "import", "loop"))
    parser.add_argument("--store", required=True, help="the child's MLflow tracking URI")
    parser.add_argument("--rows", type=int, help="synthetic rows instead of iris")
    parser.add_argument("--passes", type=int, help="timed passes in overhead mode")
    parser.add_argument("--quick", action="store_true", help="loop cases: small counts")
    args = parser.parse_args(argv)

    options = Options(
        store=args.store,
        rows=args.rows,
        passes=args.passes,
        started=STARTED,
        case=args.case,
        quick=args.quick,
    )
    module = importlib.import_module(f"cases.{CASES[args.case].module}")
    with contextlib.redirect_stdout(sys.stderr):
        figures = module.run(args.mode, options)
    # Wall time minus this is the interpreter's start-up and teardown.
    figures["in_process_s"] = time.perf_counter() - STARTED
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
