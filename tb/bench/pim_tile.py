"""PIM tile benchmark: cycles per MVM, ADC utilization, simulation speed, error against float.

    python -m tb.bench.pim_tile [--out-dir build/bench] [--no-rtl] [--batch 3] [--simspeed]

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
- ``simspeed`` (with ``--simspeed``; ``--simspeed-only`` skips the rest): the speed of the
  tile's cocotb testbench (:class:`tb.env.pim_tile.TileBench`, golden crossbars in the loop)
  on an 8-crossbar tile of 128 x 128 crossbars (:data:`SIMSPEED_TILE`), a 256 x 128 MLC layer,
  ideal and noisy crossbars: simulated cycles per CPU-second of the simulator process
  (``time.process_time``) and per wall-clock second. :func:`simspeed` is the entry point for
  other benchmarks.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse                                            # noqa: E402
import json                                                # noqa: E402
import sys                                                 # noqa: E402
import time                                                # noqa: E402
from pathlib import Path                                   # noqa: E402

import numpy as np                                         # noqa: E402

import cocotb                                              # noqa: E402

from golden.noise import NoiseConfig                       # noqa: E402
from golden.pim_tile import TileConfig, analytic_bound, map_matrix  # noqa: E402
from tb.demo import DEMO_TILE, MLC_NOISE, demo_inputs, demo_weights, run_rtl  # noqa: E402

SLC_RATES = (0.0, 0.05, 0.10, 0.20, 0.50, 1.00)

#: The simulation-speed tile: 8 crossbars of 128 x 128, one 8-bit ADC each, one group.
SIMSPEED_TILE = dict(crossbars=8, rows=128, cols=128, input_bits=8, weight_bits=8, adc_bits=8,
                     resolutions=(6, 7, 8), adcs_per_xbar=1, group=8, row_blocks=2, outputs=256,
                     scale_bits=16, scale_frac_bits=16, out_bits=24)
#: Noise of the noisy simulation-speed run (every per-sample draw in use).
SIMSPEED_NOISE = NoiseConfig(prog_sigma=0.05, read_sigma=0.05, comp_noise_sigma=0.3)


@cocotb.test()
async def tile_simspeed(dut):
    """A 256 x 128 MLC layer on the tile of ``PIM_SIMSPEED`` (JSON: tile parameters, batch,
    noise flag): one vector to warm up, then ``batch`` vectors measured (from sending them to
    the scoreboard's check); writes their cycles, CPU and wall seconds to ``PIM_SIMSPEED_OUT``."""
    from tb.env.pim_tile import TileBench
    job = json.loads(os.environ["PIM_SIMSPEED"])
    tile = TileConfig(**dict(job["tile"], resolutions=tuple(job["tile"]["resolutions"])))
    tb = TileBench(dut, tile, seed=0)
    await tb.reset()
    rng = np.random.default_rng(0)
    m = map_matrix(rng.normal(0, 0.1, (tile.rows * tile.row_blocks, tile.n_out(2) * tile.crossbars
                                       // tile.row_blocks)),
                   tile, cell_bits=2, noise=SIMSPEED_NOISE if job["noisy"] else None, seed=1)
    await tb.configure(m)
    x = rng.integers(-128, 128, (job["batch"] + 1, m.n_inputs))
    tb.send(x[:1])                  # one vector first: lazy imports and caches warm up
    await tb.drain()
    x = x[1:]
    c0, p0, w0 = tb.sim_cycles(), time.process_time(), time.perf_counter()
    tb.send(x)
    await tb.drain()
    cycles, cpu, wall = tb.sim_cycles() - c0, time.process_time() - p0, time.perf_counter() - w0
    with open(os.environ["PIM_SIMSPEED_OUT"], "w") as f:
        json.dump({"cycles": cycles, "cpu_seconds": cpu, "wall_seconds": wall,
                   "crossbars_used": len(m.xbars)}, f)


def simspeed(tile_params=None, *, batch=3, noisy=(False, True)):
    """Cycles per CPU-second of the tile's cocotb testbench (golden crossbars in the loop).

    Returns one row per noise setting: ``block``, ``config`` (the tile's parameters),
    ``noise``, ``cycles``, ``testbench_cycles_per_cpu_s`` (``time.process_time`` of the
    simulator process) and ``testbench_cycles_per_wall_s``.
    """
    import tempfile

    from hdl.pim_tile import PimTile
    from hdl.verilog import generate
    from tb import runner
    from tb.env.pim_tile import TESTBENCH_TOP, tile_testbench_verilog
    params = dict(SIMSPEED_TILE if tile_params is None else tile_params)
    tile = TileConfig(**params)
    verilog = tile_testbench_verilog(generate(PimTile(**params), "pim_tile"), tile)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}
    rows = []
    for flag in noisy:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "speed.json"
            runner.run(verilog, TESTBENCH_TOP, "tb.bench.pim_tile", name="pim_tile_simspeed",
                       testcase="tile_simspeed", top_only=True,
                       extra_env={"PIM_SIMSPEED": json.dumps({"tile": config, "batch": batch,
                                                              "noisy": flag}),
                                  "PIM_SIMSPEED_OUT": out})
            r = json.loads(out.read_text())
        rows.append({"block": "pim_tile", "config": config,
                     "noise": "prog, read, comparator" if flag else "ideal",
                     "cycles": r["cycles"], "cpu_seconds": r["cpu_seconds"],
                     "wall_seconds": r["wall_seconds"],
                     "testbench_cycles_per_cpu_s": r["cycles"] / r["cpu_seconds"],
                     "testbench_cycles_per_wall_s": r["cycles"] / r["wall_seconds"]})
    return rows


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
    parser.add_argument("--simspeed", action="store_true",
                        help="also measure the testbench speed on the 8-crossbar tile")
    parser.add_argument("--simspeed-only", action="store_true",
                        help="only the testbench speed (writes pim_tile_simspeed.json)")
    args = parser.parse_args(argv)
    path = Path(args.out_dir)
    path.mkdir(parents=True, exist_ok=True)
    if args.simspeed_only:
        rows = simspeed(batch=args.batch)
        (path / "pim_tile_simspeed.json").write_text(json.dumps(rows, indent=2) + "\n")
        for r in rows:
            print(f"pim_tile testbench ({r['noise']}): {r['testbench_cycles_per_cpu_s']:.0f} cycles "
                  f"per CPU-second ({r['cycles']} cycles)", file=sys.stderr)
        return 0
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
    if args.simspeed:
        out["simspeed"] = simspeed(batch=args.batch)
    (path / "pim_tile.json").write_text(json.dumps(out, indent=2) + "\n")
    for r in out["accuracy"]:
        print(f"{r['setting']:<10} slc_rate={r['slc_rate']!s:<5} error={r['error_vs_float']:.4f}",
              file=sys.stderr)
    for r in out.get("rtl", []):
        print(f"{r['name']:<16} exact {r['agree']}/{r['words']} cycles/MVM {r['cycles_per_mvm']} "
              f"(bound {r['analytic_bound']}, model {r['model_cycles_per_mvm']}) "
              f"ADC util {r['adc_utilization_steady']} "
              f"{r['sim_cycles_per_cpu_second'] or 0:.0f} cycles/CPU-s", file=sys.stderr)
    for r in out.get("simspeed", []):
        print(f"pim_tile testbench ({r['noise']}): {r['testbench_cycles_per_cpu_s']:.0f} cycles "
              f"per CPU-second", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
