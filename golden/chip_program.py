"""One encoder layer with LoRA as a host program for the chip RTL (:class:`hdl.chip.AtleusChip`),
and its golden execution on the golden core models.

:func:`layer_program` compiles one :class:`golden.transformer.EncoderLayer` forward pass and
the LoRA gradient GEMMs of one training step into the host's side of the chip's protocol
(``/hdl/chip``: vectors tagged with the destination core's word address; the top offset is
the core's command port, whose vector carries a 16-bit ``wait`` fence and the command):

- :class:`Write`: the host writes words into a core's memory (activations, LoRA weights,
  LayerNorm constants, the upstream gradients);
- :class:`Command`: a command for one core (:mod:`golden.systolic_core` or
  :mod:`golden.pim_core` encoding) with its fence, the number of words that core must have
  received before it runs;
- :class:`Read`: a result the host expects in its window (node 0, offsets from
  ``HOST_FIRST``);
- :class:`HostStep`: work the RTL leaves to the host, run when its reads are in (the
  data-dependent requantization shift of ``dT``, :func:`golden.lora.lora_backward`; the
  barrier below), which returns more steps.

Fences count words, so they are sound only if the words a node receives arrive in program
order. Every node's writers are causally ordered: the host writes the systolic core's
operands first and waits for the core to echo one word (a barrier) before it writes ``x``,
after which each node's words come from one core at a time, each batch caused by the
previous one (the QKV core's outputs, then ``f2`` from the FF2 core only after ``g``, which
needed all of ``f1``), so a fence never passes on a later word while an earlier is missing.

:func:`execute` runs a program on the golden core models (:class:`golden.systolic_core.Core`,
:class:`golden.pim_core.PimCoreModel`) in program order and returns what reached the host;
``tb/test_golden_chip_program.py`` checks it equals the layer's own tensors
(:meth:`EncoderLayer.forward` taps, :func:`golden.lora.lora_backward`) bit for bit, so the
RTL run (``tb/test_chip_layer_verilator.py``, :mod:`tb.bench.chip`) only has to equal it.

The dataflow, on :func:`golden.chip.map_model`'s placement (``W^QKV``, ``W^O`` and ``W^F1``
on one ReRAM core, ``W^F2`` on another, the systolic core of the column doing the rest):

====================  ==========================  =====================================
tensor                where                       how
====================  ==========================  =====================================
``x`` in               host -> QKV core            the layer input
``q', k, v'``          QKV core -> systolic        one MVM per target (its own shift)
``T = X A``, ``(T)B``  systolic                    LoRA forward (x sent by the QKV core)
``q, v``               systolic                    ADD: ``sat(D + q')``
``S, P, C``            systolic                    per head: GEMM, softmax, GEMM
``o``                  systolic -> W^O core -> sys  MVM
``r1, h``              systolic                    ADD, LayerNorm
``f1``                 sys -> W^F1 core -> sys      MVM (+ ADD for a left shift)
``g``                  systolic                    GELU
``f2, r2, y``          sys -> W^F2 core -> sys      MVM, ADD, ADD, LayerNorm; ``y`` to host
``dB, dT, dA``         systolic (+ host)           LoRA gradient GEMMs; dT's shift on host
====================  ==========================  =====================================

Choices (the chip has no wider path for them):

- A tile output is requantized in the PIM core, ``saturate(rshift_round(y, s), 16)``; the
  systolic core's nonlinear unit takes 16-bit elements. The layer's
  ``saturate(rshift_round(y, s) + D, bits)`` then equals ``saturate(sat16(rshift_round(y,
  s)) + D, bits)`` unless ``|rshift_round(y, s)|`` reaches ``2**15`` with a LoRA term of the
  opposite sign (the program refuses a layer where it would happen: :func:`execute` compares
  with the layer).
- A negative shift (a finer output format than the product's) is a saturating left shift by
  the nonlinear unit's ADD (``sat16(y) << -s`` saturates exactly as ``y << -s`` does).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from . import nonlinear as nl
from . import pim_core, systolic_core
from .chip import ChipConfig, map_model
from .lora import lora_backward
from .network_interface import NiConfig
from .transformer import EncoderLayer

__all__ = ["Write", "Command", "Read", "HostStep", "Program", "layer_program", "execute",
           "HOST_FIRST", "expected_results", "chip_ni", "systolic_config", "pim_config"]

#: First offset of the host's window at node 0 (``hdl.chip.node.HOST_FIRST``).
HOST_FIRST = 0x8000
#: Width of the fence field of a command vector.
WAIT_BITS = 16


@dataclass(frozen=True)
class Write:
    """Host -> ``node``: ``words`` (``(count, L)``) at word addresses ``addr ..``."""
    node: int
    addr: int
    words: np.ndarray
    label: str = ""


@dataclass(frozen=True)
class Command:
    """A command for ``node`` (``kind`` "systolic" or "pim"), run once the node has received
    ``wait`` words (the fence)."""
    node: int
    kind: str
    word: int
    wait: int
    label: str = ""


@dataclass(frozen=True)
class Read:
    """A ``rows x cols`` matrix the host receives at host offsets ``addr ..`` (row-major;
    ``wide``: 32-bit values, two 16-bit elements each, :func:`golden.systolic_core.split_wide`)."""
    name: str
    addr: int
    rows: int
    cols: int
    wide: bool = False


@dataclass
class HostStep:
    """Host work: ``fn(reads)`` (``{name: matrix}`` of the named reads) returns more steps."""
    needs: tuple
    fn: object
    label: str = ""


@dataclass
class Program:
    """A compiled layer: ``steps`` in program order, the ``placement`` of each matrix's tiles
    (``{matrix: [(node, tile, r0, c0, mapping, step0)]}``), the configurations of the cores
    and the memory each node needs (``mem_words``)."""
    chip: ChipConfig
    layer: EncoderLayer
    steps: list
    tiles: dict
    sys_cfg: dict
    pim_cfg: dict
    mem_words: dict = field(default_factory=dict)
    reads: dict = field(default_factory=dict)


def chip_ni(chip):
    """The chip's :class:`NiConfig`: 16-bit elements, ``max(tile.rows, systolic_rows)`` per
    vector."""
    length = max(chip.tile.rows, chip.systolic_rows)
    return NiConfig(payload_width=chip.flit_bits, elem_width=16, length=length,
                    nodes=chip.dims[0] * chip.dims[1] * chip.dims[2], layer_bits=6,
                    stage_bits=4, offset_bits=16)


def systolic_config(chip, node):
    """The :class:`golden.systolic_core.CoreConfig` of the chip's systolic core at ``node``
    (``hdl.chip.AtleusChip.core_spec``: memory ``systolic_sram_bits`` of ``16 L``-bit words,
    at most ``HOST_FIRST``; the nonlinear unit's default row buffer)."""
    ni = chip_ni(chip)
    words = min(HOST_FIRST, systolic_core.sram_words(chip.systolic_sram_bits, ni.length))
    return systolic_core.CoreConfig(rows=chip.systolic_rows, cols=chip.systolic_cols,
                                    length=ni.length, mem_words=words, node=node,
                                    nodes=ni.nodes, acc_width=chip.acc_width)


def pim_config(chip):
    """The :class:`golden.pim_core.CoreConfig` of the chip's ReRAM cores."""
    return pim_core.CoreConfig(tiles=chip.tiles_per_core, tile=chip.tile, ni=chip_ni(chip),
                               mem_words=chip.pim_mem_words)


def _words(x, length):
    return pim_core.matrix_words(x, length)


class _Builder:
    def __init__(self, chip, layer):
        self.chip, self.layer = chip, layer
        self.ni = chip_ni(chip)
        self.L = self.ni.length
        self.steps = []
        self.received = {}           # node -> words written into it so far (program order)
        self.top = {}                # node -> next free word
        self.host_top = HOST_FIRST
        self.reads = {}

    def wpr(self, cols):
        return -(-cols // self.L)

    def alloc(self, node, rows, cols):
        a = self.top.get(node, 0)
        self.top[node] = a + rows * self.wpr(cols)
        return a

    def write(self, node, matrix, label):
        matrix = np.asarray(matrix, dtype=np.int64)
        addr = self.alloc(node, *matrix.shape)
        words = _words(matrix, self.L)
        self.steps.append(Write(node, addr, words, label))
        self.received[node] = self.received.get(node, 0) + len(words)
        return addr

    def sent(self, dest, count):
        if dest != HOST:
            self.received[dest] = self.received.get(dest, 0) + count

    def command(self, node, kind, word, label):
        self.steps.append(Command(node, kind, word, self.received.get(node, 0) % (1 << WAIT_BITS),
                                  label))

    def host_read(self, name, rows, cols, wide=False):
        a = self.host_top
        self.host_top += rows * self.wpr(cols * (2 if wide else 1))
        self.reads[name] = Read(name, a, rows, cols, wide)
        self.steps.append(self.reads[name])
        return a


HOST = -1


def layer_program(layer, x, grads=None, *, chip=None):
    """Compile ``layer`` (formats calibrated) on input ``x`` (``(seq_len, d_model)`` ints in
    the ``"x"`` format) into a :class:`Program` for ``chip`` (default
    :data:`golden.chip.REGRESSION_CHIP`).

    ``grads``: ``{target: (G, f_G)}`` upstream gradients of the LoRA targets' projection
    outputs (8-bit ints, ``(seq_len, d_model)``); the program then also computes each
    target's ``dB``, ``dT`` and ``dA`` (:func:`golden.lora.lora_backward`).
    """
    from .chip import REGRESSION_CHIP
    chip = REGRESSION_CHIP if chip is None else chip
    if not isinstance(layer, EncoderLayer):
        raise TypeError(f"layer must be a golden.transformer.EncoderLayer, not {layer!r}")
    if layer.formats is None:
        raise ValueError("layer.formats must be set (EncoderLayer.calibrate) before compiling")
    cfg = layer.cfg
    x = np.asarray(x, dtype=np.int64)
    F = layer.formats
    n, d, dh, dff = cfg.seq_len, cfg.d_model, cfg.d_head, cfg.d_ff
    b = _Builder(chip, layer)
    L = b.L
    placement = map_model(cfg, chip)
    tiles_of = {}
    per_core = {}
    steps0 = {"wqkv": 0, "wo": n, "w1": 2 * n, "w2": 3 * n}     # EncoderLayer's read steps
    chunks = {m: list(layer.chunks(m)) for m in steps0}
    for t in placement.layer_tiles[0]:
        k = len([1 for v in tiles_of.get(t.matrix, [])])
        rs, cs, mapping = chunks[t.matrix][k]
        slot = per_core.get(t.core, 0)
        per_core[t.core] = slot + 1
        tiles_of.setdefault(t.matrix, []).append(
            (t.core, slot, rs.start, cs.start, cs.stop, mapping, steps0[t.matrix]))
    sys_node = placement.layer_columns[0][0]
    sys_node = chip.node(sys_node[0], sys_node[1], 0)
    pim_nodes = sorted({v[0] for vs in tiles_of.values() for v in vs})
    scfg = systolic_config(chip, sys_node)
    pcfg = pim_config(chip)

    def sys(op, label, *, dest=None, dest_addr=0, **body):
        b.command(sys_node, "systolic",
                  systolic_core.encode_command(scfg, op, layer=0,
                                               dest=sys_node if dest is None else dest,
                                               dest_addr=dest_addr, **body), label)

    def pim(node, op, label, **fields):
        b.command(node, "pim", pim_core.encode_command(pcfg, op, **fields), label)

    def gemm(label, m, nn, k, a, b_, c, *, a_t=0, b_t=0, c_t=0, a_ld=0, b_ld=0, c_ld=0,
             shift, width, dest=None, dest_addr=0):
        sys("GEMM", label, dest=dest, dest_addr=dest_addr, m=m, n=nn, k=k, a_addr=a, b_addr=b_,
            c_addr=c, a_ld=a_ld, b_ld=b_ld, c_ld=c_ld, a_t=a_t, b_t=b_t, c_t=c_t,
            out_shift=shift, out_width=width)

    def nlc(label, fn_cmd, rows, src, out, *, src2=0, ld=0, out_ld=0, dest=None, dest_addr=0):
        sys("NL", label, dest=dest, dest_addr=dest_addr, rows=rows, in_addr=src, in2_addr=src2,
            out_addr=out, in_ld=ld, out_ld=out_ld, cmd=fn_cmd)

    add_cmd = systolic_core.nl_add

    # ---- configuration: every tile of the layer (CONFIG commands, no fence needed)
    for m, vs in tiles_of.items():
        for node, slot, r0, c0, c1, mapping, _ in vs:
            for w in pim_core.tile_commands(pcfg, slot, mapping, r0, 0 if m == "wqkv" else c0):
                b.command(node, "pim", w, f"config {m} tile {slot}")
    # ---- host writes (all before any command that could write into the same node)
    qkv_node = tiles_of["wqkv"][0][0]
    lora = {}
    for lt in cfg.lora_targets if cfg.lora_rank else ():
        ai, fa, bi, fb = layer.lora_operands(lt)
        lora[lt] = (b.write(sys_node, ai, f"A_{lt}"), fa, b.write(sys_node, bi, f"B_{lt}"), fb,
                    ai, bi)
    lnc = {}
    for i, tname in ((1, "h"), (2, "y")):
        c = nl.layernorm_constants(layer.weights[f"ln{i}_g"], layer.weights[f"ln{i}_b"],
                                   2.0 ** -F[tname])
        lnc[i] = (b.write(sys_node, c["gamma_q"][None], f"gamma{i}"),
                  b.write(sys_node, c["beta_q"][None], f"beta{i}"), c)
    zeros = b.write(sys_node, np.zeros((n, dff), dtype=np.int64), "zeros")   # ADD's 0 operand
    g_addr = {}
    for lt, (gm, fg) in (grads or {}).items():
        g_addr[lt] = (b.write(sys_node, gm, f"G_{lt}"), fg)
    # Barrier: the systolic core echoes one word once the host's words are in, so nothing a
    # core sends it later can be counted by a fence before them (see the module docstring).
    echo = b.host_read("barrier", 1, L)
    sys("SEND", "barrier", dest=0, dest_addr=echo, src=0, count=1)
    cut = len(b.steps)
    x_pim = b.write(qkv_node, x, "x")

    def mvm(matrix, node_in_addr, in_cols, tiles, out_cols, shift, bits, dest, dest_addr, label):
        node = tiles[0][0]
        mask = sum(1 << v[1] for v in tiles)
        words = n * b.wpr(out_cols)
        pim(node, pim_core.Op.MVM, label, mask=mask, tokens=n, in_addr=node_in_addr,
            in_words=b.wpr(in_cols), out_cols=out_cols, to_o=1, dest=dest, dest_addr=dest_addr,
            layer=0, out_shift=shift, out_bits=bits)
        b.sent(dest, words)

    def requant(y_addr, cols, shift, bits, label):
        """``sat(rshift_round(y, shift), bits)`` of an ``n x cols`` matrix at the systolic core
        whose PIM core could only saturate it to 16 bits (``shift < 0``)."""
        out = b.alloc(sys_node, n, cols)
        nlc(label, add_cmd(cols, shift=shift, out_bits=bits), n, zeros, out, src2=y_addr)
        return out

    def projection(matrix, tiles, in_node_addr, in_cols, out_cols, fin, target, bits, label):
        """``_projection_out`` without LoRA: returns the systolic address of the result."""
        s = layer.out_frac_bits(matrix) + fin - F[target]
        dst = b.alloc(sys_node, n, out_cols)
        if s >= 0:
            mvm(matrix, in_node_addr, in_cols, tiles, out_cols, s, bits, sys_node, dst, label)
            return dst
        mvm(matrix, in_node_addr, in_cols, tiles, out_cols, 0, 16, sys_node, dst, label)
        return requant(dst, out_cols, s, bits, label + " (left shift)")

    # ---- Q, K, V on the tiles; x to the systolic core for the adapters
    fx = F["x"]
    qkv = {}
    x_sys = None
    if lora:
        x_sys = b.alloc(sys_node, n, d)
        pim(qkv_node, pim_core.Op.SEND, "x->sys", in_addr=x_pim, tokens=n * b.wpr(d),
            dest=sys_node, dest_addr=x_sys, layer=0)
        b.sent(sys_node, n * b.wpr(d))
    for i, t in enumerate("qkv"):
        tile = [v for v in tiles_of["wqkv"] if v[3] == i * d]
        if t in lora:
            s = layer.out_frac_bits("wqkv") + fx - F[t]
            if s < 0:
                raise ValueError(f"the {t} projection needs a left shift ({s}) before its LoRA add")
            dst = b.alloc(sys_node, n, d)
            mvm("wqkv", x_pim, d, tile, d, s, 16, sys_node, dst, f"{t}' = x W{t}")
            qkv[t] = ("pre", dst)
        else:
            qkv[t] = ("done", projection("wqkv", tile, x_pim, d, d, fx, t, cfg.act_bits,
                                         f"{t} = x W{t}"))
    # ---- LoRA forward and the adds
    t_addr = {}
    for t, (a_addr, fa, b_addr, fb, ai, bi) in lora.items():
        r = cfg.lora_rank
        ft = F["t" + t]
        ta = b.alloc(sys_node, n, r)
        gemm(f"T_{t} = X A", n, r, d, x_sys, a_addr, ta, shift=fx + fa - ft, width=cfg.act_bits)
        t_addr[t] = (ta, ft)
        da = b.alloc(sys_node, n, d)
        gemm(f"D_{t} = T B", n, d, r, ta, b_addr, da, shift=ft + fb - F[t], width=cfg.res_bits)
        out = b.alloc(sys_node, n, d)
        nlc(f"{t} = sat(D + {t}')", add_cmd(d, shift=0, out_bits=cfg.act_bits), n, da, out, src2=qkv[t][1])
        qkv[t] = ("done", out)
    q, k, v = (qkv[t][1] for t in "qkv")
    # ---- attention, per head
    wpr_d = b.wpr(d)
    if dh % L and L % dh:
        raise ValueError(f"d_head ({dh}) and the vector length ({L}) must divide one another")
    ctx = b.alloc(sys_node, n, d)
    s_scale = 2.0 ** -F["s"] / math.sqrt(dh)
    pf = cfg.act_bits - 1
    for h in range(cfg.heads):
        if (h * dh) % L:
            raise ValueError("each head must start at a word boundary (d_head a multiple of L)")
        off = h * dh // L
        s_addr = b.alloc(sys_node, n, n)
        gemm(f"S_{h} = Q K^T", n, n, dh, q + off, k + off, s_addr, a_ld=wpr_d, b_t=1, b_ld=wpr_d,
             shift=F["q"] + F["k"] - F["s"], width=cfg.score_bits)
        p_addr = b.alloc(sys_node, n, n)
        soft = systolic_core.nl_softmax(n, s_scale, out_bits=cfg.act_bits)
        nlc(f"P_{h} = softmax(S_{h})", soft, n, s_addr, p_addr)
        gemm(f"C_{h} = P V", n, dh, n, p_addr, v + off, ctx + off, b_ld=wpr_d, c_ld=wpr_d,
             shift=pf + F["v"] - F["c"], width=cfg.act_bits)
    def to_host(name, src, rows, cols, wide=False):
        """A result to the host: a SEND into the host window (the systolic core keeps a
        result for its own node, which at node 0 is also the host's)."""
        a = b.host_read(name, rows, cols, wide)
        count = rows * b.wpr(cols * (2 if wide else 1))
        sys("SEND", f"{name} -> host", dest=0, dest_addr=a, src=src, count=count)

    # ---- W^O, residual, LayerNorm 1
    wo_tiles = tiles_of["wo"]
    wo_node = wo_tiles[0][0]
    ctx_pim = b.alloc(wo_node, n, d)
    sys("SEND", "ctx->wo", dest=wo_node, dest_addr=ctx_pim, src=ctx, count=n * wpr_d)
    b.sent(wo_node, n * wpr_d)
    o = projection("wo", wo_tiles, ctx_pim, d, d, F["c"], "r1", cfg.res_bits, "o = C Wo")
    r1 = b.alloc(sys_node, n, d)
    nlc("r1 = o + x", add_cmd(d, shift=fx - F["r1"], out_bits=cfg.res_bits), n, o, r1,
        src2=x_sys if x_sys is not None else b.write(sys_node, x, "x (residual)"))

    def layernorm(i, src, out_bits, tname, label, **send):
        g_a, b_a, c = lnc[i]
        nlc(f"gamma{i}", systolic_core.nl_load(d, "gamma"), 1, g_a, 0)
        nlc(f"beta{i}", systolic_core.nl_load(d, "beta"), 1, b_a, 0)
        out = b.alloc(sys_node, n, d)
        nlc(label, systolic_core.nl_layernorm(d, gamma_frac=c["gamma_frac"],
                                              out_scale_log2=-F[tname], out_bits=out_bits),
            n, src, out, **send)
        return out

    hh = layernorm(1, r1, cfg.act_bits, "h", "h = LayerNorm(r1)")
    # ---- FF1, GELU, FF2, residual, LayerNorm 2
    w1_tiles = tiles_of["w1"]
    w1_node = w1_tiles[0][0]
    h_pim = b.alloc(w1_node, n, d)
    sys("SEND", "h->ff1", dest=w1_node, dest_addr=h_pim, src=hh, count=n * wpr_d)
    b.sent(w1_node, n * wpr_d)
    f1 = projection("w1", w1_tiles, h_pim, d, dff, F["h"], "f1", cfg.res_bits, "f1 = h W1")
    gc = nl.gelu_constants(2.0 ** -F["f1"], 2.0 ** -F["g"])
    w2_tiles = tiles_of["w2"]
    w2_node = w2_tiles[0][0]
    g_pim = b.alloc(w2_node, n, dff)
    g_sys = b.alloc(sys_node, n, dff)
    nlc("g = GELU(f1)", systolic_core.nl_gelu(dff, **gc, out_bits=cfg.act_bits), n, f1, g_sys)
    sys("SEND", "g->ff2", dest=w2_node, dest_addr=g_pim, src=g_sys, count=n * b.wpr(dff))
    b.sent(w2_node, n * b.wpr(dff))
    f2 = projection("w2", w2_tiles, g_pim, dff, d, F["g"], "r2", cfg.res_bits, "f2 = g W2")
    r2 = b.alloc(sys_node, n, d)
    nlc("r2 = f2 + h", add_cmd(d, shift=F["h"] - F["r2"], out_bits=cfg.res_bits), n, f2, r2, src2=hh)
    y_sys = layernorm(2, r2, cfg.act_bits, "y", "y = LayerNorm(r2)")
    to_host("y", y_sys, n, d)
    # ---- LoRA gradients of one training step
    r = cfg.lora_rank
    later = []
    for t, (ga, fg) in g_addr.items():
        a_addr, fa, b_addr, fb, ai, bi = lora[t]
        ta, ft = t_addr[t]
        db = b.alloc(sys_node, r, 2 * d)
        gemm(f"dB_{t} = T^T G", r, d, n, ta, ga, db, a_t=1, shift=0, width=0)
        to_host(f"dB_{t}", db, r, d, wide=True)
        dta = b.alloc(sys_node, n, 2 * r)
        gemm(f"dT_{t} = G B^T", n, r, d, ga, b_addr, dta, b_t=1, shift=0, width=0)
        to_host(f"dTacc_{t}", dta, n, r, wide=True)
        dt_sys = b.alloc(sys_node, n, r)
        da_sys = b.alloc(sys_node, d, 2 * r)
        da_host = b.host_read(f"dA_{t}", d, r, wide=True)
        phase2 = _Phase2(b, sys_node, t, dt_sys, x_sys, da_sys, da_host, n, d, r, chip, scfg,
                         cfg.act_bits)
        later.append(HostStep((f"dTacc_{t}",), phase2, f"dT_{t}: the max-reduction shift"))
    # The host steps run last, in order: each one's dT words are counted here, once, so a
    # program can be run any number of times.
    for st in later:
        b.received[sys_node] = b.received.get(sys_node, 0) + n * b.wpr(r)
        st.fn.wait = b.received[sys_node] % (1 << WAIT_BITS)
    b.steps += later
    rest = b.steps[cut:]
    steps = b.steps[:cut] + [HostStep(("barrier",), _Continue(rest), "barrier")]
    for node, top in b.top.items():
        words = scfg.mem_words if node == sys_node else pcfg.mem_words
        if top > words:
            raise ValueError(f"the layer needs {top} words at node {node}, which has {words}")
    prog = Program(chip, layer, steps, tiles_of, {sys_node: scfg}, {p: pcfg for p in pim_nodes},
                   mem_words=dict(b.top), reads=b.reads)
    return prog


class _Continue:
    """A host step that only waits for its reads, then goes on with ``steps``."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, reads):
        return list(self.steps), {}


class _Phase2:
    """The host's part of the LoRA backward: ``dT = sat(rshift_round(dT_acc, sh), bits)`` with
    ``sh`` from ``dT_acc``'s largest magnitude (:func:`golden.lora.lora_backward`), then
    ``dA = X^T dT`` on the chip."""

    def __init__(self, b, node, t, dt_sys, x_sys, da_sys, da_host, n, d, r, chip, scfg, bits):
        self.args = (b, node, t, dt_sys, x_sys, da_sys, da_host, n, d, r, chip, scfg, bits)
        self.wait = None      # the dA fence, set when the program is complete

    def __call__(self, reads):
        b, node, t, dt_sys, x_sys, da_sys, da_host, n, d, r, chip, scfg, bits = self.args
        acc = reads[f"dTacc_{t}"]
        sh = max(0, int(np.abs(acc).max(initial=0)).bit_length() - (bits - 1))
        dt = nl.saturate(nl.rshift_round(acc, sh), bits)
        words = _words(dt, b.L)
        steps = [Write(node, dt_sys, words, f"dT_{t}")]
        word = systolic_core.encode_command(
            scfg, "GEMM", layer=0, dest=node, dest_addr=0, m=d, n=r, k=n, a_addr=x_sys,
            b_addr=dt_sys, c_addr=da_sys, a_ld=0, b_ld=0, c_ld=0, a_t=1, b_t=0, c_t=0,
            out_shift=0, out_width=0)
        wait = self.wait
        steps.append(Command(node, "systolic", word, wait, f"dA_{t} = X^T dT"))
        send = systolic_core.encode_command(scfg, "SEND", layer=0, dest=0, dest_addr=da_host,
                                            src=da_sys, count=d * b.wpr(2 * r))
        steps.append(Command(node, "systolic", send, wait, f"dA_{t} -> host"))
        return steps, {f"sh_{t}": sh}


def execute(program, *, trace=None, on_command=None):
    """Run ``program`` on the golden core models in program order: ``{read name: matrix}``
    (and ``"host"``: the host step outputs). ``trace``: a list that receives, per command,
    ``(label, node, wait, received)``: its fence and the words its node had received when it
    ran in program order (equal for a correct program). ``on_command(step, kind, model)`` is
    called before each command runs on its golden core model (e.g. to learn the inputs each
    tile gets, for the analog crossbars of an RTL run)."""
    chip = program.chip
    L = chip_ni(chip).length
    cores = {}
    for node, scfg in program.sys_cfg.items():
        cores[node] = ("systolic", systolic_core.Core(scfg))
    for node, pcfg in program.pim_cfg.items():
        model = pim_core.PimCoreModel(pcfg)
        cores[node] = ("pim", model)
    for m, vs in program.tiles.items():
        for node, slot, r0, c0, c1, mapping, step0 in vs:
            model = cores[node][1]
            model.program(slot, mapping)
            model.steps[slot] = step0
    host = {}
    received = {}

    def deliver(sent):
        for dest, offset, data in sent:
            if dest == 0 and offset >= HOST_FIRST:
                host[offset] = np.array(data, dtype=np.int64)
            else:
                received[dest] = received.get(dest, 0) + 1
                kind, core = cores[dest]
                if kind == "pim":
                    core.write(offset, data[None])
                else:
                    core.memory[offset] = data

    reads = {}
    extra = {}
    queue = list(program.steps)
    while queue:
        st = queue.pop(0)
        if isinstance(st, Write):
            received[st.node] = received.get(st.node, 0) + len(st.words)
            kind, core = cores[st.node]
            if kind == "pim":
                core.write(st.addr, st.words)
            else:
                core.memory[st.addr:st.addr + len(st.words)] = st.words
        elif isinstance(st, Command):
            kind, core = cores[st.node]
            if trace is not None:
                trace.append((st.label, st.node, st.wait, received.get(st.node, 0)))
            if on_command is not None:
                on_command(st, kind, core)
            if kind == "pim":
                sent = [(dst, off, data) for dst, off, _, data in core.execute(st.word)]
            else:
                core.sent = []
                core.execute(st.word)
                sent = [(dst, off, data) for dst, _, off, data in core.sent]
            if core.error:
                raise RuntimeError(f"the golden {kind} core at node {st.node} refused "
                                   f"command {st.label!r}")
            deliver(sent)
        elif isinstance(st, Read):
            reads[st.name] = st
        elif isinstance(st, HostStep):
            got = {name: read_matrix(host, reads[name], L) for name in st.needs}
            more, info = st.fn(got)
            extra.update(info)
            queue = list(more) + queue
    out = {name: read_matrix(host, rd, L) for name, rd in reads.items()}
    out["host"] = extra
    return out


def read_matrix(host, rd, length):
    """The matrix of read ``rd`` from the host's received words ``{offset: word}``."""
    cols = rd.cols * (2 if rd.wide else 1)
    wpr = -(-cols // length)
    rows = []
    for r in range(rd.rows):
        words = [host.get(rd.addr + r * wpr + j) for j in range(wpr)]
        if any(w is None for w in words):
            raise RuntimeError(f"the host did not receive all of {rd.name!r}")
        rows.append(np.concatenate(words)[:cols])
    m = np.stack(rows)
    return systolic_core.join_wide(m) if rd.wide else m


def expected_results(layer, x, grads=None):
    """What the host must receive: ``y`` (:meth:`EncoderLayer.forward`) and, per gradient
    target, ``dB``, ``dA`` (:func:`golden.lora.lora_backward` on the layer's own ``T``)."""
    cfg = layer.cfg
    y, taps = layer.forward(x, taps=True)
    out = {"y": y}
    F = layer.formats
    for t, (g, fg) in (grads or {}).items():
        ai, fa, bi, fb = layer.lora_operands(t)
        tt = layer.gemm(x, ai, out_shift=F["x"] + fa - F["t" + t], out_width=cfg.act_bits)
        res = lora_backward(x, F["x"], tt, F["t" + t], g, fg, ai, fa, bi, fb,
                            bits=cfg.act_bits, acc_width=cfg.acc_width)
        out[f"dB_{t}"] = res["dB"]
        out[f"dA_{t}"] = res["dA"]
    return out
