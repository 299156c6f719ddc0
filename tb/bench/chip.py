"""Benchmark of the chip: ``python -m tb.bench.chip`` -> ``build/bench/chip.json``.

Runs a program through the Verilated regression chip (:data:`golden.chip.REGRESSION_CHIP`,
:func:`tb.env.chip.build_chip`: the analog crossbar macros of every tile answered by the
golden crossbars, :class:`tb.env.pim_core.MacroServer`) from the host port
(:class:`tb.env.chip.ChipBench`), and writes:

- ``rtl_cycles``: cycles of the program on the RTL, from its first host vector to its last
  result at the host;
- ``model_cycles``: the same program's cycles from :func:`golden.chip.time_model` (None
  until the layer program is in: see :func:`program`);
- ``bit_exact``: every result equal to the golden model's;
- ``sim_cycles_per_cpu_s``: simulated cycles per CPU-second of the simulator process
  (``time.process_time`` inside the cocotb test);
- ``build_seconds``, ``hier_blocks``, ``program``.

The program today is a smoke test (:func:`program`): the host writes a matrix into a
systolic core and a ReRAM core and has each send it back; the encoder layer (forward and
LoRA gradient GEMMs, bit-exact against :class:`golden.transformer.EncoderLayer`, cycles
against :func:`golden.chip.time_model`) replaces it.
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

from golden.chip import REGRESSION_CHIP                    # noqa: E402

HOST_WINDOW = 0x8000


async def program(bench):
    """The benchmark's program on a started :class:`tb.env.chip.ChipBench`; returns
    ``(bit_exact, model_cycles)``.

    Smoke program (to be replaced by the regression layer): an ``R x C`` int16 matrix into
    systolic core 1 and ReRAM core ``X*Y`` (over the NoC), each sent back to the host window
    by the core's own SEND (fenced on the writes)."""
    from golden import pim_core as gpc
    from golden import systolic_core as gsc
    cfg = bench.config
    X, Y, _ = cfg.dims
    rng = np.random.default_rng(0)
    R, C = 8, 2 * bench.L
    exact = True
    for node in (1 % (X * Y), X * Y):
        a = rng.integers(-(1 << 15), 1 << 15, (R, C))
        words = bench.write_matrix(node, 0, a)
        core = bench.core(node)
        if node < X * Y:
            cmd = gsc.encode_command(core.config, "SEND", dest=0, dest_addr=HOST_WINDOW,
                                     src=0, count=words)
        else:
            cmd = gpc.encode_command(core.config, gpc.Op.SEND, in_addr=0, tokens=words,
                                     dest=0, dest_addr=HOST_WINDOW)
        bench.command(node, cmd)
        got = await bench.read_matrix(R, C)
        exact = exact and np.array_equal(np.array(got), a)
    return exact, None


@cocotb.test()
async def chip_bench(dut):
    """Runs :func:`program` and writes the figures to ``CHIP_BENCH_OUT``."""
    from tb.env.chip import ChipBench
    bench = ChipBench(dut, REGRESSION_CHIP)
    await bench.start()
    bench.start_macros()
    c0, p0, w0 = bench.sim_cycles(), time.process_time(), time.perf_counter()
    exact, model = await program(bench)
    cycles = bench.sim_cycles() - c0
    cpu, wall = time.process_time() - p0, time.perf_counter() - w0
    assert bench.errors() == 0, f"error bits {bench.errors():#x}"
    with open(os.environ["CHIP_BENCH_OUT"], "w") as f:
        json.dump({"rtl_cycles": cycles, "model_cycles": model, "bit_exact": bool(exact),
                   "cpu_seconds": cpu, "wall_seconds": wall,
                   "sim_cycles_per_cpu_s": cycles / cpu if cpu else None}, f)


def run(out_dir="build/bench"):
    """Build (cached) and run the benchmark; returns the figures written to
    ``<out_dir>/chip.json``."""
    import tempfile

    from tb import runner
    from tb.env.chip import TOP, build_chip
    t0 = time.perf_counter()
    build_dir, verilog, hier = build_chip(REGRESSION_CHIP)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "chip.json"
        runner.run(verilog, TOP, "tb.bench.chip", name="chip_regression", testcase="chip_bench",
                   top_only=True, hier_blocks=hier, extra_env={"CHIP_BENCH_OUT": out})
        result = json.loads(out.read_text())
    result.update(program="smoke: matrix to a systolic and a ReRAM core and back (the layer "
                          "program replaces it)",
                  config="REGRESSION_CHIP", hier_blocks=list(hier),
                  build_seconds=(build_dir / "built.ok").read_text().split()[0],
                  build_and_generate_wall_s=round(build_s, 1))
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    (path / "chip.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench.chip",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", default="build/bench")
    args = parser.parse_args(argv)
    result = run(args.out_dir)
    print(json.dumps(result, indent=2))
    return 0 if result["bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
