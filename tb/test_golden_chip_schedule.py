"""The chip's cycle model (golden.chip_schedule): small programs against hand-computed cycles,
the regression layer's schedule against its own rules, and the reconciliation with
golden.chip.time_model."""

import numpy as np
import pytest

from golden import chip_program as cp
from golden import chip_schedule as cs
from golden import noc, pim_core, systolic_core
from golden.chip import REGRESSION_CHIP
from golden.network_interface import stream_cycles
from tb.test_golden_chip_program import regression_case

CHIP = REGRESSION_CHIP
NI = cp.chip_ni(CHIP)
L, P = NI.length, NI.flits_per_packet
SYS = cp.systolic_config(CHIP, 0)
PIM = cp.pim_config(CHIP)
PIM_NODE = CHIP.node(0, 0, 1)


def program(steps):
    return cp.Program(CHIP, None, list(steps), {}, {0: SYS}, {PIM_NODE: PIM})


def words(n):
    return np.arange(n * L).reshape(n, L) % 100


def sys_send(count, src=0, dest=0, dest_addr=cp.HOST_FIRST):
    return systolic_core.encode_command(SYS, "SEND", dest=dest, dest_addr=dest_addr, src=src,
                                        count=count)


def test_one_command():
    """A GEMM alone at node 0: the host's command vector loops back (accepted at 0), reaches
    the queue's head after the demux and the queue, and takes command_cycles."""
    tm = cs.ScheduleTiming()
    word = systolic_core.encode_command(SYS, "GEMM", m=16, n=8, k=16, a_addr=0, b_addr=16,
                                        c_addr=32, a_t=1, c_t=1, out_width=8)
    s = cs.schedule(program([cp.Command(0, "systolic", word, 0, "gemm")]))
    (c,) = s.commands
    assert c.start == tm.loop_latency + tm.cmd_latency == 2
    assert c.cycles == systolic_core.command_cycles(SYS, word)
    assert s.busy == {0: c.cycles}


def test_result_sent_to_another_core():
    """A GEMM whose result goes to the ReRAM core: its words leave at the packetizer's pace
    (one per 1 + B cycles) instead of one per cycle, so it takes ``(span - 1) B`` cycles
    more than command_cycles (``span`` words)."""
    word = systolic_core.encode_command(SYS, "GEMM", dest=PIM_NODE, dest_addr=0, m=16, n=8,
                                        k=16, a_addr=0, b_addr=16, c_addr=32, a_t=1, c_t=1,
                                        out_width=8)
    s = cs.schedule(program([cp.Command(0, "systolic", word, 0, "gemm")]))
    (c,) = s.commands
    span = 8                                   # C^T: 8 rows of 16 elements, a word each
    assert c.sent == span
    assert c.cycles == systolic_core.command_cycles(SYS, word) + (span - 1) * (P - 1)
    assert s.write_times[PIM_NODE][-1] == c.end - 1 + stream_cycles(NI, 1) + 1


def test_fence_wait():
    """A command sent before the two writes it waits for starts when the second is counted:
    the command at the queue's head at 2; writes accepted at cycles 1 and 2 (loopback), at the
    demux at 2 and 3, counted at 3 and 4."""
    word = systolic_core.encode_command(SYS, "GEMM", m=16, n=8, k=16, a_addr=0, b_addr=16,
                                        c_addr=32, a_t=1, c_t=1, out_width=8)
    s = cs.schedule(program([cp.Command(0, "systolic", word, 2, "gemm"),
                             cp.Write(0, 0, words(2), "w")]))
    (c,) = s.commands
    assert c.arrive == 2
    assert s.write_times[0] == [3, 4]
    assert c.fence == 4 and c.start == 4


def test_send_to_another_core():
    """Two words to the ReRAM core above node 0 (one hop), then its SEND of them to the host.

    The packetizer takes one vector per 1 + B = 17 cycles: the host's vectors are accepted at
    0, 17, 34 and delivered ``stream_cycles(hops=1)`` = 22 cycles later (at the interface's
    ``o``): writes counted at 23 and 40, the command at the queue's head at 57 (demux 56 +
    1). The PIM SEND offers word 0 two cycles after its start (59), word 1 when the
    packetizer is free again (76); each reaches the host 22 cycles after acceptance: the
    last at 98. The command ends a cycle after its last word is accepted (77)."""
    topo, table = CHIP.network()
    hops = noc.hops(topo, table, 0, PIM_NODE)
    assert hops == 1 and P == 17
    lat = stream_cycles(NI, hops)
    assert lat == 22
    send = pim_core.encode_command(PIM, pim_core.Op.SEND, in_addr=0, tokens=2, dest=0,
                                   dest_addr=cp.HOST_FIRST)
    s = cs.schedule(program([cp.Write(PIM_NODE, 0, words(2), "w"),
                             cp.Command(PIM_NODE, "pim", send, 2, "send"),
                             cp.Read("r", cp.HOST_FIRST, 2, L)]))
    (c,) = s.commands
    assert s.write_times[PIM_NODE] == [lat + 1, P + lat + 1]
    assert c.arrive == 2 * P + lat + 1
    assert (c.start, c.end) == (57, 77)
    assert s.total_cycles == 76 + lat == 98
    assert c.sent == 2


@pytest.mark.parametrize("poll", [1, 64])
def test_host_step(poll):
    """A host step waits for its read, then the host sends on. The systolic SEND of one word
    to the host: command at the head at 2, word offered at 4, at the host at 5. The host
    polls from cycle 0: it resumes at 5 (poll 1) or 64 (poll 64), and its next SEND reaches
    the host 5 cycles after it resumes; with poll 64 the end is seen at the next poll
    (64 + 64)."""
    def step(reads):
        assert reads["a"].shape == (1, L)
        return [cp.Command(0, "systolic", sys_send(1, dest_addr=cp.HOST_FIRST + 1), 0, "again"),
                cp.Read("b", cp.HOST_FIRST + 1, 1, L)], {}

    prog = program([cp.Command(0, "systolic", sys_send(1), 0, "first"),
                    cp.Read("a", cp.HOST_FIRST, 1, L),
                    cp.HostStep(("a",), step, "step")])
    s = cs.schedule(prog, timing=cs.ScheduleTiming(host_poll=poll))
    first, again = s.commands
    assert (first.start, first.end) == (2, 5)
    (label, reads_in, resume), = s.host["steps"]
    assert reads_in == 5
    assert resume == (5 if poll == 1 else 64)
    assert again.start == resume + 2
    assert s.total_cycles == (10 if poll == 1 else 128)


def test_unmet_fence_is_reported():
    word = systolic_core.encode_command(SYS, "GEMM", m=16, n=8, k=16, a_addr=0, b_addr=16,
                                        c_addr=32, a_t=1, c_t=1, out_width=8)
    with pytest.raises(RuntimeError, match="never ran.*'gemm' at node 0 \\(wait 5"):
        cs.schedule(program([cp.Command(0, "systolic", word, 5, "gemm")]))


def test_bad_parameters():
    with pytest.raises(TypeError, match="program must be a golden.chip_program.Program"):
        cs.schedule([])
    with pytest.raises(TypeError, match="timing must be a ScheduleTiming"):
        cs.schedule(program([]), timing={})
    with pytest.raises(TypeError, match="timing.host_poll must be a positive integer"):
        cs.schedule(program([]), timing=cs.ScheduleTiming(host_poll=0))


@pytest.fixture(scope="module")
def layer_schedule():
    layer, x, g = regression_case()
    prog = cp.layer_program(layer, x, g)
    return prog, cs.schedule(prog)


def test_layer_schedule_keeps_the_rules(layer_schedule):
    """Every command starts after it arrived, after its fence's words were counted and after
    its node's previous command; the layer takes at least any node's busy time."""
    prog, s = layer_schedule
    prev = {}
    for c in sorted(s.commands, key=lambda c: (c.node, c.start)):
        assert c.start >= c.arrive >= 0, c.label
        if c.wait:
            assert len(s.write_times[c.node]) >= c.wait
            assert c.start >= s.write_times[c.node][c.wait - 1] == c.fence, c.label
        assert c.start >= prev.get(c.node, 0), c.label
        assert c.end > c.start
        prev[c.node] = c.end
    assert all(s.total_cycles >= b for b in s.busy.values())
    assert s.busy[PIM_NODE] == sum(c.cycles for c in s.commands if c.node == PIM_NODE)
    assert {"qkv", "lora fwd", "attention", "wo", "ln1", "ff1", "gelu", "ff2", "ln2",
            "lora bwd"} <= set(s.phases)
    assert all(c.phase != "other" for c in s.commands)
    assert len(s.host["steps"]) == 3                     # barrier, the two dT shifts


def test_layer_fences_equal_the_golden_counts(layer_schedule):
    """The schedule runs the program's own fences: each equals the words its node had when
    the golden execution ran it, and the schedule leaves the program reusable."""
    prog, s = layer_schedule
    trace = []
    cp.execute(prog, trace=trace)
    assert [(c.label, c.wait) for c in s.commands] == [(t[0], t[2]) for t in trace]
    assert all(w == r for _, _, w, r in trace)


def test_mvm_interval_is_the_tiles(layer_schedule):
    """A PIM MVM of n tokens to the systolic core takes n intervals of the tile (2057 at
    REGRESSION_TILE, one more than mvm_cycles) plus its first token's latency."""
    prog, s = layer_schedule
    (wo,) = [c for c in s.commands if c.label == "o = C Wo"]
    maps = [v[5] for v in prog.tiles["wo"]]
    first, interval, gap = cs.pim_mvm_timing(CHIP.tile, maps, 64, L)
    assert interval == maps[0].cycles_per_mvm() + 1 == 2057
    n = prog.layer.cfg.seq_len
    assert wo.cycles >= first + (n - 1) * interval + gap * (64 // L - 1)


def test_reconcile(layer_schedule):
    prog, s = layer_schedule
    rec = cs.reconcile(prog, s)
    ops = [r["op"] for r in rec["rows"]]
    for name in ("qkv", "x->sys", "lora_fwd", "qkv->sys", "attention", "lora_bwd", "ctx->wo",
                 "wo", "ln1", "->ff1", "ff1", "gelu", "->ff2", "ff2", "ln2"):
        assert name in ops
    for r in rec["rows"]:
        assert r["reason"] and r["reason"] != "not mapped", r["op"]
        assert r["difference"] == r["schedule_cycles"] - r["model_cycles"]
    assert rec["schedule_cycles"] == s.total_cycles
    v = rec["variants"]
    assert v["nl_lanes=1"] > v["as configured"] == rec["model_cycles"]
    assert v["both"] >= v["nl_lanes=1"]
    assert {r["phase"] for r in rec["rtl_only"]} >= {"config", "host steps"}
    n, h = prog.layer.cfg.seq_len, prog.layer.cfg.heads
    assert rec["nonlinear"]["softmax"] == h * (2 + n * systolic_core.nl_row_cycles(
        0, n, max_len=SYS.nl_max_len))


def test_main_prints_the_regression_figures(layer_schedule, capsys):
    """``python -m golden.chip_schedule`` schedules the same regression layer."""
    _, s = layer_schedule
    cs.main([])
    out = capsys.readouterr().out
    assert out.startswith(f"schedule: {s.total_cycles} cycles; time_model: ")


def test_command_queue_depth(layer_schedule):
    """The shell's command queue: with as many entries as the program keeps waiting at a node
    the schedule is unchanged; one fewer holds node 0's receive demux behind a command while
    the fence of the queue's head waits for words behind it: the program never finishes."""
    _, s = layer_schedule
    layer, x, g = regression_case()
    prog = cp.layer_program(layer, x, g)    # fresh: execute() above ran its host steps
    need = max(s.max_queued.values())
    same = cs.schedule(prog, timing=cs.ScheduleTiming(cmd_depth=need))
    assert same.total_cycles == s.total_cycles and not any(same.stalls.values())
    with pytest.raises(RuntimeError, match="full command queue \\(cmd_depth"):
        cs.schedule(prog, timing=cs.ScheduleTiming(cmd_depth=need - 1))
    with pytest.raises(TypeError, match="timing.cmd_depth must be a positive integer or None"):
        cs.schedule(prog, timing=cs.ScheduleTiming(cmd_depth=0))
