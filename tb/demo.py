"""``make demo``: a 256 x 256 layer on the PIM tile, through the RTL, with the golden crossbars
answering the ADCs.

    python -m tb.demo [--weights W.npy] [--batch 4] [--seed 0]

Maps the layer (random weights with a decaying singular spectrum and a fixed seed, or a float
``.npy`` matrix of at most 256 x 256 given with ``--weights``) onto a 48-crossbar slice of the
Atleus tile (six groups of eight 128 x 128 crossbars, one 8-bit ADC each) three times: ideal
MLC crossbars, noisy MLC crossbars (programming noise ``prog_sigma = 0.05`` level steps), and
HyFlexPIM's hybrid mapping with 10% of the singular components on ideal SLC crossbars (7-bit
ADC) and the rest on the noisy MLC ones. Each setting reconfigures the tile and runs a batch of
int8 activations through the Verilated RTL (tb.env.pim_tile: at each sample the golden crossbars
compute every column's SAR code from the RTL's row drive, and a code store in the simulation
answers the trials); the demo prints the
bit-exact agreement of every output word with the golden model, the error of the outputs
against the float product ``x @ w``, cycles per MVM against the analytic bound and ADC
utilization.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")      # SVD on a shared 2-core machine

import argparse                                            # noqa: E402
import json                                                # noqa: E402
import pickle                                              # noqa: E402
import sys                                                 # noqa: E402
import tempfile                                            # noqa: E402
import time                                                # noqa: E402
from pathlib import Path                                   # noqa: E402

import numpy as np                                         # noqa: E402

import cocotb                                              # noqa: E402

from golden.noise import NoiseConfig                       # noqa: E402
from golden.pim_tile import TileConfig, analytic_bound, map_matrix  # noqa: E402

__all__ = ["DEMO_TILE", "MLC_NOISE", "demo_weights", "demo_inputs", "settings", "run_rtl", "main"]

#: The demo's tile: 48 crossbars (a hybrid 256 x 256 layer at a 10% SLC rate needs 48).
DEMO_TILE = dict(crossbars=48, rows=128, cols=128, input_bits=8, weight_bits=8, adc_bits=8,
                 resolutions=(6, 7, 8), adcs_per_xbar=1, group=8, row_blocks=2, outputs=256,
                 scale_bits=16, scale_frac_bits=16, out_bits=24)

#: Noisy MLC: programming noise of 0.05 level steps per cell (SLC crossbars stay ideal).
MLC_NOISE = NoiseConfig(prog_sigma=0.05)


def demo_weights(n=256, seed=0):
    """A float ``n x n`` layer with a decaying singular spectrum (like a trained layer)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(n, n)))
    v, _ = np.linalg.qr(rng.normal(size=(n, n)))
    s = np.exp(-np.arange(n) / 20.0) + 0.02
    w = (u * s) @ v.T
    return w * (0.05 / w.std())


def demo_inputs(batch, k, seed=1):
    """int8 activations, roughly Gaussian (sigma 32)."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.normal(0, 32, (batch, k))), -128, 127).astype(np.int64)


def settings(w, tile, *, slc_rate=0.1, seed=0):
    """The demo's three mappings, by name."""
    return {
        "ideal": map_matrix(w, tile, cell_bits=2, seed=seed),
        "noisy_mlc": map_matrix(w, tile, cell_bits=2, noise=MLC_NOISE, seed=seed),
        f"hybrid_slc{int(round(slc_rate * 100))}": map_matrix(w, tile, slc_rate=slc_rate,
                                                             noise={"mlc": MLC_NOISE}, seed=seed),
    }


# -- cocotb side ------------------------------------------------------------------------------

@cocotb.test()
async def run_jobs(dut):
    """Run the pickled jobs of ``PIM_JOBS`` (a list of ``(name, mapping, x)``) one after the
    other, reconfiguring the tile between them; write the outputs and measurements to
    ``PIM_RESULTS``."""
    from tb.env.pim_tile import TileBench
    with open(os.environ["PIM_JOBS"], "rb") as f:
        tile, jobs = pickle.load(f)
    tb = TileBench(dut, tile, seed=0)
    await tb.reset()
    results = []
    for name, mapping, x in jobs:
        dut._log.info(f"{name}: {len(mapping.xbars)} crossbars, {x.shape[0]} vectors")
        await tb.configure(mapping)
        tb.analog.trials = 0
        start, cpu, cycle0 = time.perf_counter(), time.process_time(), tb.sim_cycles()
        tb.send(x)
        expected = list(tb.expected)
        cycles = await tb.drain(check=False)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
        sim_cycles = tb.sim_cycles() - cycle0
        got = tb.last_received
        words = len(expected)
        agree = sum(g == e for g, e in zip(got, expected)) if len(got) == words else 0
        n_out = mapping.n_outputs
        ends = [c for c, g in zip(cycles, got) if g["last"]]
        steady = int(np.median(np.diff(ends))) if len(ends) > 1 else None
        results.append({
            "name": name, "words": words, "received": len(got), "agree": agree,
            "values": [g["value"] for g in got], "saturated": [g["saturated"] for g in got],
            "cycles_per_mvm": steady, "sim_cycles": sim_cycles, "sim_seconds": wall,
            "sim_cpu_seconds": cpu,
            "trials": tb.analog.trials, "vectors": int(x.shape[0]), "n_outputs": n_out,
        })
    with open(os.environ["PIM_RESULTS"], "w") as f:
        json.dump(results, f)


# -- host side --------------------------------------------------------------------------------

def run_rtl(tile_params, jobs, *, name="pim_tile_demo"):
    """Run ``jobs`` (``(name, mapping, x)``) through the Verilated tile; returns the results.

    Adds to each result the golden outputs, the error against float and the ADC utilization.
    """
    from hdl.pim_tile import PimTile
    from hdl.verilog import generate
    from tb import runner
    from tb.env.pim_tile import TESTBENCH_TOP, tile_testbench_verilog
    tile = TileConfig(**tile_params)
    verilog = tile_testbench_verilog(generate(PimTile(**tile_params), "pim_tile"), tile)
    with tempfile.TemporaryDirectory() as tmp:
        jobs_path, res_path = Path(tmp) / "jobs.pkl", Path(tmp) / "results.json"
        with open(jobs_path, "wb") as f:
            pickle.dump((tile, jobs), f)
        runner.run(verilog, TESTBENCH_TOP, "tb.demo", name=name, testcase="run_jobs",
                   extra_env={"PIM_JOBS": jobs_path, "PIM_RESULTS": res_path}, top_only=True)
        results = json.loads(res_path.read_text())
    for r, (_, mapping, x) in zip(results, jobs):
        y, _ = mapping.golden(x)
        ref = mapping.float_reference(x)
        got = np.asarray(r["values"], dtype=np.int64).reshape(y.shape) if r["received"] == y.size else None
        r["error_vs_float"] = float(np.linalg.norm(mapping.to_float(y) - ref) / np.linalg.norm(ref))
        r["rtl_error_vs_float"] = (float(np.linalg.norm(mapping.to_float(got) - ref) / np.linalg.norm(ref))
                                   if got is not None else None)
        bits = mapping.crossbar_bits
        r["crossbars"] = len(bits)
        r["slc_crossbars"] = sum(1 for xb in mapping.xbars if xb.cell_bits == 1)
        r["analytic_bound"] = analytic_bound(tile, max(bits.values()))
        r["model_cycles_per_mvm"] = mapping.cycles_per_mvm()
        adcs = len(bits) * tile.adcs_per_xbar
        r["adc_utilization"] = (r["trials"] / (r["sim_cycles"] * adcs)) if r["sim_cycles"] else None
        r["adc_utilization_steady"] = ((r["trials"] / r["vectors"]) / (r["cycles_per_mvm"] * adcs)
                                       if r["cycles_per_mvm"] else None)
        r["sim_cycles_per_second"] = r["sim_cycles"] / r["sim_seconds"] if r["sim_seconds"] else None
        r["sim_cycles_per_cpu_second"] = (r["sim_cycles"] / r["sim_cpu_seconds"]
                                          if r["sim_cpu_seconds"] else None)
        del r["values"], r["saturated"]
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="float .npy weight matrix (K x N, at most 256 x 256)")
    parser.add_argument("--batch", type=int, default=4, help="activation vectors per setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tile = TileConfig(**DEMO_TILE)
    if args.weights:
        w = np.load(args.weights)
        if w.dtype.kind != "f":
            w = w.astype(np.float64)
    else:
        w = demo_weights(256, args.seed)
    try:
        maps = settings(w, tile, seed=args.seed)
    except (TypeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    x = demo_inputs(args.batch, w.shape[0], args.seed + 1)
    print(f"layer {w.shape[0]} x {w.shape[1]}, batch {args.batch}; tile: {tile.crossbars} crossbars "
          f"of {tile.rows} x {tile.cols}, {tile.adcs_per_xbar} ADC each, groups of {tile.group}")
    for name, m in maps.items():
        n_slc = sum(1 for xb in m.xbars if xb.cell_bits == 1)
        print(f"  {name:<12} {len(m.xbars):>3} crossbars ({n_slc} SLC), out_frac_bits {m.out_frac_bits}")
    print("building and running the RTL (Verilator, golden crossbars in the loop) ...", flush=True)
    start = time.perf_counter()
    results = run_rtl(DEMO_TILE, [(n, m, x) for n, m in maps.items()])
    print(f"done in {time.perf_counter() - start:.0f} s\n")
    hdr = (f"{'setting':<14}{'bit-exact':>14}{'err vs float':>14}{'cycles/MVM':>12}{'bound':>8}"
           f"{'ADC util':>10}{'sim cyc/CPU-s':>15}")
    print(hdr)
    print("-" * len(hdr))
    ok = True
    for r in results:
        exact = f"{r['agree']}/{r['words']}"
        ok &= r["agree"] == r["words"]
        print(f"{r['name']:<14}{exact:>14}{r['error_vs_float'] * 100:>13.2f}%{r['cycles_per_mvm'] or 0:>12}"
              f"{r['analytic_bound']:>8}{(r['adc_utilization_steady'] or 0) * 100:>9.1f}%"
              f"{r['sim_cycles_per_cpu_second'] or 0:>15.0f}")
    print("\nbit-exact agreement with the golden model:", "YES" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
