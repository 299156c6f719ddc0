"""SarAdcController: cocotb + Verilator regression, in lockstep with the golden cycle model.

The testbench is the analog front end: :func:`tb.env.sar_adc.crossbar_reads` computes the
column values of random 1-bit input planes on a crossbar of random weights with
:mod:`golden.crossbar`, and :class:`golden.sar_adc.AnalogFrontEnd` answers each trial code with
:func:`golden.sar.compare` (comparator offset and seeded noise optional). Every cycle, every
output of the DUT is checked against :class:`golden.sar_adc.SarAdcControllerModel`; the words
received are checked against :func:`golden.sar_adc.expected_words` (codes from
:func:`golden.sar.sar_convert`) and, with an ideal comparator, against the ideal quantizer.
"""

import os
import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import FallingEdge

from golden.sar import ideal_quantize
from golden.sar_adc import WAIT, Command, expected_words, sweep_cycles
from hdl.sar_adc import SarAdcController
from hdl.verilog import generate
from tb import runner
from tb.env.sar_adc import SarAdcBench, crossbar_reads, lsb_map, random_commands

CONFIGS = {
    # ISAAC / Atleus: one 8-bit ADC behind a 128-column mux, every resolution selectable.
    "isaac": (dict(max_bits=8, columns=128, settle_cycles=0), None),
    # HyFlexPIM: the 6/7-bit switch, with one settle cycle after each column switch (its 6-
    # and 7-bit codes are covered exhaustively by the ISAAC configuration).
    "hyflexpim": (dict(max_bits=7, columns=128, settle_cycles=1, resolutions=(6, 7)),
                  ["crossbar_random", "sweep_cycles_contract", "reset_mid_conversion"]),
}


def _params():
    res = os.environ["SAR_RESOLUTIONS"]
    return dict(max_bits=int(os.environ["SAR_MAX_BITS"]), columns=int(os.environ["SAR_COLUMNS"]),
                settle_cycles=int(os.environ["SAR_SETTLE"]),
                resolutions=tuple(int(r) for r in res.split(",")) if res else ())


def TB(dut, **kw):
    """The block's cocotb bench (:class:`tb.env.sar_adc.SarAdcBench`) with this run's parameters."""
    return SarAdcBench(dut, _params(), **kw)


def _golden(tb, commands, reads, **front_end):
    return expected_words(commands, reads, max_bits=tb.ctl.max_bits, columns=tb.ctl.columns,
                          resolutions=tb.ctl.resolutions, seed=tb.seed, **front_end)


@cocotb.test()
async def crossbar_random(dut):
    """Random crossbar reads, mixed resolutions and ranges, refused commands, comparator offset
    and noise, random idle cycles and backpressure."""
    seed = int(os.environ["SAR_SEED"])
    tb = TB(dut, seed=seed, idle=0.3, backpressure=0.5)
    rng = random.Random(seed)
    cols = tb.ctl.columns
    commands = random_commands(rng, 14, columns=cols, resolutions=tb.ctl.resolutions,
                               max_bits=tb.ctl.max_bits)
    reads = crossbar_reads(seed, 40, cols)
    fe = dict(lsb=lsb_map(128 * 3, tb.ctl.max_bits), offset=0.3, noise_sigma=0.4)
    await tb.start(reads, **fe)
    tb.send(commands)
    await tb.drain()
    expected = _golden(tb, commands, reads, **fe)
    assert tb.ls.received == expected
    assert list(tb.monitor.received) == expected
    assert any(w["error"] for w in expected) and WAIT in tb.ls.states
    assert len({c.bits for c in commands}) > 1


@cocotb.test()
async def ideal_exhaustive(dut):
    """With an ideal comparator every code of 6, 7 and 8 bits equals the ideal quantizer, at
    both edges of every bin (the lower edge exactly: a tie rounds up)."""
    seed = int(os.environ["SAR_SEED"])
    tb = TB(dut, seed=seed, idle=0.1, backpressure=0.2)
    cols = tb.ctl.columns
    commands, reads, values = [], [], []
    for b in sorted({6, 7, 8} & set(tb.ctl.resolutions)):
        v = np.concatenate([np.arange(1 << b) - 0.5, np.arange(1 << b) + 0.49,
                            [-2.0, (1 << b) + 5]])
        for i in range(0, len(v), cols):
            chunk = v[i:i + cols]
            reads.append(np.pad(chunk, (0, cols - len(chunk))))
            commands.append(Command(bits=b, first=0, last=len(chunk) - 1))
            values.append((chunk, b))
    await tb.start(reads, lsb=1.0)
    tb.send(commands)
    await tb.drain()
    codes = [w["code"] for w in tb.ls.received]
    ideal = np.concatenate([ideal_quantize(v, b) for v, b in values])
    np.testing.assert_array_equal(codes, ideal)
    assert codes == [w["code"] for w in _golden(tb, commands, reads, lsb=1.0)]
    assert list(tb.monitor.received) == tb.ls.received


@cocotb.test()
async def sweep_cycles_contract(dut):
    """Full sweeps back to back at every resolution of the config among 6, 7, 8 bits:
    1 + columns * (settle + bits) cycles each, no idle cycle."""
    seed = int(os.environ["SAR_SEED"])
    tb = TB(dut, seed=seed, idle=0.0, backpressure=0.0)
    cols, settle = tb.ctl.columns, tb.ctl.settle_cycles
    bits = [b for b in (8, 6, 7) if b in tb.ctl.resolutions]
    commands = [Command(bits=b, all=True) for b in bits]
    reads = crossbar_reads(seed, len(commands), cols)
    fe = dict(lsb=lsb_map(128 * 3, tb.ctl.max_bits))
    await tb.start(reads, **fe)
    tb.send(commands)
    await tb.drain()
    accepted = [c for c, _ in tb.ls.accepted]
    np.testing.assert_array_equal(np.diff(accepted),
                                  [sweep_cycles(cols, b, settle_cycles=settle) for b in bits[:-1]])
    ends = [c for c, w in zip(tb.ls.received_cycles, tb.ls.received) if w["last"]]
    np.testing.assert_array_equal(np.array(ends) - accepted,
                                  [sweep_cycles(cols, b, settle_cycles=settle) + 1 for b in bits])
    # One word per conversion, back to back: consecutive words of a sweep are b + settle apart.
    starts = np.cumsum([0] + [cols for _ in bits])
    for k, b in enumerate(bits):
        gaps = np.diff(tb.ls.received_cycles[starts[k]:starts[k + 1]])
        assert set(gaps.tolist()) == {b + settle}
    assert tb.ls.received == _golden(tb, commands, reads, **fe)


@cocotb.test()
async def reset_mid_conversion(dut):
    """Reset in mid-conversion returns to idle; the next commands run as from a fresh start."""
    seed = int(os.environ["SAR_SEED"])
    tb = TB(dut, seed=seed, idle=0.2, backpressure=0.3)
    cols = tb.ctl.columns
    b0, b1 = tb.ctl.resolutions[-1], tb.ctl.resolutions[0]
    before = [Command(bits=b0, all=True), Command(bits=b1, first=3, last=9)]
    refused = max(set(range(1 << tb.ctl.max_bits.bit_length())) - set(tb.ctl.resolutions))
    after = [Command(bits=b1, first=cols - 5, last=cols - 1),
             Command(bits=refused, first=1, last=2),
             Command(bits=b0, first=0, last=4, hold=True)]
    reads = crossbar_reads(seed, 6, cols)
    fe = dict(lsb=lsb_map(128 * 3, tb.ctl.max_bits))
    await tb.start(reads, **fe)
    tb.send(before)
    for _ in range(5 * b0 + 3):
        await FallingEdge(dut.clk)
    assert tb.ls.model.state != 0
    n = len(tb.ls.received)
    assert 0 < n and tb.ls.received == _golden(tb, before, reads, **fe)[:n]
    await tb.reset_now(reads[3:])
    await FallingEdge(dut.clk)
    assert not int(dut.busy.value) and not int(dut.o__valid.value)
    tb.send(after)
    await tb.drain()
    assert tb.ls.received[n:] == _golden(tb, after, reads[3:], **fe)
    assert list(tb.monitor.received) == tb.ls.received[n:]


# -- pytest ---------------------------------------------------------------------------------

@pytest.mark.parametrize("config", list(CONFIGS))
def test_sar_adc_verilator(config):
    params, testcases = CONFIGS[config]
    verilog = generate(SarAdcController(**params), "sar_adc_controller")
    env = {"SAR_MAX_BITS": params["max_bits"], "SAR_COLUMNS": params["columns"],
           "SAR_SETTLE": params["settle_cycles"],
           "SAR_RESOLUTIONS": ",".join(map(str, params.get("resolutions", ()))),
           "SAR_SEED": 11}
    runner.run(verilog, "sar_adc_controller", "tb.test_sar_adc_verilator", name=f"sar_adc_{config}",
               extra_env=env, testcase=testcases)
