"""SystolicCore: cocotb + Verilator regression at the regression chip's size (16x8 array,
L = 32, 512 words), running one encoder layer's attention (both heads: the Q_h, K_h
transposes through the array, S^T = (Q_h K_h^T)^T, softmax, P V_h) bit-exact with the taps of
:class:`golden.transformer.EncoderLayer`, with idle cycles and backpressure; and every
command's cycles against :func:`golden.systolic_core.command_cycles`."""

import os

import cocotb
import numpy as np

from golden import systolic_core as gsc
from golden.chip import REGRESSION_LAYER, REGRESSION_TILE
from golden.transformer import EncoderLayer, random_weights
from hdl.systolic.core import SystolicCore
from hdl.verilog import generate
from tb import runner
from tb.env.systolic_core import CoreBench

CONFIG = dict(rows=16, cols=8, length=32, mem_words=512, node=1, nodes=8, nl_max_len=64)
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
    bench = CoreBench(dut, CONFIG, seed=seed, idle=idle, backpressure=backpressure)
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


def test_systolic_core_verilator():
    verilog = generate(SystolicCore(**CONFIG), "systolic_core")
    runner.run(verilog, "systolic_core", "tb.test_systolic_core_verilator",
               name="systolic_core_16x8_L32", extra_env={"CORE_SEED": 5}, top_only=True)
