"""``python -m hdl``: list the blocks, or write one block's Verilog.

    python -m hdl list
    python -m hdl <block> [--param value ...] [-o out.v]
    python -m hdl all --out-dir build/verilog

Invalid parameters exit with status 2 and one line naming the parameter and its allowed range.
"""

import argparse
import sys
import time
from pathlib import Path

from .cli import add_parameter_options, parse_parameters
from .registry import blocks
from .verilog import generate


def _fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _list(all_blocks):
    for b in all_blocks.values():
        print(f"{b.name}: {b.description}")
        for p in b.params:
            default = p.default.name.lower() if hasattr(p.default, "name") else p.default
            extra = f"  {p.help}" if p.help else ""
            print(f"    --{p.name.replace('_', '-')} {default!s:<10}{extra}")


def _write(block, kwargs, out):
    try:
        component = block.build(**kwargs)
    except (TypeError, ValueError) as e:
        _fail(f"{block.name}: {e}")
    start = time.perf_counter()
    text = generate(component, block.module_name)
    if out is None or out == "-":
        sys.stdout.write(text)
    else:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"{block.name}: {out} ({len(text.splitlines())} lines, "
              f"{time.perf_counter() - start:.1f} s)", file=sys.stderr)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    all_blocks = blocks()
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nblocks: " + ", ".join(all_blocks))
        return 0
    command, rest = argv[0], argv[1:]
    if command == "list":
        _list(all_blocks)
        return 0
    if command == "all":
        parser = argparse.ArgumentParser(prog="python -m hdl all")
        parser.add_argument("--out-dir", default="build/verilog")
        args = parser.parse_args(rest)
        for b in all_blocks.values():
            _write(b, {}, Path(args.out_dir) / f"{b.name}.v")
        return 0
    if command not in all_blocks:
        _fail(f"unknown block {command!r}; blocks are: {', '.join(all_blocks)}")
    block = all_blocks[command]
    parser = argparse.ArgumentParser(prog=f"python -m hdl {block.name}")
    parser.add_argument("-o", "--output", default=None, help="Verilog file (default: stdout)")
    add_parameter_options(parser, block)
    parser.error = lambda message: _fail(f"{block.name}: {message}")
    args = parser.parse_args(rest)
    try:
        kwargs = parse_parameters(block, args)
    except ValueError as e:
        _fail(f"{block.name}: {e}")
    _write(block, kwargs, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
