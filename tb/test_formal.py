"""Formal proofs of the control logic (short depths; ``python -m tb.formal`` runs the long
ones). Each proof either closes by induction or finds no counterexample within its depth;
each seeded bug (a mutated design) must be refuted, with a counterexample waveform."""

import pytest
from amaranth import Module, Mux
from amaranth.hdl import Assert
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from tb.formal.harness import FormalHarness
from tb.formal.proofs import COMB_PATHS, PROOFS, SEEDED_BUGS
from tb.formal.runner import ProofError, comb_path, prove, read_vcd


@pytest.mark.parametrize("proof", PROOFS, ids=[p.name for p in PROOFS])
def test_proof(proof):
    result = prove(proof.make(), name=f"test_{proof.name}", mode=proof.mode, depth=proof.depth)
    assert result.status == proof.expect, str(result)
    if result.status == "bounded":
        assert result.depth == proof.depth


@pytest.mark.parametrize("bug", SEEDED_BUGS, ids=[f"{b.proof}-{b.bug}" for b in SEEDED_BUGS])
def test_seeded_bug_is_found(bug):
    with pytest.raises(ProofError) as info:
        prove(bug.make(), name=f"test_bug_{bug.proof}_{bug.bug}", mode="bmc", depth=bug.depth)
    result = info.value.result
    assert result.status == "failed" and 1 <= result.depth <= bug.depth
    assert str(result.vcd) in str(info.value)
    trace = read_vcd(result.vcd)
    assert trace and all(trace.values())


@pytest.mark.parametrize("name, make, source, sink, exists", COMB_PATHS,
                         ids=[c[0] for c in COMB_PATHS])
def test_combinational_path(name, make, source, sink, exists):
    """``valid`` never depends on ``ready`` in the same cycle where a block promises so."""
    assert comb_path(make(), source, sink, name=f"test_path_{name}") == exists


def test_runner_outcomes():
    """The runner tells a proof, a bounded check and a counterexample apart (0..9 counter)."""
    class Counter(wiring.Component):
        c: Out(4)

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.c.eq(Mux(self.c == 9, 0, self.c + 1))
            return m

    class Bound(FormalHarness):
        def __init__(self, check):
            super().__init__(Counter())
            self.check = check

        def properties(self, m):
            m.d.comb += Assert(self.check(self.dut.c))

    true = Bound(lambda c: c <= 9)
    with pytest.raises(ValueError, match="mode must be"):
        prove(true, name="test_counter_mode", mode="pdr")
    with pytest.raises(TypeError, match="depth must be a positive integer"):
        prove(true, name="test_counter_depth", depth=0)
    assert prove(true, name="test_counter_true", depth=4).status == "proved"
    r = prove(Bound(lambda c: c != 15), name="test_counter_deep", depth=4)
    assert r.status == "bounded" and r.depth == 4
    assert prove(Bound(lambda c: c != 15), name="test_counter_deep", depth=8).status == "proved"
    with pytest.raises(ProofError, match="cex.vcd"):
        prove(Bound(lambda c: c <= 8), name="test_counter_false", depth=12)
