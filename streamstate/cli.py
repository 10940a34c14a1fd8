"""The ``streamstate`` console script (``streamstate = "streamstate.cli:main"``).

The commands live in :mod:`streamstate._cli`, imported only when the script runs, so
importing this module stays cheap.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    from streamstate._cli import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
