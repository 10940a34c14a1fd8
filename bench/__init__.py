"""Benchmarks of streamstate against its peers.

``python -m bench <name> [options]`` runs one benchmark; ``python -m bench all`` runs every
one. A benchmark is a module of this package listed in ``bench.__main__.BENCHES`` that
defines ``main(argv: list[str]) -> int`` (or a ``main()`` that parses ``sys.argv``).
Shared helpers (the embedded server, statistics, server counters, the machine
description, result files) live in :mod:`bench.common`; results go to
``bench/results/<name>.md`` and ``<name>.json``.
"""
