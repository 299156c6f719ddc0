# amaranth: UnusedElaboratable=no
"""SarAdcController in the Amaranth simulator, in lockstep with the golden cycle model.

Every cycle the controller's outputs must equal :class:`golden.sar_adc.SarAdcControllerModel`'s;
the testbench is the analog front end (:class:`golden.sar_adc.AnalogFrontEnd`, column values
from :mod:`golden.crossbar`), and the words received must equal
:func:`golden.sar_adc.expected_words` (codes from :func:`golden.sar.sar_convert`).

The stimulus and lockstep helpers live in :mod:`tb.env.sar_adc`.
"""

import random
import zlib

import numpy as np
import pytest
from amaranth import Module

from golden.sar import ideal_quantize
from golden.sar_adc import (CONVERT, ERROR, IDLE, SAMPLE, SETTLE, WAIT, Command,
                            SarAdcControllerModel, expected_words, sweep_cycles)
from hdl.sar_adc import SarAdcController
from tb.env.sar_adc import crossbar_reads, lsb_map, random_commands, run_sim


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


def test_adc_port_signature():
    """The controller's analog ports are one AdcPortSignature; the bundle checks its parameters."""
    from amaranth import Shape, unsigned
    from amaranth.lib import wiring

    from hdl.lib.signatures import AdcPortSignature, StrobeSignature, strobe
    ctl = SarAdcController(7, columns=12, resolutions=(6, 7))
    sig = AdcPortSignature(max_bits=7, columns=12)
    assert ctl.signature.members["adc"].signature == sig
    assert sig != AdcPortSignature(max_bits=7, columns=16)
    assert repr(sig) == "AdcPortSignature(max_bits=7, columns=12)"
    assert {n: (m.flow, Shape.cast(m.shape)) for n, m in sig.members.items()} == {
        "sample": (wiring.Out, unsigned(1)), "column": (wiring.Out, unsigned(4)),
        "trial": (wiring.Out, unsigned(7)), "trial_en": (wiring.Out, unsigned(1)),
        "bits": (wiring.Out, unsigned(3)), "decision": (wiring.In, unsigned(1))}
    with pytest.raises(TypeError, match=r"max_bits must be an integer from 1 to 16, not 0"):
        AdcPortSignature(max_bits=0, columns=4)
    with pytest.raises(TypeError, match=r"columns must be an integer from 1 to 4096, not 5000"):
        AdcPortSignature(max_bits=4, columns=5000)
    assert strobe(unsigned(3)) == StrobeSignature(unsigned(3)) != StrobeSignature(unsigned(4))
    assert set(strobe(8).members) == {"valid", "payload"}
    assert repr(strobe(unsigned(3))) == "StrobeSignature(unsigned(3))"
    with pytest.raises(TypeError, match=r"Payload shape must be a shape-like object, not 'x'"):
        StrobeSignature("x")
