"""SAR-ADC controller benchmark: cycles per 128-column sweep and controller area.

    python -m tb.bench.sar_adc [--out-dir build/bench] [--no-area]

Cycles are measured on the RTL (Amaranth simulator, in lockstep with the golden model):
commands of a full sweep each, back to back, output always ready; a sweep's cycles are
counted from the cycle its command is accepted to the cycle the next one is (the ADC's
occupancy), against the contract ``columns * (settle_cycles + bits) + 1`` (one sample cycle).

Area: :func:`synth.flow.synthesize` (Yosys generic cell count and, when the IHP SG13G2
liberty is present, mapped standard-cell area), for the reconfigurable 6/7-bit controller
(HyFlexPIM) against fixed 6-bit and fixed 7-bit ones, and for the 1..8-bit ISAAC controller.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from golden.sar_adc import Command, sweep_cycles
from hdl.sar_adc import SarAdcController
from hdl.verilog import generate
from synth.liberty import DEFAULT_LIBERTY

ROOT = Path(__file__).resolve().parents[2]
LIBERTY = DEFAULT_LIBERTY

SWEEPS = [
    ("isaac_1to8", dict(max_bits=8, columns=128, settle_cycles=0), (6, 7, 8)),
    ("hyflexpim_6_7", dict(max_bits=7, columns=128, settle_cycles=0, resolutions=(6, 7)), (6, 7)),
    ("hyflexpim_6_7_settle1", dict(max_bits=7, columns=128, settle_cycles=1, resolutions=(6, 7)),
     (6, 7)),
]

AREA = [
    ("reconfigurable_6_7", dict(max_bits=7, resolutions=(6, 7))),
    ("fixed_6", dict(max_bits=6, resolutions=(6,))),
    ("fixed_7", dict(max_bits=7, resolutions=(7,))),
    ("isaac_1to8", dict(max_bits=8)),
]


def measure_sweeps(name, params, bits_list):
    from tb.env.sar_adc import crossbar_reads, lsb_map, run_sim
    columns = params["columns"]
    settle = params["settle_cycles"]
    commands = [Command(bits=b, all=True) for b in bits_list + (bits_list[0],)]
    reads = crossbar_reads(5, len(commands), columns)
    ls = run_sim(params, commands, reads, idle=0.0, backpressure=0.0,
                 lsb=lsb_map(384, params["max_bits"]))
    accepted = [c for c, _ in ls.accepted]
    rows = []
    for k, b in enumerate(bits_list):
        measured = accepted[k + 1] - accepted[k]
        contract = sweep_cycles(columns, b, settle_cycles=settle)
        rows.append({"config": name, "bits": b, "columns": columns, "settle_cycles": settle,
                     "cycles": measured, "contract": contract,
                     "contract_formula": "columns * (settle_cycles + bits) + 1",
                     "meets_contract": measured == contract,
                     "cycles_per_conversion": (measured - 1) / columns})
    return rows


def _synth(params):
    """Area of one controller through the project's synthesis flow (:mod:`synth.flow`)."""
    from synth.flow import synthesize
    verilog = generate(SarAdcController(**params), "sar_adc_controller")
    report = synthesize(verilog, "sar_adc_controller",
                        liberty=LIBERTY if LIBERTY.exists() else None)
    return {"cells": report["cells"]["total"], "transistors": report["transistors"],
            "area_um2": report["area_um2"], "seq_area_um2": report["seq_area_um2"],
            "delay_ns": report["depth"]["delay_ns"]}


def measure_area():
    rows = []
    for name, params in AREA:
        row = {"variant": name, **{k: list(v) if isinstance(v, tuple) else v
                                   for k, v in params.items()}}
        row.update(_synth(params))
        rows.append(row)
    by = {r["variant"]: r for r in rows}
    key = "area_um2" if by["fixed_7"]["area_um2"] else "cells"
    summary = {
        "metric": key,
        "reconfigurable_vs_fixed_7_percent": round(
            100 * (by["reconfigurable_6_7"][key] / by["fixed_7"][key] - 1), 1),
        "reconfigurable_vs_fixed_6_percent": round(
            100 * (by["reconfigurable_6_7"][key] / by["fixed_6"][key] - 1), 1),
        "note": "digital controller only (SAR register, sequencer, mode switch); the "
                "capacitor DAC and comparator, which dominate the ADC, are analog",
    }
    return rows, summary


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench.sar_adc")
    parser.add_argument("--out-dir", default="build/bench", type=Path)
    parser.add_argument("--no-area", action="store_true", help="skip the Yosys runs")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sweeps = [row for name, params, bits in SWEEPS for row in measure_sweeps(name, params, bits)]
    result = {"block": "sar_adc_controller", "sweeps": sweeps}
    for row in sweeps:
        print(f"sar_adc: {row['config']} {row['bits']}-bit sweep of {row['columns']} columns: "
              f"{row['cycles']} cycles (contract {row['contract']})", file=sys.stderr)
    if not args.no_area:
        try:
            result["area"], result["area_summary"] = measure_area()
        except Exception as e:      # the synthesis flow is optional for the cycle figures
            result["area_error"] = repr(e)
            print(f"sar_adc: area skipped: {e!r}", file=sys.stderr)
        for row in result.get("area", []):
            print(f"sar_adc: {row['variant']}: {row['cells']} cells"
                  + (f", {row['area_um2']} um2" if row["area_um2"] else ""),
                  file=sys.stderr)
        if "area_summary" in result:
            print(f"sar_adc: {result['area_summary']}", file=sys.stderr)
    result["seconds"] = round(time.perf_counter() - start, 1)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "sar_adc.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"sar_adc: {out}", file=sys.stderr)
    return 0 if all(r["meets_contract"] for r in sweeps) else 1


if __name__ == "__main__":
    sys.exit(main())
