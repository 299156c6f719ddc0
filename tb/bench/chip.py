"""Benchmark of the chip: ``python -m tb.bench.chip`` -> ``build/bench/chip.json``.

Runs the regression encoder layer (:data:`golden.chip.REGRESSION_LAYER` with LoRA: forward and
the LoRA gradient GEMMs, :func:`golden.chip_program.layer_program`) through the Verilated
regression chip (:data:`golden.chip.REGRESSION_CHIP`, :func:`tb.env.chip.build_chip`; every
tile's analog crossbars answered by the golden crossbars) from the host port
(:func:`tb.env.chip_layer.run_program`), and writes:

- ``rtl_cycles``: the layer on the RTL, from the host's first vector to its last result;
- ``model_cycles``: :func:`golden.chip.time_model`'s layer latency for the same configuration
  (its transaction-level model), and ``model_cycles_rtl_choices`` with the RTL's choices
  (one nonlinear lane, GELU and the second LayerNorm on the systolic core);
- ``schedule_cycles``: :func:`golden.chip_schedule.schedule` of the same program (the
  cycle model of the chip running it), with its phase breakdown;
- ``bit_exact``: true only when ``y`` and every target's ``dB`` and ``dA`` equal
  :class:`golden.transformer.EncoderLayer` / :func:`golden.lora.lora_backward` (and the golden
  core models' run of the program);
- ``sim_cycles_per_cpu_s``: simulated cycles per CPU-second of the simulator process
  (``time.process_time`` inside the cocotb test), beside the wall-clock rate;
- ``build_seconds``, ``commands``, ``host_vectors``, ``noise``.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse                                            # noqa: E402
import json                                                # noqa: E402
import sys                                                 # noqa: E402
import time                                                # noqa: E402
from dataclasses import replace                            # noqa: E402
from pathlib import Path                                   # noqa: E402

import numpy as np                                         # noqa: E402

import cocotb                                              # noqa: E402

from golden.chip import REGRESSION_CHIP                    # noqa: E402


@cocotb.test()
async def chip_bench(dut):
    """The layer program on the chip; the figures to ``CHIP_BENCH_OUT``."""
    from golden import chip_program as cp
    from tb.env import chip_layer as cl
    noise = os.environ.get("CHIP_BENCH_NOISE", "ideal")
    layer, x, grads = cl.regression_case(cl.NOISE if noise == "noisy" else None, seed=0)
    program = cp.layer_program(layer, x, grads)
    p0, w0 = time.process_time(), time.perf_counter()
    got, info = await cl.run_program(dut, program)
    cpu, wall = time.process_time() - p0, time.perf_counter() - w0
    want = cp.expected_results(layer, x, grads)
    exact = all(np.array_equal(got[k], v) and np.array_equal(got[k], info["golden"][k])
                for k, v in want.items())
    with open(os.environ["CHIP_BENCH_OUT"], "w") as f:
        json.dump({"rtl_cycles": info["cycles"], "bit_exact": bool(exact and not info["errors"]),
                   "errors": info["errors"], "commands": info["commands"],
                   "host_vectors": info["host_vectors"], "cpu_seconds": round(cpu, 2),
                   "wall_seconds": round(wall, 2),
                   "sim_cycles_per_cpu_s": round(info["cycles"] / cpu) if cpu else None,
                   "sim_cycles_per_wall_s": round(info["cycles"] / wall) if wall else None}, f)


def models():
    """The layer's cycles from the two models: ``time_model`` (as configured and with the
    RTL's choices) and the schedule of the compiled program."""
    from golden import chip_program as cp
    from golden.chip import map_model, time_model
    from golden.chip_schedule import ScheduleTiming, schedule
    from tb.env import chip_layer as cl
    layer, x, grads = cl.regression_case(seed=0)
    cfg = layer.cfg
    chip = REGRESSION_CHIP

    def latency(c, lc):
        t = time_model(map_model(lc, c))
        return round(t.layer_latency_s * c.f_systolic)

    rtl_like = replace(cfg, gelu_on="systolic", ln2_on="systolic")
    sched = schedule(cp.layer_program(layer, x, grads), timing=ScheduleTiming(host_poll=64))
    return {"model_cycles": latency(chip, cfg),
            "model_cycles_rtl_choices": latency(replace(chip, nl_lanes=1), rtl_like),
            "schedule_cycles": sched.total_cycles,
            "schedule_phases": sched.breakdown()}


def run(out_dir="build/bench", *, noise="ideal"):
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
                   top_only=True, hier_blocks=hier,
                   extra_env={"CHIP_BENCH_OUT": out, "CHIP_BENCH_NOISE": noise})
        result = json.loads(out.read_text())
    result.update(models())
    result["rtl_over_model"] = round(result["rtl_cycles"] / result["model_cycles"], 3)
    result["rtl_over_schedule"] = round(result["rtl_cycles"] / result["schedule_cycles"], 5)
    result.update(program="golden.chip_program.layer_program(REGRESSION_LAYER with LoRA, "
                          "forward + LoRA gradient GEMMs)", noise=noise,
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
    parser.add_argument("--noise", choices=("ideal", "noisy"), default="ideal",
                        help="the crossbars' noise (noisy: programming, read and comparator)")
    args = parser.parse_args(argv)
    result = run(args.out_dir, noise=args.noise)
    print(json.dumps(result, indent=2))
    return 0 if result["bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
