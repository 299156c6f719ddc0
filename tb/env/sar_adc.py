"""SAR-ADC controller test environment: stimulus from the golden crossbar, random commands,
the lockstep checker against :class:`golden.sar_adc.SarAdcControllerModel`, and the two benches
built on them: :func:`run_sim` (Amaranth simulator) and :class:`SarAdcBench` (cocotb).

Used by ``tb/test_sar_adc_sim.py``, ``tb/test_sar_adc_verilator.py`` and ``tb/bench/sar_adc.py``.
The controller's analog ports are the members of its ``adc`` interface
(:class:`hdl.lib.signatures.AdcPortSignature`; ``adc__sample``... in Verilog).
"""

import random

import numpy as np
from amaranth import Module, ResetInserter, Signal
from amaranth.sim import Simulator

from golden.crossbar import bit_planes, column_sums, slice_weights
from golden.sar_adc import AnalogFrontEnd, Command, SarAdcControllerModel
from hdl.sar_adc import SarAdcController
from tb.packing import pack, unpack

__all__ = ["crossbar_reads", "random_commands", "lsb_map", "Lockstep", "run_sim", "SarAdcBench"]


# -- stimulus ---------------------------------------------------------------------------------

def crossbar_reads(seed, n_reads, columns, *, rows=128, cell_bits=2, weight_bits=8):
    """Column sums of successive 1-bit input planes on a crossbar of random weights.

    The weights (offset encoding, ``weight_bits / cell_bits`` adjacent columns per weight) and
    the inputs are random, with a spread of input densities; the first two reads are the
    extremes (all inputs 0, all inputs 1 on all-ones cells: full scale).
    """
    rng = np.random.default_rng(seed)
    n_slices = weight_bits // cell_bits
    n_weights = -(-columns // n_slices)
    lim = 1 << (weight_bits - 1)
    w = rng.integers(-lim, lim, (rows, n_weights))
    cells = slice_weights(w, weight_bits, cell_bits, "offset")              # (slices, rows, w)
    cells = np.moveaxis(cells, 0, -1).reshape(rows, -1)[:, :columns]         # column j*n + s
    n_vec = -(-n_reads // 8)
    x = rng.integers(-128, 128, (n_vec, rows))
    density = rng.random((n_vec, 1))
    x = np.where(rng.random((n_vec, rows)) < density, x, 0)
    planes = bit_planes(x, 8).reshape(-1, rows)                              # one plane per read
    sums = column_sums(planes, cells)
    full = np.full((1, columns), rows * ((1 << cell_bits) - 1), dtype=sums.dtype)
    return np.concatenate([np.zeros_like(full), full, sums])[:n_reads]


def random_commands(rng, n, *, columns, resolutions, max_bits, bad=0.1, hold=0.2):
    """Random commands: mostly valid ranges and resolutions, some refused ones."""
    bits_field = max_bits.bit_length()
    refused = [b for b in range(1 << bits_field) if b not in resolutions]
    col_field = max(1, (columns - 1).bit_length())
    cmds = []
    for i in range(n):
        first = rng.randrange(columns)
        last = rng.randrange(first, columns)
        bits = rng.choice(resolutions)
        cmd = Command(bits=bits, first=first, last=last, all=rng.random() < 0.15,
                      hold=bool(cmds) and rng.random() < hold)
        if rng.random() < bad or i in (2, 5):
            if refused and (rng.random() < 0.7 or i == 2):
                cmd = Command(bits=rng.choice(refused), first=first, last=last)
            elif columns < 1 << col_field and rng.random() < 0.5:
                cmd = Command(bits=bits, first=first, last=rng.randrange(columns, 1 << col_field))
            elif first > 0:
                cmd = Command(bits=bits, first=first, last=rng.randrange(first))
        cmds.append(cmd)
    return cmds


def lsb_map(full_scale, max_bits):
    """ADC step per resolution: the same full scale at every resolution."""
    return {b: full_scale / (1 << b) for b in range(1, max_bits + 1)}


# -- lockstep checker -------------------------------------------------------------------------

class Lockstep:
    """Golden controller model and analog front end, advanced one cycle at a time.

    Per cycle: :meth:`decide` with the DUT's registered outputs (before the edge), then
    :meth:`edge` with every port as seen just before the rising edge.
    """

    def __init__(self, dut_params, front_end, *, seed=0):
        self.model = SarAdcControllerModel(**dut_params)
        self.fe = front_end
        self.rng = random.Random(seed)
        self.cycle = 0
        self.received = []
        self.received_cycles = []
        self.accepted = []
        self.states = set()

    def decide(self, sample, trial_en, column, trial, bits):
        """The comparator's answer for this cycle (random when no trial is shown)."""
        if sample:
            self.fe.sample()
        if trial_en:
            return int(self.fe.decide(column, trial, bits))
        return self.rng.randrange(2)     # must be ignored

    def edge(self, seen, *, cmd_valid, cmd, o_ready, decision):
        """Check ``seen`` (a dict like :meth:`SarAdcControllerModel.outputs`) and clock."""
        exp = self.model.outputs(o_ready)
        self.states.add(self.model.state)
        keys = ["cmd_ready", "sample", "trial_en", "column", "bits", "o_valid", "busy"]
        keys += ["trial"] if exp["trial_en"] else []
        keys += ["o_payload"] if exp["o_valid"] else []
        wrong = [k for k in keys if seen[k] != exp[k]]   # (True == 1)
        assert not wrong, f"{wrong} in cycle {self.cycle}: expected {exp}, got {seen}"
        if exp["o_valid"]:
            if o_ready:
                self.received.append(seen["o_payload"])
                self.received_cycles.append(self.cycle)
        if cmd_valid and exp["cmd_ready"]:
            self.accepted.append((self.cycle, cmd))
        self.model.tick(cmd_valid=cmd_valid, cmd=cmd, o_ready=o_ready, decision=decision)
        self.cycle += 1

    def reset(self):
        self.model.reset()
        self.cycle += 1


# -- Amaranth simulator -----------------------------------------------------------------------

def run_sim(params, commands, reads, *, seed=0, idle=0.3, backpressure=0.3, lsb=1.0,
            noise_sigma=0.0, offset=0.0, comparator=">=", reset_at=None, after_reset=(),
            max_cycles=200_000):
    """Drive ``commands`` through the DUT in lockstep with the model.

    With ``reset_at``, reset is asserted for one cycle at that cycle, the rest of the
    commands is dropped and the commands and reads of ``after_reset`` (a pair) follow, with a
    fresh front end; ``Lockstep.n_before_reset`` counts the words received before the reset.
    Returns the :class:`Lockstep` (received words, cycles).
    """
    dut = SarAdcController(**params)
    rst = Signal()
    m = Module()
    m.submodules.dut = ResetInserter(rst)(dut)
    cmd_layout = dut.cmd.payload.shape()
    out_layout = dut.o.payload.shape()
    fe = AnalogFrontEnd(reads, lsb=lsb, comparator=comparator, offset=offset,
                        noise_sigma=noise_sigma, seed=seed)
    ls = Lockstep(params, fe, seed=seed)
    rng = random.Random(seed)

    async def bench(ctx):
        pending = list(commands)
        holding = False
        for cycle in range(max_cycles):
            if reset_at is not None and cycle == reset_at:
                ctx.set(rst, 1)
                ctx.set(dut.cmd.valid, 0)
                await ctx.tick()
                ctx.set(rst, 0)
                ls.reset()
                ls.n_before_reset = len(ls.received)
                pending, holding = list(after_reset[0]) if after_reset else [], False
                if after_reset:
                    ls.fe = AnalogFrontEnd(after_reset[1], lsb=lsb, comparator=comparator,
                                           offset=offset, noise_sigma=noise_sigma, seed=seed)
                continue
            if not pending and not holding and not ls.model.outputs()["busy"] \
                    and not ls.model.out_valid:
                break
            if not holding and pending and rng.random() >= idle:
                holding = True
                ctx.set(dut.cmd.payload.as_value(), pack(cmd_layout, pending[0].as_dict()))
            o_ready = int(rng.random() >= backpressure)
            ctx.set(dut.cmd.valid, int(holding))
            ctx.set(dut.o.ready, o_ready)
            adc = dut.adc
            decision = ls.decide(ctx.get(adc.sample), ctx.get(adc.trial_en), ctx.get(adc.column),
                                 ctx.get(adc.trial), ctx.get(adc.bits))
            ctx.set(adc.decision, decision)
            seen = {
                "cmd_ready": ctx.get(dut.cmd.ready), "sample": ctx.get(adc.sample),
                "trial_en": ctx.get(adc.trial_en), "trial": ctx.get(adc.trial),
                "column": ctx.get(adc.column), "bits": ctx.get(adc.bits),
                "o_valid": ctx.get(dut.o.valid), "busy": ctx.get(dut.busy),
                "o_payload": unpack(out_layout, ctx.get(dut.o.payload.as_value())),
            }
            cmd = pending[0] if holding else None
            ls.edge(seen, cmd_valid=holding, cmd=cmd, o_ready=o_ready, decision=decision)
            if holding and seen["cmd_ready"]:
                pending.pop(0)
                holding = False
            await ctx.tick()
        else:
            raise AssertionError(f"not finished after {max_cycles} cycles")

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return ls


# -- cocotb -----------------------------------------------------------------------------------

class SarAdcBench:
    """cocotb bench of one controller: clock, reset, command driver, output monitor and the
    lockstep analog front end (:class:`Lockstep`, checked every cycle).

    Parameters
    ----------
    dut : the cocotb handle of a ``sar_adc_controller`` top level.
    params : dict
        The controller's parameters (:class:`hdl.sar_adc.SarAdcController`).
    seed : int
        Seed of the idle, backpressure and comparator-noise streams.
    idle, backpressure : float
        Probability of an idle cycle before a command and of ``ready`` low on ``o``.
    """

    def __init__(self, dut, params, *, seed, idle=0.3, backpressure=0.3):
        import cocotb
        from cocotb.clock import Clock
        self.dut = dut
        self.params = dict(params)
        self.ctl = SarAdcController(**self.params)
        self.cmd_layout = self.ctl.cmd.payload.shape()
        self.out_layout = self.ctl.o.payload.shape()
        self.seed = seed
        self.idle, self.backpressure = idle, backpressure
        self.ls = None
        self.driver = self.monitor = None
        dut.adc__decision.value = 0
        dut.cmd__valid.value = 0
        dut.o__ready.value = 0
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def start(self, reads, **front_end):
        """Reset, then serve ``reads`` (one row of column values per sample) to the DUT."""
        import cocotb
        from tb.cocotb_streams import reset_dut
        await reset_dut(self.dut)
        self.front_end_args = front_end
        self.ls = Lockstep(self.params, AnalogFrontEnd(reads, seed=self.seed, **front_end),
                           seed=self.seed)
        self._streams()
        cocotb.start_soon(self._lockstep())

    def _streams(self):
        from tb.cocotb_streams import StreamDriver, StreamMonitor
        self.driver = StreamDriver(self.dut, "cmd", self.cmd_layout, idle=self.idle,
                                   seed=self.seed + len(self.ls.received))
        self.monitor = StreamMonitor(self.dut, "o", self.out_layout,
                                     backpressure=self.backpressure, seed=self.seed + 1)

    def send(self, commands):
        """Queue :class:`golden.sar_adc.Command` s on ``cmd``."""
        for c in commands:
            self.driver.send(c.as_dict())

    async def _lockstep(self):
        from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
        dut, ls = self.dut, self.ls
        while True:
            await FallingEdge(dut.clk)
            decision = ls.decide(int(dut.adc__sample.value), int(dut.adc__trial_en.value),
                                 dut.adc__column.value.to_unsigned(),
                                 dut.adc__trial.value.to_unsigned(),
                                 dut.adc__bits.value.to_unsigned())
            dut.adc__decision.value = decision
            await ReadOnly()
            if int(dut.rst.value):
                ls.reset()
                await RisingEdge(dut.clk)
                continue
            cmd_valid = int(dut.cmd__valid.value)
            cmd = (Command(**unpack(self.cmd_layout, dut.cmd__payload.value.to_unsigned()))
                   if cmd_valid else None)
            seen = {
                "cmd_ready": int(dut.cmd__ready.value), "sample": int(dut.adc__sample.value),
                "trial_en": int(dut.adc__trial_en.value),
                "trial": dut.adc__trial.value.to_unsigned(),
                "column": dut.adc__column.value.to_unsigned(),
                "bits": dut.adc__bits.value.to_unsigned(),
                "o_valid": int(dut.o__valid.value), "busy": int(dut.busy.value),
                "o_payload": unpack(self.out_layout, dut.o__payload.value.to_unsigned()),
            }
            ls.edge(seen, cmd_valid=cmd_valid, cmd=cmd, o_ready=int(dut.o__ready.value),
                    decision=decision)
            await RisingEdge(dut.clk)

    async def drain(self, limit=1_000_000):
        """Wait until every command is done and every word taken."""
        from cocotb.triggers import FallingEdge
        for _ in range(limit):
            await FallingEdge(self.dut.clk)
            m = self.ls.model
            if not self.driver.pending and m.state == 0 and not m.out_valid \
                    and not int(self.dut.cmd__valid.value):
                return
        raise AssertionError("the controller did not finish")

    async def reset_now(self, reads=None):
        """Reset at a falling edge for two cycles; new streams and front end afterwards."""
        from tb.cocotb_streams import reset_dut
        self.driver.kill()
        self.monitor.kill()
        self.dut.o__ready.value = 0
        await reset_dut(self.dut)
        if reads is not None:
            self.ls.fe = AnalogFrontEnd(reads, seed=self.seed, **self.front_end_args)
        self._streams()
