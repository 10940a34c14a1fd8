"""The single entry point: ``python -m bench {checkpoint,store,peers,footprint,all} [options]``.

Options after the subcommand go to the benchmark (``--quick``, a short smoke run, is the
convention; ``all`` passes the options on to each).
"""

from __future__ import annotations

import importlib
import inspect
import sys

# subcommand -> module defining main(argv) -> int
BENCHES = {
    "checkpoint": "bench.checkpoint_bench",
    "store": "bench.store_bench",
    "peers": "bench.peers_bench",
    "footprint": "bench.footprint_bench",
    "fanout": "bench.fanout_bench",
    "chain": "bench.chain_bench",
    "replication": "bench.replication_bench",
    "threads": "bench.threads_bench",
    "anatomy": "bench.anatomy_bench",
}

USAGE = f"usage: python -m bench {{{','.join([*BENCHES, 'all'])}}} [--quick] [options]"


def _run(name: str, argv: list[str]) -> int:
    try:
        module = importlib.import_module(BENCHES[name])
    except ModuleNotFoundError as exc:
        if exc.name != BENCHES[name]:
            raise
        print(f"bench {name}: {BENCHES[name]} does not exist yet", file=sys.stderr)
        return 2
    main = module.main
    saved = sys.argv
    try:
        if inspect.signature(main).parameters:
            return int(main(argv) or 0)
        sys.argv = [f"python -m bench {name}", *argv]  # a main() that parses sys.argv
        return int(main() or 0)
    except SystemExit as exc:  # argparse errors and --help: keep going under "all"
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        for name, module in BENCHES.items():
            print(f"  {name:<11} {module}")
        print("  all         every benchmark above, in order (options are passed to each)")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        status = 0
        for bench in BENCHES:
            print(f"\n=== bench {bench} ===", flush=True)
            status = max(status, _run(bench, list(rest)))
        return status
    if name not in BENCHES:
        print(USAGE, file=sys.stderr)
        return 2
    return _run(name, rest)


if __name__ == "__main__":
    sys.exit(main())
