"""``python -m tb.bench``: run every benchmark module of this package in turn."""

import argparse
import importlib
import pkgutil
import sys
import time

from . import __path__ as bench_path


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench")
    parser.add_argument("--out-dir", default="build/bench")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    names = [i.name for i in pkgutil.iter_modules(bench_path) if not i.name.startswith("_")]
    failed = []
    for name in sorted(names):
        if args.names and name not in args.names:
            continue
        module = importlib.import_module(f"{__package__}.{name}")
        start = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            module.main(["--out-dir", args.out_dir])
        except Exception as e:      # keep going: one broken benchmark must not hide the rest
            print(f"bench: {name} FAILED: {e!r}", file=sys.stderr)
            failed.append(name)
        print(f"bench: {name} done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
