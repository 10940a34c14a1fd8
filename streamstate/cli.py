"""The ``streamstate`` command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from streamstate._cli import app

    return app(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
