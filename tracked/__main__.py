"""``python -m tracked``: the same command line as the ``tracked`` console script."""

import sys

from tracked.cli import main

if __name__ == "__main__":
    sys.exit(main())
