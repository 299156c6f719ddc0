"""SystolicCore: cocotb + Verilator regression at the regression chip's size (16x8 array,
L = 32, 2048 words = 1 Mb, the node id on its port):

- one encoder layer's attention (both heads: the Q_h, K_h transposes through the array,
  S^T = (Q_h K_h^T)^T, softmax, P V_h) bit-exact with the taps of
  :class:`golden.transformer.EncoderLayer`, with idle cycles and backpressure;
- every command's cycles against :func:`golden.systolic_core.command_cycles`;
- the systolic core's share of :mod:`golden.chip_program`'s regression layer (forward with
  LoRA and the LoRA gradient GEMMs: its memory writes and commands in program order) with
  every vector it sends equal to the golden core's."""

import os

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from golden import systolic_core as gsc
from golden.chip import REGRESSION_LAYER, REGRESSION_TILE
from golden.transformer import EncoderLayer, random_weights
from hdl.systolic.core import SystolicCore
from hdl.verilog import generate
from tb import runner
from tb.env.systolic_core import CoreBench

# The regression chip's systolic core (golden.chip_program.systolic_config(REGRESSION_CHIP, n)):
# 16x8, L = 32, 1 Mb = 2048 words, the node id from its port.
CONFIG = dict(rows=16, cols=8, length=32, mem_words=2048, node=-1, nodes=8)
HOST, HOST_BASE = 0, 0x8000
# Word addresses: Q, K, V (n x d, 2 words per row), Q_h^T, K_h^T (dh x n), S^T, P^T (n x n),
# the context (n x d).
Q, K, V, QT, KT, ST, PT, CTX = 0, 32, 64, 96, 128, 160, 176, 192


def _layer():
    cfg = REGRESSION_LAYER
    x = np.random.default_rng(1).normal(0, 1, (cfg.seq_len, cfg.d_model))
    layer = EncoderLayer(cfg, random_weights(cfg, 3), tile=REGRESSION_TILE, seed=5)
    formats = layer.calibrate(x)
    _, taps = layer.forward(layer.quantize_input(x), taps=True)
    return cfg, formats, taps


def attention_program(core_cfg, cfg, F):
    """:func:`golden.systolic_core.attention_program` with P^T of each head and then the
    context sent to the host."""
    n, ld = cfg.seq_len, core_cfg.words(cfg.d_model)
    prog = gsc.attention_program(core_cfg, cfg, F, q=Q, k=K, v=V, qt=QT, kt=KT, st=ST, pt=PT,
                                 ctx=CTX, dest=HOST, p_addr=HOST_BASE + 0x100)
    prog.append(gsc.encode_command(core_cfg, "SEND", dest=HOST, dest_addr=HOST_BASE, src=CTX,
                                   count=n * ld))
    return prog


def _words(m, length):
    """A matrix as memory words (rows of ceil(C / L) words)."""
    r, c = m.shape
    w = -(-c // length)
    out = np.zeros((r * w, length), dtype=np.int64)
    for i in range(r):
        out[i * w:(i + 1) * w].reshape(-1)[:c] = m[i]
    return out


async def _run(dut, *, idle, backpressure, seed):
    cfg, F, t = _layer()
    bench = CoreBench(dut, CONFIG, seed=seed, idle=idle, backpressure=backpressure, node_id=1)
    await bench.start()
    L = bench.cfg.length
    for base, name in ((Q, "q"), (K, "k"), (V, "v")):
        bench.write(base, _words(t[name], L))
    await bench.wr.wait_sent()
    program = attention_program(bench.cfg, cfg, F)
    for word in program:
        bench.command(word)
    got = await bench.drain()
    # The vectors are the layer's own tensors: P^T of each head, then the context.
    n, d = cfg.seq_len, cfg.d_model
    for h in range(cfg.heads):
        pt = np.array([v[3][:n] for v in got[h * n:(h + 1) * n]])
        assert np.array_equal(pt.T, t["p"][h]), f"head {h}: P differs from the layer's"
    ctx = np.concatenate([v[3] for v in got[cfg.heads * n:]]).reshape(n, d)
    assert np.array_equal(ctx, t["c"]), "the context differs from the layer's"
    return bench, program


@cocotb.test()
async def attention_bit_exact(dut):
    """Both heads' attention with idle cycles and backpressure, bit-exact."""
    await _run(dut, idle=0.3, backpressure=0.4, seed=int(os.environ["CORE_SEED"]))


@cocotb.test()
async def attention_cycles(dut):
    """Back to back with o always ready: every command takes command_cycles."""
    bench, program = await _run(dut, idle=0.0, backpressure=0.0, seed=1)
    got = np.diff(list(bench.cmd.cycles)).tolist()
    want = [gsc.command_cycles(bench.cfg, c) for c in program[:-1]]
    assert got == want, f"cycles per command: {got}, golden {want}"
    dut._log.info("cycles per command: %s", got)


class _Recorder:
    """A golden core's memory that logs the writes made from outside the core."""

    def __init__(self, memory, log):
        self.array, self.log, self.internal = memory, log, False

    def __getitem__(self, key):
        return self.array[key]

    def __setitem__(self, key, value):
        self.array[key] = value
        if not self.internal:
            value = np.asarray(value, dtype=np.int64).reshape(-1, self.array.shape[1])
            first = key.start if isinstance(key, slice) else key
            self.log += [("w", first + j, w) for j, w in enumerate(value)]


def _layer_program_trace(node):
    """The layer program of golden.chip_program on the regression chip, as the systolic core
    at ``node`` sees it: its memory writes and commands in program order, and what it sent."""
    from golden import chip_program as cp
    from golden.chip import REGRESSION_LAYER, REGRESSION_TILE
    from golden.transformer import EncoderLayer, random_weights

    cfg = REGRESSION_LAYER
    layer = EncoderLayer(cfg, random_weights(cfg, 0), tile=REGRESSION_TILE, seed=1)
    rng = np.random.default_rng(0)
    xf = rng.standard_normal((cfg.seq_len, cfg.d_model))
    layer.calibrate(xf)
    x = layer.quantize_input(xf)
    g = {t: (rng.integers(-128, 128, (cfg.seq_len, cfg.d_model)), 10) for t in cfg.lora_targets}
    log, sent = [], []

    class Core(gsc.Core):
        def __init__(self, c, memory=None):
            super().__init__(c, memory)
            if c.node == node:
                self.memory = _Recorder(self.memory, log)

        def execute(self, command):
            if not isinstance(self.memory, _Recorder):
                return super().execute(command)
            log.append(("c", command))
            self.memory.internal = True
            try:
                super().execute(command)
            finally:
                self.memory.internal = False
            sent.extend(self.sent)

    real = cp.systolic_core.Core
    cp.systolic_core.Core = Core
    try:
        cp.execute(cp.layer_program(layer, x, g))
    finally:
        cp.systolic_core.Core = real
    return log, sent


@cocotb.test()
async def layer_program(dut):
    """The systolic core's share of golden.chip_program's regression layer (forward with
    LoRA, the LoRA gradient GEMMs) replayed in program order: every vector it sends equals
    the golden core's."""
    log, sent = _layer_program_trace(0)
    bench = CoreBench(dut, CONFIG, seed=3, idle=0.1, backpressure=0.2, node_id=0)
    await bench.start()
    commands = 0
    for kind, *item in log:
        if kind == "w":
            bench.write(item[0], [item[1]])
        else:
            await bench.wr.wait_sent()
            bench.command(item[0])
            await bench.cmd.wait_sent()
            commands += 1
            while int(dut.busy.value):
                await RisingEdge(dut.clk)
    await bench.drain()
    assert len(bench.expected) == len(sent) > 0 and commands > 20
    dut._log.info("%d commands, %d vectors sent", commands, len(sent))


def test_systolic_core_verilator():
    verilog = generate(SystolicCore(**CONFIG), "systolic_core")
    runner.run(verilog, "systolic_core", "tb.test_systolic_core_verilator",
               name="systolic_core_16x8_L32", extra_env={"CORE_SEED": 5}, top_only=True)
