# amaranth: UnusedElaboratable=no
"""SystolicCore in the Amaranth simulator against :mod:`golden.systolic_core`: every opcode
with random data, every operand/result layout, K > L and M, N not multiples of the array,
output-stage extremes, idle cycles and backpressure, ``wr`` writes during commands, refused
commands (the next command still runs), reset in mid-command, and the cycles of every
command (:func:`golden.systolic_core.command_cycles`, exact)."""

import itertools

import numpy as np
import pytest
from amaranth.lib import data

from golden import nonlinear as nl
from golden import systolic_core as gsc
from hdl.nonlinear import NonlinearUnit
from hdl.nonlinear import command_layout as nl_command_layout
from hdl.registry import blocks
from hdl.systolic.core import SystolicCore, command_layout
from tb.env.systolic_core import DUMP_NODE, compare_sent, dump, random_memory, run_sim
from tb.packing import pack, width

# 4x2 array, L = 8, 128 words; node 1 of 4.
PARAMS = dict(rows=4, cols=2, length=8, mem_words=128, node=1, nodes=4, nl_max_len=16)
CFG = gsc.CoreConfig(**PARAMS)
E = gsc.encode_command
UNIT = NonlinearUnit(16, out_width=16, max_len=CFG.nl_max_len)
# Regions: A operands in words 0..39, B in 40..79, results in 80..119, wr traffic 120..127.
A0, B0, C0, FREE = 0, 40, 80, 120


def _nl(cmd):
    return dict(cmd, fn=int(cmd["fn"]))


def _check(program, memory, *, writes=(), **kw):
    out = run_sim(PARAMS, program, memory, writes=writes, **kw)
    image = np.array(memory)
    for a, d in writes:
        image[a] = d
    core = gsc.run_core(CFG, program, image)
    compare_sent(out["sent"], core.sent)
    assert out["error"][-1] == core.error
    return out, core


def _random_gemm(rng, *, dest=None):
    while True:
        m, n, k = (int(v) for v in rng.integers(1, [14, 14, 20]))
        eye = rng.random() < 0.15
        if eye:
            m = k = min(m, k)
        g = dict(m=m, n=n, k=k, a_addr=A0, b_addr=B0, c_addr=C0, a_t=int(rng.integers(2)),
                 a_eye=int(eye), b_t=int(rng.integers(2)), c_t=int(rng.integers(2)),
                 out_shift=int(rng.integers(0, 12)),
                 out_width=int(rng.choice([0, 2, 4, 8, 12, 16])))
        for key in ("a_col", "b_col", "c_col"):          # lane offsets, mostly aligned
            if rng.random() < 0.4:
                g[key] = int(rng.integers(0, CFG.length))
                if rng.random() < 0.8:
                    g[key] -= g[key] % (2 * CFG.rows)
        if rng.random() < 0.3:
            g["c_ld"] = CFG.words((m if g["c_t"] else n) * (1 if g["out_width"] else 2)
                                  + g.get("c_col", 0)) + 1
        dest = CFG.node if dest is None else dest
        c = gsc.decode_command(CFG, E(CFG, "GEMM", dest=dest, dest_addr=int(rng.integers(0, 99)),
                                      **g))
        c["body"] = g | {k_: c["body"][k_] for k_ in c["body"] if k_ not in g}
        if gsc.Core(CFG).check(c):
            return E(CFG, "GEMM", dest=dest, dest_addr=c["dest_addr"], **g)


# ---------------------------------------------------------------------------- layout

def test_command_layout_is_the_golden_layout():
    layout = command_layout(CFG)
    assert width(layout) == CFG.command_bits == gsc.field_width(gsc.command_fields(CFG))
    nl_spec = gsc.nl_command_fields(CFG.nl_max_len)
    assert width(nl_command_layout(16, 16, CFG.nl_max_len)) == gsc.field_width(nl_spec)
    rng = np.random.default_rng(0)
    cmds = [UNIT.softmax_command(9, 0.02, out_bits=8),
            UNIT.layernorm_command(7, gamma_frac=9, out_scale_log2=-3),
            UNIT.gelu_command(5, **nl.gelu_constants(0.01, 0.05), out_bits=8),
            UNIT.add_command(4, shift=-2, out_bits=12), UNIT.load_command(3, "beta")]
    for cmd in cmds:
        body = dict(rows=int(rng.integers(1, 9)), in_addr=5, in2_addr=6, out_addr=7, in_t=1,
                    cmd=_nl(cmd))
        word = E(CFG, "NL", layer=3, dest=2, dest_addr=0x8001, **body)
        hw = pack(layout, {"op": 1, "layer": 3, "dest": 2, "dest_addr": 0x8001,
                           "body": {"nl": body}})
        assert word == hw
        assert gsc.decode_command(CFG, word)["body"]["cmd"]["fn"] == int(cmd["fn"])
    g = dict(m=5, n=3, k=70, a_addr=1, b_addr=2, c_addr=3, a_ld=4, b_ld=5, c_ld=6, a_t=1,
             b_t=1, c_t=1, out_shift=31, out_width=16)
    assert E(CFG, "GEMM", **g) == pack(layout, {"op": 0, "layer": 0, "dest": CFG.node,
                                                "dest_addr": 0, "body": {"gemm": g}})
    assert gsc.decode_command(CFG, E(CFG, "GEMM", **g))["body"] == \
        {k: g.get(k, 0) for k in gsc.decode_command(CFG, E(CFG, "GEMM", **g))["body"]}
    # At the chip's sizes the command fits a NoC vector (16 L - 16 bits).
    for L in (32, 128):
        cfg = gsc.CoreConfig(rows=16, cols=8, length=L, nodes=64)
        assert cfg.command_bits <= 16 * L - 16
    with pytest.raises(TypeError, match="body.gemm.m must be an integer from 0 to 65535"):
        E(CFG, "GEMM", m=1 << 16)


# ---------------------------------------------------------------------------- GEMM

@pytest.mark.parametrize("seed", [1, 2])
def test_gemm_random_layouts(seed):
    """Random GEMMs in every operand/result layout (and the identity), local and sent, random
    leading dimensions, with idle commands, backpressure on o and wr writes meanwhile."""
    rng = np.random.default_rng(seed)
    memory = random_memory(CFG, rng, bits=16)        # operands are the low 8 bits
    program = [_random_gemm(rng, dest=int(rng.choice([CFG.node, 2]))) for _ in range(10)]
    program.append(dump(CFG))
    writes = [(FREE + i, rng.integers(-1000, 1000, CFG.length)) for i in range(8)]
    out, core = _check(program, memory, writes=writes, seed=seed, idle=0.3, backpressure=0.4)
    assert not core.error and out["rule_checks"] > 0


def test_gemm_column_offsets():
    """Operands and results starting inside a word (one head's columns): every layout with
    lane offsets, gathered ones unaligned."""
    rng = np.random.default_rng(17)
    memory = random_memory(CFG, rng)
    program = []
    for at, bt, ct, wide in itertools.product((0, 1), repeat=4):
        cols = dict(a_col=4 if at else 3, b_col=2 if not bt else 5,
                    c_col=(8 if wide else 4) if ct else (2 if wide else 7))
        program.append(E(CFG, "GEMM", m=6, n=5, k=7, a_addr=A0, b_addr=B0, c_addr=C0,
                         a_t=at, b_t=bt, c_t=ct, out_shift=2, out_width=0 if wide else 12,
                         dest=2, **cols))
    program.append(E(CFG, "GEMM", m=6, n=5, k=6, b_addr=B0, c_addr=C0, a_eye=1, c_t=1,
                     out_width=16, b_col=6, c_col=4, dest=2))
    _, core = _check(program, memory, seed=18, idle=0.2, backpressure=0.3)
    assert not core.error


def test_gemm_every_layout_and_tiling():
    """All eight A/B/C layouts and the identity on one shape with K > L and M, N not
    multiples of the array."""
    rng = np.random.default_rng(3)
    memory = random_memory(CFG, rng)
    program = []
    for at, bt, ct in itertools.product((0, 1), repeat=3):
        program.append(E(CFG, "GEMM", m=7, n=5, k=11, a_addr=A0, b_addr=B0, c_addr=C0,
                         a_t=at, b_t=bt, c_t=ct, out_shift=4, out_width=8, dest=2,
                         dest_addr=16 * (at * 4 + bt * 2 + ct)))
    program.append(E(CFG, "GEMM", m=9, n=6, k=9, b_addr=B0, c_addr=C0, a_eye=1, c_t=1,
                     out_width=16))
    program.append(dump(CFG, C0, 40))
    _check(program, memory, seed=4, idle=0.2, backpressure=0.3)


def test_output_stage_extremes():
    """Operands at -128 and 127 (and 16-bit memory values: the low 8 bits count), shifts 0
    and acc_width - 1, saturation to 2 and 16 bits, and wide (32-bit) results."""
    memory = np.full((CFG.mem_words, CFG.length), -128)
    memory[B0:B0 + 20] = 127
    memory[B0 + 20:B0 + 40] = 0x7F80                  # low byte -128
    program = []
    for shift, ow in ((0, 16), (0, 2), (31, 16), (31, 2), (1, 16), (7, 8), (15, 3), (0, 0),
                      (31, 0), (5, 0)):
        for b in (B0, B0 + 20):
            program.append(E(CFG, "GEMM", m=5, n=3, k=19, a_addr=A0, b_addr=b, c_addr=C0,
                             a_t=1, c_t=1, out_shift=shift, out_width=ow, dest=2))
    _check(program, memory, seed=5)


def test_lora_forward_and_gradients():
    """The LoRA GEMMs of :mod:`golden.lora` on the core, bit-exact: the forward ``T = X A``,
    ``D = T B``; the gradients ``dB = T^T G``, ``dT = G B^T`` (exact, then requantized with the
    host's data-dependent shift), ``dA = X^T dT_q``, ``dX = dT_q A^T`` as wide (32-bit)
    results."""
    from golden import lora
    n, d, r = 8, 12, 3
    rng = np.random.default_rng(15)
    x, a, b, g = (rng.integers(-128, 128, s) for s in ((n, d), (d, r), (r, d), (n, d)))
    fx, fa, fb, fg = 7, 9, 8, 10
    dq, fd, t, ft = lora.lora_forward(x, fx, a, fa, b, fb)
    grads = lora.lora_backward(x, fx, t, ft, g, fg, a, fa, b, fb)
    sh = fg + fb - grads["f_dT"]
    params = PARAMS | {"mem_words": 256}
    cfg = gsc.CoreConfig(**params)
    X, A, B, G, T, D, DB, DT, DTQ, DA, DX = 0, 16, 28, 34, 50, 58, 74, 83, 91, 99, 111
    core = gsc.Core(cfg)
    for base, mat in ((X, x), (A, a), (B, b), (G, g)):
        core.write_matrix(base, mat)
    memory = core.memory.copy()
    G_ = dict(dest=2)
    program = [
        E(cfg, "GEMM", m=n, n=r, k=d, a_addr=X, b_addr=A, c_addr=T, out_shift=fx + fa - ft,
          out_width=8),                                            # T = X A
        E(cfg, "GEMM", m=n, n=d, k=r, a_addr=T, b_addr=B, c_addr=D, out_shift=ft + fb - fd,
          out_width=16, dest_addr=0x100, **G_),                    # D = T B
        E(cfg, "GEMM", m=r, n=d, k=n, a_addr=T, b_addr=G, c_addr=DB, a_t=1, out_width=0,
          dest_addr=0x200, **G_),                                  # dB = T^T G
        E(cfg, "GEMM", m=n, n=r, k=d, a_addr=G, b_addr=B, c_addr=DT, b_t=1, out_width=0,
          dest_addr=0x300, **G_),                                  # dT = G B^T (exact)
        E(cfg, "GEMM", m=n, n=r, k=d, a_addr=G, b_addr=B, c_addr=DTQ, b_t=1, out_shift=sh,
          out_width=8, dest_addr=0x400, **G_),                     # dT_q
        E(cfg, "GEMM", m=d, n=r, k=n, a_addr=X, b_addr=DTQ, c_addr=DA, a_t=1, out_width=0,
          dest_addr=0x500, **G_),                                  # dA = X^T dT_q
        E(cfg, "GEMM", m=n, n=d, k=r, a_addr=DTQ, b_addr=A, c_addr=DX, b_t=1, out_width=0,
          dest_addr=0x600, **G_),                                  # dX = dT_q A^T
    ]
    out = run_sim(params, program, memory, seed=16, idle=0.2, backpressure=0.3)
    gold = gsc.run_core(cfg, program, memory)
    compare_sent(out["sent"], gold.sent)
    got = {}
    for dest, _, off, vec in out["sent"]:
        got.setdefault(off >> 8, []).append(vec)

    def matrix(key, rows, cols, wide=False):
        words = np.array(got[key])
        w = cfg.words(cols * (2 if wide else 1))
        m_ = words.reshape(rows, w * cfg.length)[:, :cols * (2 if wide else 1)]
        return gsc.join_wide(m_) if wide else m_

    assert np.array_equal(matrix(1, n, d), dq)
    assert np.array_equal(matrix(2, r, d, True), grads["dB"])
    # the exact dT accumulator: the host's shift comes from its largest magnitude
    dt_acc = matrix(3, n, r, True)
    assert sh == max(0, int(np.abs(dt_acc).max()).bit_length() - 7)
    assert np.array_equal(nl.saturate(nl.rshift_round(dt_acc, sh), 8), grads["dT"])
    assert np.array_equal(matrix(4, n, r), grads["dT"])
    assert np.array_equal(matrix(5, d, r, True), grads["dA"])
    assert np.array_equal(matrix(6, n, d, True), grads["dX"])


@pytest.mark.parametrize("d_head", [4, 2])
def test_attention_program(d_head):
    """golden.systolic_core.attention_program on the core equals the layer's attention
    arithmetic (EncoderLayer.forward: the GEMMs' output stages and i_softmax), with heads
    inside a word: lane offsets aligned (d_head 4 = rows: every layout fast) and not
    (d_head 2: the context written per element)."""
    import math

    from golden import systolic
    from golden.transformer import LayerConfig
    heads, n = 8 // d_head, 6
    layer = LayerConfig(d_model=8, heads=heads, d_ff=16, seq_len=n)
    F = {"q": 5, "k": 5, "v": 5, "s": 6, "c": 5}
    rng = np.random.default_rng(19)
    q, k, v = (rng.integers(-128, 128, (n, 8)) for _ in range(3))
    core = gsc.Core(CFG)
    Q, K, V, QT, KT, ST, PT, CTX = 0, 6, 12, 18, 26, 34, 40, 46
    for base, mat in ((Q, q), (K, k), (V, v)):
        core.write_matrix(base, mat)
    memory = core.memory.copy()
    program = gsc.attention_program(CFG, layer, F, q=Q, k=K, v=V, qt=QT, kt=KT, st=ST, pt=PT,
                                    ctx=CTX) + [dump(CFG, CTX, n)]
    out, gold = _check(program, memory, seed=20, idle=0.2, backpressure=0.2)
    assert not gold.error
    ctx = np.zeros((n, 8), dtype=np.int64)
    for h in range(heads):
        sl = slice(h * d_head, (h + 1) * d_head)
        s_ = systolic.output_stage(systolic.gemm(q[:, sl], k[:, sl].T), out_shift=4,
                                   out_width=16)
        p = nl.i_softmax(s_, 2.0 ** -6 / math.sqrt(d_head), out_bits=8)
        ctx[:, sl] = systolic.output_stage(systolic.gemm(p, v[:, sl]), out_shift=7,
                                           out_width=8)
    got = np.array([vec for *_, vec in out["sent"]])[:, :8]
    assert np.array_equal(got, ctx)


# ---------------------------------------------------------------------------- NL and SEND

def test_nl_functions():
    """Softmax, the gamma/beta loads and LayerNorm (a constant row: zero variance), GELU and
    the residual add, with transposed inputs and outputs, local and sent."""
    rng = np.random.default_rng(6)
    memory = random_memory(CFG, rng, bits=12)
    memory[A0 + 30] = 77                              # a constant row for LayerNorm
    g = rng.integers(-3000, 3000, 16)
    memory[B0 + 30], memory[B0 + 31] = g[:8], g[8:]
    memory[B0 + 32] = rng.integers(-50, 50, 8)
    program = [
        E(CFG, "NL", rows=3, in_addr=A0, out_addr=C0, cmd=_nl(UNIT.softmax_command(
            10, 0.01, out_bits=8))),
        E(CFG, "NL", rows=4, in_addr=A0, out_addr=C0 + 8, in_t=1, out_t=1, dest=2,
          dest_addr=0x8000, cmd=_nl(UNIT.softmax_command(12, 0.003, out_bits=8,
                                                          recip_bits=20))),
        E(CFG, "NL", rows=1, in_addr=B0 + 30, cmd=_nl(UNIT.load_command(10, "gamma"))),
        E(CFG, "NL", rows=1, in_addr=B0 + 32, cmd=_nl(UNIT.load_command(8, "beta"))),
        E(CFG, "NL", rows=3, in_addr=A0 + 28, out_addr=C0 + 20, cmd=_nl(
            UNIT.layernorm_command(8, gamma_frac=12, out_scale_log2=-2))),
        E(CFG, "NL", rows=3, in_addr=A0, out_addr=C0 + 24, in_t=1, cmd=_nl(
            UNIT.layernorm_command(10, gamma_frac=12, out_scale_log2=-4, out_bits=10))),
        E(CFG, "NL", rows=5, in_addr=A0, out_addr=C0 + 30, out_t=1, cmd=_nl(
            UNIT.gelu_command(6, **nl.gelu_constants(0.01, 0.02), out_bits=8))),
        E(CFG, "NL", rows=4, in_addr=A0, in2_addr=B0, out_addr=C0 + 36, dest=2, cmd=_nl(
            UNIT.add_command(9, shift=2, out_bits=12))),
        E(CFG, "NL", rows=2, in_addr=C0 + 36, in2_addr=B0, out_addr=C0 + 36, cmd=_nl(
            UNIT.add_command(9, shift=-1, out_bits=16))),         # in place
        dump(CFG, C0, 40),
    ]
    out, core = _check(program, memory, seed=7, idle=0.3, backpressure=0.4)
    assert not core.error


def test_send():
    rng = np.random.default_rng(8)
    memory = random_memory(CFG, rng, bits=16)
    program = [E(CFG, "SEND", dest=d, layer=lay, dest_addr=a, src=s, count=n)
               for d, lay, a, s, n in ((0, 5, 0x8000, 0, 1), (2, 63, 0xFFFE - 7, 120, 7),
                                       (CFG.node, 0, 3, 10, 4), (3, 1, 0, 0, 128))]
    _check(program, memory, seed=9, idle=0.5, backpressure=0.6)


# ---------------------------------------------------------------------------- refusals

def _bad_commands():
    big = CFG.mem_words
    ok = dict(m=5, n=3, k=6, a_addr=A0, b_addr=B0, c_addr=C0, a_t=1, out_width=8)
    return {
        "opcode 3": E(CFG, 3),
        "M zero": E(CFG, "GEMM", **(ok | {"m": 0})),
        "N zero": E(CFG, "GEMM", **(ok | {"n": 0})),
        "K zero": E(CFG, "GEMM", **(ok | {"k": 0})),
        "out_width 1": E(CFG, "GEMM", **(ok | {"out_width": 1})),
        "wide C past memory": E(CFG, "GEMM", **(ok | {"out_width": 0, "c_addr": 124})),
        "out_width 17": E(CFG, "GEMM", **(ok | {"out_width": 17})),
        "out_shift 32": E(CFG, "GEMM", **(ok | {"out_shift": 32})),
        "eye M != K": E(CFG, "GEMM", **(ok | {"a_eye": 1})),
        "A past memory": E(CFG, "GEMM", **(ok | {"a_addr": big - 5})),
        "B past memory": E(CFG, "GEMM", **(ok | {"b_addr": big - 2})),
        "C past memory": E(CFG, "GEMM", **(ok | {"c_addr": big - 2})),
        "huge K": E(CFG, "GEMM", **(ok | {"k": 60000})),
        "small ld": E(CFG, "GEMM", **(ok | {"a_ld": 0, "c_ld": 1, "n": 9})),
        "A^T slice misaligned": E(CFG, "GEMM", **(ok | {"a_col": 2})),
        "B slice misaligned": E(CFG, "GEMM", **(ok | {"b_col": 1})),
        "C^T slice misaligned": E(CFG, "GEMM", **(ok | {"c_t": 1, "c_col": 2})),
        "wide C^T slice misaligned": E(CFG, "GEMM", **(ok | {"c_t": 1, "c_col": 4,
                                                            "out_width": 0})),
        "wide C odd column": E(CFG, "GEMM", **(ok | {"c_col": 3, "out_width": 0})),
        "ld below the slice": E(CFG, "GEMM", **(ok | {"b_col": 6, "b_ld": 1})),
        "dest past nodes": E(CFG, "GEMM", dest=4, **ok),
        "dest_addr at the command port": E(CFG, "GEMM", dest=2, dest_addr=0xFFFE, **ok),
        "NL rows zero": E(CFG, "NL", rows=0, cmd=_nl(UNIT.gelu_command(
            4, **nl.gelu_constants(0.01, 0.02)))),
        "NL length zero": E(CFG, "NL", rows=1, cmd={"fn": 2, "length": 0, "out_bits": 8}),
        "NL length past max_len": E(CFG, "NL", rows=1, cmd={"fn": 2, "length": 17,
                                                           "out_bits": 8}),
        "NL input past memory": E(CFG, "NL", rows=40, in_addr=100, cmd=_nl(
            UNIT.gelu_command(4, **nl.gelu_constants(0.01, 0.02)))),
        "NL output past memory": E(CFG, "NL", rows=4, out_addr=126, cmd=_nl(
            UNIT.gelu_command(9, **nl.gelu_constants(0.01, 0.02)))),
        "NL function 6 (unit refuses)": E(CFG, "NL", rows=3, out_addr=C0,
                                          cmd={"fn": 6, "length": 4, "out_bits": 8}),
        "NL out_bits 1 (unit refuses)": E(CFG, "NL", rows=3, out_addr=C0,
                                          cmd={"fn": 2, "length": 4, "out_bits": 1}),
        "SEND count zero": E(CFG, "SEND", dest=2, src=0, count=0),
        "SEND past memory": E(CFG, "SEND", dest=2, src=120, count=9),
        "SEND dest past nodes": E(CFG, "SEND", dest=200, src=0, count=1),
        "SEND past the offsets": E(CFG, "SEND", dest=2, dest_addr=0xFFFF, src=0, count=1),
    }


@pytest.mark.parametrize("name", list(_bad_commands()))
def test_bad_command_is_refused_and_the_next_runs(name):
    bad = _bad_commands()[name]
    core = gsc.Core(CFG)
    core.execute(bad)
    assert core.error, f"golden accepts {name}"
    rng = np.random.default_rng(10)
    memory = random_memory(CFG, rng)
    good = E(CFG, "GEMM", m=5, n=3, k=6, a_addr=A0, b_addr=B0, c_addr=C0, a_t=1, c_t=1,
             out_width=16, dest=2)
    out, _ = _check([bad, good], memory)
    assert out["error"] == [0, 1, 1]
    assert np.diff(out["cmd_cycles"])[0] == gsc.command_cycles(CFG, bad)


# ---------------------------------------------------------------------------- cycles

def test_cycles_per_command():
    """Back to back, no idle, no backpressure: each command takes exactly
    :func:`golden.systolic_core.command_cycles` from its acceptance to the next one's."""
    rng = np.random.default_rng(11)
    memory = random_memory(CFG, rng, bits=12)
    program = [_random_gemm(rng, dest=int(rng.choice([CFG.node, 2]))) for _ in range(12)]
    program += [E(CFG, "GEMM", m=m, n=n, k=k, a_addr=A0, b_addr=B0, c_addr=C0, a_t=1,
                  c_t=1, out_width=16) for m, n, k in ((8, 4, 1), (4, 2, 1), (12, 6, 3),
                                                       (4, 2, 19), (13, 13, 2))]
    program += list(_bad_commands().values())[:3]
    program += [
        E(CFG, "NL", rows=2, in_addr=A0, out_addr=C0, cmd=_nl(UNIT.softmax_command(9, 0.01))),
        E(CFG, "NL", rows=1, in_addr=A0, cmd=_nl(UNIT.load_command(9, "gamma"))),
        E(CFG, "NL", rows=2, in_addr=A0, out_addr=C0, dest=2, cmd=_nl(
            UNIT.layernorm_command(9, gamma_frac=12, out_scale_log2=-4))),
        E(CFG, "NL", rows=3, in_addr=A0, in2_addr=B0, out_addr=C0, cmd=_nl(
            UNIT.add_command(5, shift=1, out_bits=16))),
        E(CFG, "NL", rows=3, in_addr=A0, out_addr=C0, cmd={"fn": 7, "length": 4}),
        E(CFG, "SEND", dest=2, src=0, count=5),
        E(CFG, "SEND", dest=2, src=0, count=1),
    ]
    out, _ = _check(program, memory, seed=12)
    got = list(np.diff(out["cmd_cycles"]))
    want = [gsc.command_cycles(CFG, c) for c in program[:-1]]
    assert got == want
    # The fast layouts: the array's own schedule plus 4.
    g = gsc.decode_command(CFG, program[12])["body"]
    assert got[12] == gsc.systolic.cycle_model(gsc.gemm_fold_ks(CFG, g), 4, 2)["cycles"] + 4


# ---------------------------------------------------------------------------- reset

@pytest.mark.parametrize("phase", [3, 20, 45, 90])
def test_reset_mid_command(phase):
    """A reset ``phase`` cycles into a GEMM (or an NL command) drops it; the core then runs
    the next program as from power-on (memory kept, error cleared)."""
    rng = np.random.default_rng(13 + phase)
    memory = random_memory(CFG, rng, bits=12)
    first = [E(CFG, "GEMM", m=13, n=9, k=19, a_addr=A0, b_addr=B0, c_addr=C0, out_width=16),
             E(CFG, "NL", rows=4, in_addr=A0, out_addr=C0, cmd=_nl(
                 UNIT.softmax_command(16, 0.01)))][phase % 2]

    async def prelude(ctx, dut, rst):
        ctx.set(dut.cmd.valid, 1)
        ctx.set(dut.cmd.payload.as_value(), E(CFG, 3))       # refused: sets error
        await ctx.tick()
        ctx.set(dut.cmd.payload.as_value(), first)
        await ctx.tick().until(dut.cmd.ready)
        ctx.set(dut.cmd.valid, 0)
        for _ in range(phase):
            await ctx.tick()
        assert ctx.get(dut.busy) and ctx.get(dut.error)
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        assert not ctx.get(dut.busy) and not ctx.get(dut.error)

    program = [E(CFG, "GEMM", m=6, n=5, k=9, a_addr=A0, b_addr=B0, c_addr=C0 + 20, a_t=1,
                 out_shift=3, out_width=8, dest=2), dump(CFG, A0, 80)]
    out = run_sim(PARAMS, program, memory, prelude=prelude, seed=phase)
    core = gsc.run_core(CFG, program, memory)
    compare_sent(out["sent"], core.sent)
    assert out["error"] == [0, 0, 0]


# ---------------------------------------------------------------------------- parameters

def test_node_id_port():
    """With ``node=-1`` the node id is an input: a result for that node stays local, others
    are sent (here the same program as node 2 and as node 1)."""
    rng = np.random.default_rng(14)
    memory = random_memory(CFG, rng)
    params = PARAMS | {"node": -1}
    program = [E(CFG, "GEMM", m=5, n=3, k=9, a_addr=A0, b_addr=B0, c_addr=C0, a_t=1, c_t=1,
                 out_width=16, dest=d, dest_addr=7) for d in (1, 2)] + [dump(CFG, C0, 4)]
    for node in (1, 2):
        out = run_sim(params, program, memory, node_id=node)
        core = gsc.run_core(gsc.CoreConfig(**(PARAMS | {"node": node})), program, memory)
        compare_sent(out["sent"], core.sent)
        assert [v[0] for v in out["sent"][:1]] == [3 - node]


def test_registered_and_sized():
    assert blocks()["systolic_core"].cls is SystolicCore
    full = SystolicCore()
    assert (full.rows, full.cols, full.length, full.mem_words) == (128, 32, 128, 512)
    assert full.node == -1 and "node_id" in full.signature.members
    assert SystolicCore(16, 8, length=32, sram_bits=1 << 16).mem_words == 128
    assert full.command_bits <= 16 * full.length - 16


@pytest.mark.parametrize("kw, exc, match", [
    (dict(rows=3), TypeError, "rows must be a power of two, not 3"),
    (dict(rows=4, cols=8, length=8), ValueError, r"cols \(8\) must not exceed rows \(4\)"),
    (dict(rows=16, cols=8, length=8), ValueError, r"rows \(16\) must divide length \(8\)"),
    (dict(rows=4, cols=2, length=8, mem_words=40000), TypeError,
     "mem_words must be an integer from 1 to 32768"),
    (dict(rows=4, cols=2, length=8, mem_words=-1), TypeError,
     "mem_words must be a non-negative integer"),
    (dict(rows=4, cols=2, length=8, node=4, nodes=4), TypeError,
     "node must be an integer from -1 to 3, not 4"),
    (dict(rows=4, cols=2, length=8, nl_lanes=128), ValueError,
     r"nl_lanes must be 1 \(the core has one NonlinearUnit, one element per cycle\), not 128"),
    (dict(rows=4, cols=2, ni=32), TypeError, "ni must be a golden.network_interface.NiConfig"),
    (dict(rows=4, cols=2, nii=32), TypeError,
     r"SystolicCore got unexpected keyword arguments \['nii'\]"),
    (dict(rows=4, cols=2, length=8, sram_bits=64), ValueError,
     r"sram_bits \(64\) must hold at least one word"),
])
def test_parameter_errors(kw, exc, match):
    with pytest.raises(exc, match=match):
        SystolicCore(**kw)


def test_ni_config():
    """``ni=`` (the chip's NiConfig) sets L, the nodes and the tag widths."""
    from golden.network_interface import NiConfig
    ni = NiConfig(payload_width=32, elem_width=16, length=32, nodes=8)
    core = SystolicCore(16, 8, ni=ni, mem_words=512)
    assert core.ni == ni and core.length == 32 and core.nodes == 8
    assert data.Layout.cast(core.wr.payload.shape()).size == 9 + 16 * 32
    with pytest.raises(ValueError, match="ni.elem_width must be 16, not 8"):
        SystolicCore(16, 8, ni=NiConfig(length=32), mem_words=512)


def test_golden_nl_fields_are_the_unit_builders():
    """golden.systolic_core's NL command fields equal NonlinearUnit's command builders."""
    g = nl.gelu_constants(0.01, 0.05)
    pairs = [
        (gsc.nl_softmax(9, 0.02, out_bits=8), UNIT.softmax_command(9, 0.02, out_bits=8)),
        (gsc.nl_softmax(16, 1e-4, recip_bits=40), UNIT.softmax_command(16, 1e-4,
                                                                       recip_bits=40)),
        (gsc.nl_layernorm(7, gamma_frac=9, out_scale_log2=-3, out_bits=12),
         UNIT.layernorm_command(7, gamma_frac=9, out_scale_log2=-3, out_bits=12)),
        (gsc.nl_gelu(5, **g, out_bits=8), UNIT.gelu_command(5, **g, out_bits=8)),
        (gsc.nl_add(4, shift=-2, out_bits=12), UNIT.add_command(4, shift=-2, out_bits=12)),
        (gsc.nl_load(3, "beta"), UNIT.load_command(3, "beta")),
    ]
    for ours, unit in pairs:
        assert ours == _nl(unit)
    with pytest.raises(TypeError, match="which must be one of 'gamma', 'beta', not 'x'"):
        gsc.nl_load(3, "x")
