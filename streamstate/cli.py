"""The ``streamstate`` console script (``streamstate = "streamstate.cli:main"``).

The commands live in :mod:`streamstate._cli`, imported only when the script runs, so
importing this module stays cheap. ``streamstate --version`` needs nothing beyond a base
install; the commands need the ``cli`` extra, and without it the script says so in one
line instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

CLI_MODULES = frozenset({"typer", "rich", "click", "shellingham"})
"""Top-level modules of the ``cli`` extra's packages (typer and what it pulls in)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args = list(argv) if argv is not None else sys.argv[1:]
    if args and args[0] in ("--version", "-V"):
        from streamstate import __version__

        print(f"streamstate {__version__}")
        return 0
    try:
        from streamstate._cli import run
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in CLI_MODULES:
            raise
        sys.stderr.write(
            f"streamstate: error: the command line needs the 'cli' extra (no module named "
            f"{missing!r}): pip install 'streamstate[cli]'\n"
        )
        return 2
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
