"""SarAdcController in the Amaranth simulator, in lockstep with the golden cycle model.

Every cycle the controller's outputs must equal :class:`golden.sar_adc.SarAdcControllerModel`'s;
the testbench is the analog front end (:class:`golden.sar_adc.AnalogFrontEnd`, column values
from :mod:`golden.crossbar`), and the words received must equal
:func:`golden.sar_adc.expected_words` (codes from :func:`golden.sar.sar_convert`).

The helpers here (:func:`crossbar_reads`, :func:`random_commands`, :class:`Lockstep`) are
shared with ``tb/test_sar_adc_verilator.py``.
"""

import random
import zlib

import numpy as np
import pytest
from amaranth import Module, ResetInserter, Signal
from amaranth.sim import Simulator

from golden.crossbar import bit_planes, column_sums, slice_weights
from golden.sar import ideal_quantize
from golden.sar_adc import (CONVERT, ERROR, IDLE, SAMPLE, SETTLE, WAIT, AnalogFrontEnd, Command,
                            SarAdcControllerModel, expected_words, sweep_cycles)
from hdl.sar_adc import SarAdcController
from tb.packing import pack, unpack


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
            decision = ls.decide(ctx.get(dut.sample), ctx.get(dut.trial_en), ctx.get(dut.column),
                                 ctx.get(dut.trial), ctx.get(dut.bits))
            ctx.set(dut.decision, decision)
            seen = {
                "cmd_ready": ctx.get(dut.cmd.ready), "sample": ctx.get(dut.sample),
                "trial_en": ctx.get(dut.trial_en), "trial": ctx.get(dut.trial),
                "column": ctx.get(dut.column), "bits": ctx.get(dut.bits),
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


@pytest.mark.parametrize("params", [
    dict(max_bits=4, columns=8, settle_cycles=0),
    dict(max_bits=4, columns=6, settle_cycles=2),
    dict(max_bits=7, columns=8, settle_cycles=1, resolutions=(6, 7)),
    dict(max_bits=6, columns=5, settle_cycles=0, resolutions=(6,)),
    dict(max_bits=1, columns=1, settle_cycles=0),
], ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()))
def test_sar_adc_sim_random(params):
    seed = zlib.crc32(repr(params).encode()) & 0xffff
    rng = random.Random(seed)
    ctl = SarAdcController(**params)
    cmds = random_commands(rng, 40, columns=ctl.columns, resolutions=ctl.resolutions,
                           max_bits=ctl.max_bits)
    reads = crossbar_reads(seed, 60, ctl.columns, rows=16)
    lsb = lsb_map(16 * 3, ctl.max_bits)
    comparator = ">" if params["columns"] == 6 else ">="
    ls = run_sim(params, cmds, reads, seed=seed, lsb=lsb, noise_sigma=0.3, offset=0.2,
                 backpressure=0.6, comparator=comparator)
    exp = expected_words(cmds, reads, max_bits=ctl.max_bits, columns=ctl.columns,
                         resolutions=ctl.resolutions, lsb=lsb, noise_sigma=0.3, offset=0.2,
                         seed=seed, comparator=comparator)
    assert ls.received == exp
    assert any(w["error"] for w in exp)
    assert ls.states >= {IDLE, SAMPLE, CONVERT, WAIT, ERROR}
    assert SETTLE in ls.states or not params["settle_cycles"]


def test_sar_adc_sim_ideal_exhaustive():
    """Every code of every resolution of a 5-bit controller, at both edges of its bin."""
    params = dict(max_bits=5, columns=16)
    cmds, reads = [], []
    for b in range(1, 6):
        values = np.concatenate([np.arange(1 << b) - 0.5, np.arange(1 << b) + 0.49, [-3, 99]])
        for i in range(0, len(values), 16):
            chunk = values[i:i + 16]
            reads.append(np.pad(chunk, (0, 16 - len(chunk))))
            cmds.append(Command(bits=b, first=0, last=len(chunk) - 1))
    lsb = 1.0
    ls = run_sim(params, cmds, reads, seed=3, lsb=lsb, idle=0.0, backpressure=0.2)
    codes = [w["code"] for w in ls.received]
    ideal = np.concatenate([ideal_quantize(r[:c.last + 1], c.bits) for r, c in zip(reads, cmds)])
    np.testing.assert_array_equal(codes, ideal)
    assert set(codes) >= set(range(32))


def test_sar_adc_sim_sweep_cycles():
    """Back-to-back sweeps with no backpressure: 1 + N * (S + b) cycles per command."""
    for settle in (0, 3):
        params = dict(max_bits=8, columns=12, settle_cycles=settle)
        cmds = [Command(bits=b, all=True) for b in (8, 6, 7, 1, 6)]
        reads = crossbar_reads(1, len(cmds), 12, rows=16)
        ls = run_sim(params, cmds, reads, idle=0.0, backpressure=0.0, lsb=0.25)
        accept = [c for c, _ in ls.accepted]
        gaps = np.diff(accept)
        np.testing.assert_array_equal(
            gaps, [sweep_cycles(12, c.bits, settle_cycles=settle) for c in cmds[:-1]])
        last_words = [c for c, w in zip(ls.received_cycles, ls.received) if w["last"]]
        np.testing.assert_array_equal(
            np.array(last_words) - accept,
            [sweep_cycles(12, c.bits, settle_cycles=settle) + 1 for c in cmds])


def test_sar_adc_sim_reset_mid_conversion():
    params = dict(max_bits=8, columns=8)
    cmds = [Command(bits=8, all=True), Command(bits=6, all=True)]
    reads = crossbar_reads(2, 4, 8, rows=16)
    after = [Command(bits=7, first=2, last=5), Command(bits=9, first=1, last=1)]
    ls = run_sim(params, cmds, reads, reset_at=30, after_reset=(after, reads[2:]), idle=0.0,
                 backpressure=0.3, lsb=0.25)
    exp = expected_words(cmds, reads, max_bits=8, columns=8, lsb=0.25)
    n = ls.n_before_reset
    assert 0 < n < len(exp)
    assert ls.received[:n] == exp[:n]
    # After the reset: idle (lockstep), then the new commands run as from a fresh start.
    assert ls.received[n:] == expected_words(after, reads[2:], max_bits=8, columns=8, lsb=0.25)


def test_sar_adc_bad_parameters():
    with pytest.raises(TypeError, match=r"max_bits must be an integer from 1 to 16, not 17"):
        SarAdcController(17)
    with pytest.raises(TypeError, match=r"columns must be an integer from 1 to 4096, not 0"):
        SarAdcController(8, columns=0)
    with pytest.raises(TypeError, match=r"settle_cycles must be an integer from 0 to 255, not -1"):
        SarAdcController(8, settle_cycles=-1)
    with pytest.raises(TypeError, match=r"resolutions must be a tuple of integers from 1 to 16"):
        SarAdcController(8, resolutions=(0, 6))
    with pytest.raises(ValueError,
                       match=r"resolutions must be at most max_bits \(6\), not \(6, 7\)"):
        SarAdcController(6, resolutions=(6, 7))
    with pytest.raises(ValueError, match=r"resolutions must not repeat a value"):
        SarAdcController(8, resolutions=(6, 6))


def test_sar_adc_golden_contract():
    assert sweep_cycles(128, 8) == 128 * 8 + 1
    assert sweep_cycles(128, 6, settle_cycles=2, hold=True) == 128 * 8
    with pytest.raises(TypeError, match=r"bits must be an integer from 1 to 16, not 0"):
        sweep_cycles(128, 0)
    with pytest.raises(ValueError, match=r"resolutions must be at most max_bits \(6\)"):
        SarAdcControllerModel(6, resolutions=(7,))


def test_sar_adc_shared_cell():
    """Several controllers of a tile become one Verilog module through shared_cell."""
    from amaranth.lib import wiring
    from amaranth.lib.wiring import Out

    from hdl.cells import shared_cell
    from hdl.verilog import generate

    class Tile(wiring.Component):
        busy: Out(3)

        def elaborate(self, platform):
            m = Module()
            for i in range(3):
                ctl = SarAdcController(7, resolutions=(6, 7))
                m.submodules[f"adc{i}"] = shared_cell(ctl, key=ctl.cell_key)
                m.d.comb += self.busy[i].eq(ctl.busy)
            return m

    text = generate(Tile(), "tile")
    assert text.count("module sar_adc_controller(") == 1
    assert text.count("sar_adc_controller adc") == 3
