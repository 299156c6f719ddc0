"""SarAdcController: cocotb + Verilator regression, in lockstep with the golden cycle model.

The testbench is the analog front end: :func:`tb.sar_adc_env.crossbar_reads` computes the
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
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from golden.sar import ideal_quantize
from golden.sar_adc import (WAIT, AnalogFrontEnd, Command, expected_words, sweep_cycles)
from hdl.sar_adc import SarAdcController
from hdl.verilog import generate
from tb import runner
from tb.cocotb_streams import StreamDriver, StreamMonitor, reset_dut
from tb.packing import unpack
from tb.sar_adc_env import Lockstep, crossbar_reads, lsb_map, random_commands

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


class TB:
    """Clock, reset, command driver, output monitor and the lockstep analog front end."""

    def __init__(self, dut, *, seed, idle=0.3, backpressure=0.3):
        self.dut = dut
        self.params = _params()
        self.ctl = SarAdcController(**self.params)
        self.cmd_layout = self.ctl.cmd.payload.shape()
        self.out_layout = self.ctl.o.payload.shape()
        self.seed = seed
        self.idle, self.backpressure = idle, backpressure
        self.ls = None
        self.driver = self.monitor = None
        dut.decision.value = 0
        dut.cmd__valid.value = 0
        dut.o__ready.value = 0
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def start(self, reads, **front_end):
        await reset_dut(self.dut)
        self.front_end_args = front_end
        self.ls = Lockstep(self.params, AnalogFrontEnd(reads, seed=self.seed, **front_end),
                           seed=self.seed)
        self._streams()
        cocotb.start_soon(self._lockstep())

    def _streams(self):
        self.driver = StreamDriver(self.dut, "cmd", self.cmd_layout, idle=self.idle,
                                   seed=self.seed + len(self.ls.received))
        self.monitor = StreamMonitor(self.dut, "o", self.out_layout,
                                     backpressure=self.backpressure, seed=self.seed + 1)

    def send(self, commands):
        for c in commands:
            self.driver.send(c.as_dict())

    async def _lockstep(self):
        dut, ls = self.dut, self.ls
        while True:
            await FallingEdge(dut.clk)
            decision = ls.decide(int(dut.sample.value), int(dut.trial_en.value),
                                 dut.column.value.to_unsigned(), dut.trial.value.to_unsigned(),
                                 dut.bits.value.to_unsigned())
            dut.decision.value = decision
            await ReadOnly()
            if int(dut.rst.value):
                ls.reset()
                await RisingEdge(dut.clk)
                continue
            cmd_valid = int(dut.cmd__valid.value)
            cmd = (Command(**unpack(self.cmd_layout, dut.cmd__payload.value.to_unsigned()))
                   if cmd_valid else None)
            seen = {
                "cmd_ready": int(dut.cmd__ready.value), "sample": int(dut.sample.value),
                "trial_en": int(dut.trial_en.value), "trial": dut.trial.value.to_unsigned(),
                "column": dut.column.value.to_unsigned(), "bits": dut.bits.value.to_unsigned(),
                "o_valid": int(dut.o__valid.value), "busy": int(dut.busy.value),
                "o_payload": unpack(self.out_layout, dut.o__payload.value.to_unsigned()),
            }
            ls.edge(seen, cmd_valid=cmd_valid, cmd=cmd, o_ready=int(dut.o__ready.value),
                    decision=decision)
            await RisingEdge(dut.clk)

    async def drain(self, limit=1_000_000):
        """Wait until every command is done and every word taken."""
        for _ in range(limit):
            await FallingEdge(self.dut.clk)
            m = self.ls.model
            if not self.driver.pending and m.state == 0 and not m.out_valid \
                    and not int(self.dut.cmd__valid.value):
                return
        raise AssertionError("the controller did not finish")

    async def reset_now(self, reads=None):
        """Reset at a falling edge for two cycles; new streams and front end afterwards."""
        self.driver.kill()
        self.monitor.kill()
        self.dut.o__ready.value = 0
        await reset_dut(self.dut)
        if reads is not None:
            self.ls.fe = AnalogFrontEnd(reads, seed=self.seed, **self.front_end_args)
        self._streams()


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
