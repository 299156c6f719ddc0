"""Benchmark of the systolic array on RTL (Verilator): cycles, utilization, simulation speed.

    python -m tb.bench.systolic [--rows R --cols C] [--shapes MxNxK,...] [--out-dir build/bench]

With no ``--shapes`` it runs the issue's default set at 128x32 (1024x32x256, 1024x32x512 and
the BERT-Large kernels with n=512, d_head=64: Q.K^T 512x512x64, S.V 512x64x512, LoRA A
512x32x1024, LoRA B 512x1024x32), and the BERT kernels again on 64x64 and 32x128 (the same
4096 PEs) unless ``--rows``/``--cols`` are given. Writes ``<out-dir>/systolic.json``: one
object per (array, shape) with ``rows``, ``cols``, ``M``, ``N``, ``K``, ``cycles`` (first
input to last result, both included, measured on the RTL with no idle input and an
always-ready consumer), ``ideal_cycles``, ``utilization`` (``ideal_cycles / cycles``),
``sim_cycles_per_cpu_s`` (cocotb + Verilator, cycles per CPU-second of the simulator
process) and ``sim_cycles_per_s`` (per wall-clock second), ``build`` (flat or hierarchical:
:func:`tb.runner.choose_hier_blocks`), plus ``model_cycles`` (golden cycle model: must
equal ``cycles``), ``scalesim_v1_cycles``, ``scalesim_v2_cycles``, ``folds``, ``drain``,
``verilog_gen_s`` and ``verilator_build_s`` of that array. Every result is also checked
bit-exact against the golden tiled GEMM.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cocotb
from cocotb.simtime import get_sim_time

from golden import systolic as golden

BERT = ["512x512x64", "512x64x512", "512x32x1024", "512x1024x32"]
DEFAULT = ["1024x32x256", "1024x32x512"] + BERT
COMPARE = [(64, 64), (32, 128)]


@cocotb.test()
async def bench_gemm(dut):
    """Run the GEMMs of SYSTOLIC_SHAPES back to back per shape; write cycles to SYSTOLIC_OUT."""
    from tb.env.systolic import TB
    tb = TB(dut, record=False)
    results = []
    for n, shape in enumerate(os.environ["SYSTOLIC_SHAPES"].split(",")):
        m_, n_, k_ = (int(x) for x in shape.split("x"))
        a, b, folds = tb.random_gemm(m_, n_, k_)
        await tb.start(idle=0.0, backpressure=0.0, seed=n)
        start, cpu_start, sim_start = time.perf_counter(), time.process_time(), get_sim_time("ns")
        received = tb.unpack_outputs(await tb.run(folds, timeout=10_000_000))
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        sim_cycles = (get_sim_time("ns") - sim_start) / 10
        length = tb.array.drain_length
        per_fold = [received[i:i + length] for i in range(0, len(received), length)]
        result = golden.assemble(folds, per_fold, m_, n_, rows=tb.rows, cols=tb.cols,
                                 drain=tb.array.drain)
        assert (result == a @ b).all(), f"{shape}: wrong result"
        cycles = tb.measured_cycles()
        model = golden.gemm_cycles(m_, n_, k_, tb.rows, tb.cols, tb.array.drain)
        assert cycles == model, f"{shape}: {cycles} cycles, the golden model says {model}"
        ideal = golden.ideal_cycles(m_, n_, k_, tb.rows, tb.cols)
        results.append({
            "rows": tb.rows, "cols": tb.cols, "M": m_, "N": n_, "K": k_,
            "cycles": cycles, "ideal_cycles": ideal, "utilization": round(ideal / cycles, 4),
            "sim_cycles_per_s": round(sim_cycles / wall, 1),
            "sim_cycles_per_cpu_s": round(sim_cycles / cpu, 1),
            "model_cycles": model,
            "scalesim_v1_cycles": golden.scalesim_v1_cycles(m_, n_, k_, tb.rows, tb.cols),
            "scalesim_v2_cycles": golden.scalesim_v2_cycles(m_, n_, k_, tb.rows, tb.cols),
            "folds": len(folds), "drain": tb.array.drain,
        })
    Path(os.environ["SYSTOLIC_OUT"]).write_text(json.dumps(results))


def _parse_shapes(text):
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise SystemExit(f"error: --shapes items must be MxNxK with positive integers, "
                             f"not {item!r}")
        shapes.append("x".join(parts))
    return shapes


def run_array(rows, cols, shapes, out_dir):
    """Generate, build (cached) and run one array size; returns the list of result objects."""
    from tb import runner
    from tb.env.systolic import build_spec, params_env

    start = time.perf_counter()
    spec = build_spec(rows, cols)
    gen_s = time.perf_counter() - start
    name = f"systolic_{rows}x{cols}"
    hier = spec["options"]["hier_blocks"]
    start = time.perf_counter()
    build_dir = runner.build(spec["verilog"], spec["toplevel"], name=name, **spec["options"])
    build_s = time.perf_counter() - start
    stamp = (build_dir / "built.ok").read_text().split()[0]   # the cold build's own time
    out = Path(out_dir).resolve() / f".{name}.json"
    runner.run(spec["verilog"], spec["toplevel"], "tb.bench.systolic", name=name,
               testcase="bench_gemm", **spec["options"],
               extra_env={**params_env(rows, cols), "SYSTOLIC_SHAPES": ",".join(shapes),
                          "SYSTOLIC_OUT": out, "SYSTOLIC_SEED": 1})
    results = json.loads(out.read_text())
    out.unlink()
    for r in results:
        r["verilog_gen_s"] = round(gen_s, 1)
        r["verilator_build_s"] = float(stamp)
        r["verilator_build_cached"] = build_s < 0.5 * float(stamp)
        r["build"] = f"hierarchical ({', '.join(hier)})" if hier else "flat"
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench.systolic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="PE rows (default 128)")
    parser.add_argument("--cols", type=int, default=None, help="PE columns (default 32)")
    parser.add_argument("--shapes", default=None, help="comma-separated MxNxK GEMMs")
    parser.add_argument("--out-dir", default="build/bench")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shapes = _parse_shapes(args.shapes) if args.shapes else DEFAULT
    rows = args.rows if args.rows is not None else 128
    cols = args.cols if args.cols is not None else 32
    runs = [(rows, cols, shapes)]
    if args.rows is None and args.cols is None and args.shapes is None:
        runs += [(r, c, BERT) for r, c in COMPARE]
    results = []
    for r, c, s in runs:
        print(f"systolic bench: {r}x{c}: {', '.join(s)}", file=sys.stderr, flush=True)
        results += run_array(r, c, s, out_dir)
    path = out_dir / "systolic.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    for r in results:
        print(f"{r['rows']:>4}x{r['cols']:<4} {r['M']}x{r['N']}x{r['K']:<5} cycles {r['cycles']:>6} "
              f"ideal {r['ideal_cycles']:>6} util {r['utilization']:.3f}  "
              f"v1 {r['scalesim_v1_cycles']:>6} v2 {r['scalesim_v2_cycles']:>6}  "
              f"{r['sim_cycles_per_cpu_s']:.0f} cyc/CPU-s ({r['sim_cycles_per_s']:.0f} cyc/s wall)",
              file=sys.stderr)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
