"""``python -m synth``: area reports of every block (placeholder flow, extended by the
synthesis issue).

    python -m synth all --verilog-dir build/verilog --out-dir build/synth [--liberty LIB]
    python -m synth summary --verilog-dir build/verilog --out-dir build/synth
"""

import argparse
import json
import sys
import time
from pathlib import Path

from .yosys import run_yosys


def synth_block(verilog, top, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    stat = out_dir / f"{top}.stat.json"
    run_yosys([f"read_verilog -sv {verilog}", f"hierarchy -top {top}",
               f"synth -top {top}", f"tee -q -o {stat} stat -json"], log=out_dir / f"{top}.yosys.log")
    report = json.loads(stat.read_text())
    design = report["design"]
    return {"block": top, "cells": design.get("num_cells", 0)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m synth")
    parser.add_argument("command", choices=["all", "summary"])
    parser.add_argument("--verilog-dir", default="build/verilog", type=Path)
    parser.add_argument("--out-dir", default="build/synth", type=Path)
    parser.add_argument("--liberty", default=None)
    args = parser.parse_args(argv)
    if args.command == "all":
        rows = []
        for v in sorted(args.verilog_dir.glob("*.v")):
            start = time.perf_counter()
            from hdl.registry import blocks
            top = blocks()[v.stem].module_name
            row = synth_block(v, top, args.out_dir)
            row["seconds"] = round(time.perf_counter() - start, 1)
            rows.append(row)
            print(f"synth: {v.stem}: {row['cells']} cells ({row['seconds']} s)", file=sys.stderr)
        (args.out_dir / "area.json").write_text(json.dumps(rows, indent=2))
    else:
        area = args.out_dir / "area.json"
        print(f"Verilog:      {args.verilog_dir}/<block>.v")
        print(f"Area reports: {area}")
        if area.exists():
            for row in json.loads(area.read_text()):
                print(f"  {row['block']:<24} {row['cells']:>10} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
