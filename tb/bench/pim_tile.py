"""PIM tile benchmark: cycles per MVM, ADC utilization, simulation speed, error against float.

    python -m tb.bench.pim_tile [--out-dir build/bench] [--no-rtl] [--batch 3]

Writes ``<out-dir>/pim_tile.json``:

- ``rtl``: the Verilated 48-crossbar tile of ``make demo`` (tb.demo.DEMO_TILE) running a
  256 x 256 layer with the golden crossbars in the loop, for the ideal MLC mapping (8-bit
  ADCs), the hybrid 10% SLC mapping (SLC at 7 bits, MLC at 8) and an MLC mapping at 6 bits
  (where one shift-and-add unit per group of eight crossbars, one code per cycle, is the
  bottleneck): cycles per MVM in steady state (between the last outputs of consecutive
  vectors) against the analytic bound ``input_bits * (1 + cols / adcs_per_xbar * adc_bits)``
  and the cycle model, ADC utilization (trial cycles over enabled-ADC cycles), simulated
  cycles per second, and whether every output word matched the golden model.
- ``accuracy``: relative error ``||y - x @ w|| / ||x @ w||`` of the golden tile model (which the
  RTL matches bit for bit) on the same layer, batch 64, for ideal crossbars, noisy MLC
  (programming noise 0.05 level steps) and HyFlexPIM's hybrid mapping at SLC rates 0, 5, 10,
  20, 50 and 100% (SLC ideal, MLC noisy): the project's version of HyFlexPIM's
  accuracy-versus-SLC-rate trend.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse                                            # noqa: E402
import json                                                # noqa: E402
import sys                                                 # noqa: E402
import time                                                # noqa: E402
from pathlib import Path                                   # noqa: E402

import numpy as np                                         # noqa: E402

from golden.pim_tile import TileConfig, analytic_bound, map_matrix  # noqa: E402
from tb.demo import DEMO_TILE, MLC_NOISE, demo_inputs, demo_weights, run_rtl  # noqa: E402

SLC_RATES = (0.0, 0.05, 0.10, 0.20, 0.50, 1.00)


def accuracy(tile, w, x):
    ref = x @ w

    def err(m):
        y, _ = m.golden(x)
        return float(np.linalg.norm(m.to_float(y) - ref) / np.linalg.norm(ref))

    rows = [{"setting": "ideal_mlc", "slc_rate": None, "error_vs_float": err(map_matrix(w, tile))},
            {"setting": "noisy_mlc", "slc_rate": None,
             "error_vs_float": err(map_matrix(w, tile, noise=MLC_NOISE))}]
    for rate in SLC_RATES:
        m = map_matrix(w, tile, slc_rate=rate, noise={"mlc": MLC_NOISE})
        rows.append({"setting": "hybrid", "slc_rate": rate, "error_vs_float": err(m),
                     "crossbars": len(m.xbars),
                     "slc_crossbars": sum(1 for xb in m.xbars if xb.cell_bits == 1)})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench.pim_tile")
    parser.add_argument("--out-dir", default="build/bench")
    parser.add_argument("--no-rtl", action="store_true", help="skip the Verilator runs")
    parser.add_argument("--batch", type=int, default=3, help="vectors per RTL run")
    args = parser.parse_args(argv)
    tile = TileConfig(**DEMO_TILE)
    w = demo_weights(256, 0)
    out = {"tile": {k: (list(v) if isinstance(v, tuple) else v) for k, v in DEMO_TILE.items()},
           "layer": [256, 256], "noise": {"mlc_prog_sigma": MLC_NOISE.prog_sigma, "slc": "ideal"},
           "analytic_bound_8bit": analytic_bound(tile, 8)}
    start = time.perf_counter()
    out["accuracy"] = accuracy(tile, w, demo_inputs(64, 256, 1))
    out["accuracy_seconds"] = time.perf_counter() - start
    if not args.no_rtl:
        x = demo_inputs(args.batch, 256, 2)
        jobs = [("ideal_mlc_8bit", map_matrix(w, tile, cell_bits=2), x),
                ("hybrid_slc10", map_matrix(w, tile, slc_rate=0.1, noise={"mlc": MLC_NOISE}), x),
                ("mlc_6bit", map_matrix(w, tile, cell_bits=2, adc_bits=6), x)]
        start = time.perf_counter()
        out["rtl"] = run_rtl(DEMO_TILE, jobs)
        out["rtl_seconds"] = time.perf_counter() - start
    path = Path(args.out_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "pim_tile.json").write_text(json.dumps(out, indent=2) + "\n")
    for r in out["accuracy"]:
        print(f"{r['setting']:<10} slc_rate={r['slc_rate']!s:<5} error={r['error_vs_float']:.4f}",
              file=sys.stderr)
    for r in out.get("rtl", []):
        print(f"{r['name']:<16} exact {r['agree']}/{r['words']} cycles/MVM {r['cycles_per_mvm']} "
              f"(bound {r['analytic_bound']}, model {r['model_cycles_per_mvm']}) "
              f"ADC util {r['adc_utilization_steady']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
