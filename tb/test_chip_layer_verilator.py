"""One encoder layer with LoRA, forward and the LoRA gradient GEMMs, through the Verilated chip.

The regression chip (:data:`golden.chip.REGRESSION_CHIP`: 2x2x2, tier 0 four 16x8 systolic
cores, tier 1 four ReRAM cores of 8 tiles of 16 32x32 crossbars) runs
:func:`golden.chip_program.layer_program` of :data:`golden.chip.REGRESSION_LAYER` (d_model 64,
2 heads, d_ff 256, 16 tokens, LoRA rank 4 on W^Q and W^V) with the golden crossbars in the
loop; the host receives ``y`` and each target's exact ``dB`` and ``dA``. Every one must equal
:class:`golden.transformer.EncoderLayer` / :func:`golden.lora.lora_backward` bit for bit (and
the golden core models' run of the same program), with the crossbars ideal and noisy, and no
core, interface or shell may flag an error.
"""

import json
import os

import cocotb
import numpy as np
import pytest

from golden import chip_program as cp
from tb import runner
from tb.env import chip_layer as cl


@cocotb.test()
async def layer(dut):
    case = cl.load_case()
    noise = cl.NOISE if case["noise"] == "noisy" else None
    layer_, x, grads = cl.regression_case(noise, seed=case["seed"])
    program = cp.layer_program(layer_, x, grads)
    got, info = await cl.run_program(dut, program, idle=case.get("idle", 0.0),
                                     backpressure=case.get("backpressure", 0.0),
                                     seed=case["seed"], log=dut._log.info)
    want = cp.expected_results(layer_, x, grads)
    for name, value in want.items():
        assert np.array_equal(got[name], value), f"{name} differs from the golden layer"
        assert np.array_equal(got[name], info["golden"][name]), name
    assert info["errors"] == 0, f"chip error bits {info['errors']:#x}"
    out = {"rtl_cycles": info["cycles"], "commands": info["commands"],
           "host_vectors": info["host_vectors"], "bit_exact": True}
    with open(os.environ["CHIP_LAYER_RESULT"], "w") as f:
        json.dump(out, f)
    dut._log.info(f"layer: {info['cycles']} cycles, {info['commands']} commands, bit-exact")


def run_layer(noise="ideal", seed=0, *, idle=0.0, backpressure=0.0, tmp=None):
    """Build (cached) and run the layer; returns the result dict the cocotb test wrote."""
    import pickle
    import tempfile
    from tb.env.chip import TOP, build_chip
    tmp = tempfile.mkdtemp(prefix="chip_layer_") if tmp is None else str(tmp)
    case = os.path.join(tmp, "case.pkl")
    result = os.path.join(tmp, "result.json")
    with open(case, "wb") as f:
        pickle.dump({"noise": noise, "seed": seed, "idle": idle, "backpressure": backpressure}, f)
    _, verilog, hier = build_chip()
    runner.run(verilog, TOP, "tb.test_chip_layer_verilator", name="chip_regression",
               top_only=True, hier_blocks=hier, testcase="layer",
               extra_env={cl.CASE_ENV: case, "CHIP_LAYER_RESULT": result},
               test_dir=f"run-layer-{noise}-{seed}-{os.getpid()}")
    with open(result) as f:
        return json.load(f)


@pytest.mark.parametrize("noise", ["ideal", "noisy"])
def test_chip_layer_verilator(noise, tmp_path):
    out = run_layer(noise, seed=0 if noise == "ideal" else 1, tmp=tmp_path,
                    idle=0.2 if noise == "noisy" else 0.0,
                    backpressure=0.3 if noise == "noisy" else 0.0)
    assert out["bit_exact"] and out["rtl_cycles"] > 0
