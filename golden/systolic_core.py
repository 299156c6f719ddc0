"""Golden host side of the chip's systolic core (``hdl.systolic.core.SystolicCore``).

- :class:`CoreConfig`: the core's parameters (array size, vector length ``L``, memory words,
  node, NoC tag widths, nonlinear unit row buffer), with the derived field widths.
- :func:`command_fields` / :func:`encode_command` / :func:`decode_command`: the command's bit
  layout, described once here; the hardware views it as a ``data.StructLayout``
  (``hdl.systolic.core.command_layout``).
- :class:`Core` / :func:`run`: the execution model (memory in, memory and sent vectors out),
  built on :func:`golden.systolic.gemm` / :func:`golden.systolic.output_stage` and the
  kernels of :mod:`golden.nonlinear`.
- :func:`command_cycles`: the RTL's cycles per command (no ``wr`` traffic, no backpressure on
  ``o``), checked cycle-exact by ``tb/test_systolic_core_sim.py``.

Memory: ``mem_words`` words of ``L`` signed 16-bit elements. A matrix ``R x C`` at word
``base`` with leading dimension ``ld`` words (0: ``ceil(C / L)``, the chip's convention) has
element ``(r, c)`` at word ``base + r * ld + c // L``, lane ``c % L``. GEMM operands and
results may start at a lane ``col`` of their first word (``a_col``, ``b_col``, ``c_col``:
element ``(r, c)`` at column ``col + c``; natural ``ld``: ``ceil((C + col) / L)``), e.g. one
head's columns of ``Q``; the fast layouts need ``col`` a multiple of the vector's slice
(``rows`` for ``A^T`` and ``C^T``, ``cols`` for ``B``, ``2 min(rows, L/2)`` for a wide
``C^T``, 2 for a wide ``C``).

Commands (``op``; every command also carries ``layer``, ``dest``, ``dest_addr``):

``GEMM`` ``C = A @ B`` (``M x K`` by ``K x N``): operands are the low 8 bits of each element
(signed), the array accumulates exactly (``acc_width`` bits, wrapping), the write-back applies
``out_shift`` (round half up) and saturates to ``out_width`` (2..16) bits, exactly
``output_stage(gemm(A, B))``; ``out_width`` 0 keeps the whole (shifted) accumulator, 32 bits
stored as two elements (low half, high half: :func:`split_wide`), so the stored matrix has
twice the columns (the LoRA gradients' exact accumulators). ``a_t``: memory holds ``A^T`` (``K x M``, one word per array
input vector: fast) else ``A`` (``M x K``, one element per cycle, ``rows`` reads per input
vector); ``a_eye``: ``A`` is the identity (``M == K``, nothing read: ``C = B``, so with
``c_t`` a transpose of ``B`` through the array); ``b_t``: memory holds ``B^T`` (``N x K``,
``cols`` reads per vector) else ``B`` (``K x N``, fast); ``c_t``: ``C^T`` (``N x M``, one
write per output vector: fast) is stored, else ``C`` (``M x N``, one write per element). The
result goes to local memory at ``c_addr``; when ``dest`` is not this core's node the result's
words (``c_addr`` .. ``c_addr + span - 1``) are then sent to ``dest`` at ``dest_addr + j``.

``NL`` one :class:`hdl.nonlinear.NonlinearUnit` command (``cmd``: its command fields) per row
of the ``R x C`` matrix at ``in_addr`` (``C = cmd.length``; ``in_t``: memory holds its
transpose), ``ADD``'s second operand at ``in2_addr`` (same layout), results to ``out_addr``
(``out_t``: stored transposed), sent on as for GEMM. ``LOAD_GAMMA`` / ``LOAD_BETA`` load each
row in turn (the last stays) and write nothing.

``SEND`` ``count`` words from ``src`` to ``dest`` at ``dest_addr + j`` (always on ``o``; the
chip's shell loops a vector for the core's own node back into its memory).

A command with a bad field is refused (the ``error`` flag, sticky until reset) and nothing
runs: opcode 3, ``M``/``N``/``K``/``R``/``count`` zero, ``a_eye`` with ``M != K``, a
misaligned ``a_col``/``b_col``/``c_col``,
``out_width`` 1 or above 16, ``out_shift >= acc_width``, a leading dimension smaller than
its matrix's row, a matrix past ``mem_words``, ``dest >= nodes`` (a sending command), a
sent word's offset past ``2**offset_bits - 2`` (the top offset is the command port), a row
length above the unit's ``nl_max_len``. A command the nonlinear unit refuses (its own rules,
:func:`nl_refused`) sets ``error`` too and stops that command.
"""

import math
from dataclasses import dataclass

import numpy as np

from . import nonlinear as nl
from . import systolic
from ._check import check_int

__all__ = ["CoreConfig", "OPCODES", "NL_FUNCTIONS", "command_fields", "nl_command_fields",
           "field_width", "encode_command", "decode_command", "Core", "run", "run_core", "nl_refused",
           "matrix_words", "command_cycles", "NL_MAX_RECIP_BITS", "NL_MAX_LEFT_SHIFT",
           "ADDR_BITS", "DIM_BITS", "sram_words", "split_wide", "join_wide", "gemm_schedule", "gemm_fold_ks",
           "gemm_compute_cycles", "nl_row_cycles", "nl_softmax", "nl_layernorm", "nl_gelu",
           "nl_add", "nl_load", "attention_program"]

OPCODES = {"GEMM": 0, "NL": 1, "SEND": 2}
NL_FUNCTIONS = {"SOFTMAX": 0, "LAYERNORM": 1, "GELU": 2, "ADD": 3, "LOAD_GAMMA": 4,
                "LOAD_BETA": 5}
NL_MAX_RECIP_BITS = 48
NL_MAX_LEFT_SHIFT = 63
NL_MULT_BITS = 18
#: Widths of the address and dimension fields.
ADDR_BITS = 16
DIM_BITS = 16
#: Element width of the memory and of the nonlinear unit (``width = out_width = 16``).
ELEM_BITS = 16
#: Operand width of the array.
IN_WIDTH = 8


@dataclass(frozen=True)
class CoreConfig:
    """Parameters of a systolic core (the hardware's constructor parameters, same names).

    Parameters
    ----------
    rows, cols : int
        Array size, powers of two, ``cols <= rows`` (the array drains result columns).
    length : int
        Vector length ``L`` (elements per memory word), a power of two that ``rows``
        divides (and so ``cols``).
    mem_words : int
        Local memory words, 1 to 32768.
    node : int
        This core's node id (a result for ``dest == node`` stays local).
    nodes : int
        NoC nodes (the ``dest`` field width, ``golden.network_interface.dest_bits_for``).
    layer_bits, stage_bits, offset_bits : int
        NoC tag widths.
    acc_width : int
        Array accumulator width (32).
    nl_max_len : int
        Row buffer of the nonlinear unit (the longest row).
    """
    rows: int = 16
    cols: int = 8
    length: int = 32
    mem_words: int = 512
    node: int = 0
    nodes: int = 8
    layer_bits: int = 6
    stage_bits: int = 4
    offset_bits: int = 16
    acc_width: int = 32
    nl_max_len: int = 1024

    def __post_init__(self):
        for name in ("rows", "cols", "length"):
            v = check_int(name, getattr(self, name), 2 if name == "length" else 1, 4096)
            if v & (v - 1):
                raise TypeError(f"{name} must be a power of two, not {v!r}")
        if self.cols > self.rows:
            raise ValueError(f"cols ({self.cols}) must not exceed rows ({self.rows}): the array "
                             f"drains result columns")
        if self.length % self.rows:
            raise ValueError(f"rows ({self.rows}) must divide length ({self.length})")
        check_int("mem_words", self.mem_words, 1, 32768)
        check_int("nodes", self.nodes, 1, 4096)
        check_int("node", self.node, 0, self.nodes - 1)
        check_int("layer_bits", self.layer_bits, 1, 16)
        check_int("stage_bits", self.stage_bits, 1, 16)
        check_int("offset_bits", self.offset_bits, 1, 16)
        check_int("acc_width", self.acc_width, 2 * IN_WIDTH, 63)
        check_int("nl_max_len", self.nl_max_len, 1, 65536)

    @property
    def dest_bits(self):
        return max(8, (self.nodes - 1).bit_length())

    @property
    def command_bits(self):
        return field_width(command_fields(self))

    def words(self, ncols):
        """Words of one matrix row of ``ncols`` elements."""
        return -(-ncols // self.length)


def sram_words(sram_bits, length):
    """Memory words of ``sram_bits`` of SRAM at ``L = length`` 16-bit elements per word."""
    return sram_bits // (ELEM_BITS * length)


# -------------------------------------------------------------------------------- layout

def nl_command_fields(max_len):
    """The nonlinear unit's command (``hdl.nonlinear.command_layout(16, 16, max_len)``)."""
    w = ELEM_BITS
    params = ("union", (
        ("softmax", ("struct", (("q_ln2", w + 1, False), ("q_b", w + 4, True),
                                ("q_c", 2 * w + 8, True), ("recip_bits", 6, False)))),
        ("layernorm", ("struct", (("recip_bits", 6, False), ("norm_frac", 6, False),
                                  ("gamma_frac", 8, True), ("out_scale_log2", 8, True)))),
        ("gelu", ("struct", (("q_clip", w, False), ("q_b", w + 4, True),
                             ("q_c", 2 * w + 8, True), ("q_one", 2 * w + 8, True),
                             ("m", NL_MULT_BITS, True), ("r", 8, True)))),
        ("add", ("struct", (("shift", 8, True),))),
    ))
    return ("struct", (("fn", 3, False), ("length", max_len.bit_length(), False),
                       ("out_bits", 6, False), ("params", params)))


def command_fields(cfg):
    """The command layout as nested ``("struct" | "union", ((name, spec), ...))`` and leaf
    ``(width, signed)`` entries, first field at the LSB (Amaranth's order)."""
    a, d = ADDR_BITS, DIM_BITS
    gemm = ("struct", (("m", d, False), ("n", d, False), ("k", d, False),
                       ("a_addr", a, False), ("b_addr", a, False), ("c_addr", a, False),
                       ("a_ld", a, False), ("b_ld", a, False), ("c_ld", a, False),
                       ("a_t", 1, False), ("a_eye", 1, False), ("b_t", 1, False),
                       ("c_t", 1, False), ("out_shift", 6, False), ("out_width", 5, False),
                       ("a_col", d, False), ("b_col", d, False), ("c_col", d, False)))
    nlc = ("struct", (("rows", d, False), ("in_addr", a, False), ("in2_addr", a, False),
                      ("out_addr", a, False), ("in_ld", a, False), ("out_ld", a, False),
                      ("in_t", 1, False), ("out_t", 1, False),
                      ("cmd", nl_command_fields(cfg.nl_max_len))))
    send = ("struct", (("src", a, False), ("count", d, False)))
    return ("struct", (("op", 2, False), ("layer", cfg.layer_bits, False),
                       ("dest", cfg.dest_bits, False), ("dest_addr", cfg.offset_bits, False),
                       ("body", ("union", (("gemm", gemm), ("nl", nlc), ("send", send))))))


def _norm(item):
    """``(name, spec)`` with a leaf spec ``(width, signed)``."""
    if len(item) == 3:
        return item[0], (item[1], item[2])
    return item


def field_width(spec):
    if spec[0] == "struct":
        return sum(field_width(_norm(f)[1]) for f in spec[1])
    if spec[0] == "union":
        return max(field_width(_norm(f)[1]) for f in spec[1])
    return spec[0]


def _pack(spec, value, path):
    if spec[0] in ("struct", "union"):
        if not isinstance(value, dict):
            raise TypeError(f"{path or 'command'} must be a dict, not {value!r}")
        fields = dict(_norm(f) for f in spec[1])
        for key in value:
            if key not in fields:
                raise ValueError(f"{path or 'command'} has no field {key!r}")
        if spec[0] == "union" and len(value) > 1:
            raise ValueError(f"{path} is a union: give one member, not {sorted(value)}")
        word, offset = 0, 0
        for f in spec[1]:
            name, sub = _norm(f)
            if name in value:
                word |= _pack(sub, value[name], f"{path}.{name}" if path else name) << offset
            if spec[0] == "struct":
                offset += field_width(sub)
        return word
    width, signed = spec
    if hasattr(value, "value"):
        value = value.value
    value = check_int(path, value, -(1 << (width - 1)) if signed else 0,
                      (1 << (width - 1)) - 1 if signed else (1 << width) - 1)
    return value & ((1 << width) - 1)


def _unpack(spec, word):
    if spec[0] in ("struct", "union"):
        out, offset = {}, 0
        for f in spec[1]:
            name, sub = _norm(f)
            out[name] = _unpack(sub, word >> offset)
            if spec[0] == "struct":
                offset += field_width(sub)
        return out
    width, signed = spec
    word &= (1 << width) - 1
    return word - (1 << width) if signed and word >> (width - 1) else word


def encode_command(cfg, op, *, layer=0, dest=None, dest_addr=0, **body):
    """The command word (an int of :attr:`CoreConfig.command_bits` bits).

    ``op`` is ``"GEMM"``, ``"NL"``, ``"SEND"`` (or an int, to encode refused opcodes);
    ``dest`` defaults to the core's own node; ``body`` holds the opcode's fields (missing
    fields are 0). Raises ``TypeError`` for a field value that does not fit its width.
    """
    code = OPCODES[op] if isinstance(op, str) else check_int("op", op, 0, 3)
    member = {0: "gemm", 1: "nl", 2: "send"}.get(code, "send")
    return _pack(command_fields(cfg), {
        "op": code, "layer": layer, "dest": cfg.node if dest is None else dest,
        "dest_addr": dest_addr, "body": {member: body}}, "")


def decode_command(cfg, word):
    """Inverse of :func:`encode_command`: ``{"op", "layer", "dest", "dest_addr", "body"}``
    with ``body`` the opcode's member (all members for opcode 3)."""
    d = _unpack(command_fields(cfg), word)
    member = {0: "gemm", 1: "nl", 2: "send"}.get(d["op"])
    if member is not None:
        d["body"] = d["body"][member]
    return d


# -------------------------------------------------------------------------------- NL fields

def _fit(name, value, width, signed=True):
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    if not lo <= value <= hi:
        raise ValueError(f"{name} = {value} does not fit the unit's {width}-bit "
                         f"{'signed' if signed else 'unsigned'} field ({lo} to {hi})")
    return value


def nl_softmax(n, scale, *, out_bits=8, recip_bits=32):
    """The ``cmd`` of an NL softmax of rows of ``n`` scores of real scale ``scale``
    (``i_softmax(row, scale, out_bits=, recip_bits=)``; the fields of
    ``NonlinearUnit.softmax_command``)."""
    check_int("out_bits", out_bits, 2, ELEM_BITS)
    check_int("recip_bits", recip_bits, out_bits, NL_MAX_RECIP_BITS)
    c = nl.exp_constants(scale)
    w = ELEM_BITS
    return {"fn": NL_FUNCTIONS["SOFTMAX"], "length": check_int("length", n, 1), "out_bits": out_bits,
            "params": {"softmax": {"q_ln2": min(c["q_ln2"], 1 << w),
                                   "q_b": _fit("q_b", c["q_b"], w + 4),
                                   "q_c": _fit("q_c", c["q_c"], 2 * w + 8),
                                   "recip_bits": recip_bits}}}


def nl_layernorm(n, *, gamma_frac, out_scale_log2, norm_frac=12, recip_bits=24, out_bits=8):
    """The ``cmd`` of an NL LayerNorm (``i_layernorm`` with the loaded gamma and beta)."""
    return {"fn": NL_FUNCTIONS["LAYERNORM"], "length": check_int("length", n, 1),
            "out_bits": check_int("out_bits", out_bits, 2, ELEM_BITS),
            "params": {"layernorm": {"recip_bits": check_int("recip_bits", recip_bits, 0,
                                                             NL_MAX_RECIP_BITS),
                                     "norm_frac": check_int("norm_frac", norm_frac, 0, 63),
                                     "gamma_frac": check_int("gamma_frac", gamma_frac, -128, 127),
                                     "out_scale_log2": check_int("out_scale_log2",
                                                                 out_scale_log2, -128, 127)}}}


def nl_gelu(n, *, q_clip, q_b, q_c, q_one, m, r, out_bits=8):
    """The ``cmd`` of an NL GELU (the constants of :func:`golden.nonlinear.gelu_constants`)."""
    w = ELEM_BITS
    return {"fn": NL_FUNCTIONS["GELU"], "length": check_int("length", n, 1),
            "out_bits": check_int("out_bits", out_bits, 2, ELEM_BITS),
            "params": {"gelu": {"q_clip": min(check_int("q_clip", q_clip, 0), 1 << (w - 1)),
                                "q_b": _fit("q_b", q_b, w + 4), "q_c": _fit("q_c", q_c, 2 * w + 8),
                                "q_one": _fit("q_one", q_one, 2 * w + 8),
                                "m": _fit("m", m, NL_MULT_BITS),
                                "r": check_int("r", r, -NL_MAX_LEFT_SHIFT, 127)}}}


def nl_add(n, *, shift, out_bits):
    """The ``cmd`` of an NL residual add ``saturate(x + rshift_round(x2, shift), out_bits)``."""
    return {"fn": NL_FUNCTIONS["ADD"], "length": check_int("length", n, 1),
            "out_bits": check_int("out_bits", out_bits, 2, ELEM_BITS),
            "params": {"add": {"shift": check_int("shift", shift, -NL_MAX_LEFT_SHIFT, 127)}}}


def nl_load(n, which):
    """The ``cmd`` loading ``n`` LayerNorm ``gamma_q`` (``"gamma"``) or ``beta_q`` values."""
    if which not in ("gamma", "beta"):
        raise TypeError(f"which must be one of 'gamma', 'beta', not {which!r}")
    return {"fn": NL_FUNCTIONS["LOAD_" + which.upper()], "length": check_int("length", n, 1),
            "out_bits": 0}


# -------------------------------------------------------------------------------- programs

def attention_program(cfg, layer, formats, *, q, k, v, qt, kt, st, pt, ctx, dest=None,
                      p_addr=None):
    """The commands of one encoder layer's attention (all heads) on a core whose memory holds
    ``Q``, ``K`` and ``V`` (``seq_len x d_model`` each, row-major) at words ``q``, ``k``, ``v``.

    Per head ``h`` (columns ``h d_head ..`` of Q, K, V: a word and lane offset):

    - ``Q_h^T`` and ``K_h^T`` through the array (identity GEMMs, to ``qt``, ``kt``);
    - ``S^T = (Q_h K_h^T)^T`` (``st``; ``out_shift = f_q + f_k - f_s``, ``score_bits``);
    - the softmax of ``S``'s rows (read transposed) into ``P^T`` (``pt``);
    - ``C_h = P V_h`` into the context (``ctx``, row-major ``seq_len x d_model``,
      ``out_width = act_bits``): as ``C_h^T = V_h^T P^T`` stored transposed when the head's
      lane offset is a multiple of ``rows`` (every layout fast), else with ``P^T`` as ``A^T``
      and ``C_h`` written one element per cycle.

    Exactly :meth:`golden.transformer.EncoderLayer.forward`'s attention (no causal mask).
    With ``p_addr``, each head's ``P^T`` is also sent to ``dest`` at ``p_addr + h seq_len``.
    ``d_head`` must be a multiple of ``cols`` (a head's columns of ``K`` and ``V`` are whole
    slices of the B operand).

    Parameters
    ----------
    cfg : CoreConfig
    layer : golden.transformer.LayerConfig
    formats : dict
        The layer's fractional bits (:meth:`EncoderLayer.calibrate`).
    """
    n, dh, L, R = layer.seq_len, layer.d_head, cfg.length, cfg.rows
    if dh % cfg.cols:
        raise ValueError(f"d_head ({dh}) must be a multiple of the array's cols ({cfg.cols})")
    if layer.causal:
        raise ValueError("causal attention needs the score mask, which the core does not apply")
    F = formats
    ld = cfg.words(layer.d_model)
    sm = nl_softmax(n, 2.0 ** -F["s"] / math.sqrt(dh), out_bits=layer.act_bits)
    dest = cfg.node if dest is None else dest
    prog = []
    for h in range(layer.heads):
        word, col = divmod(h * dh, L)
        for src, dst in ((q, qt), (k, kt)):
            prog.append(encode_command(cfg, "GEMM", m=n, n=dh, k=n, b_addr=src + word, b_ld=ld,
                                       b_col=col, c_addr=dst, a_eye=1, c_t=1,
                                       out_width=ELEM_BITS))
        prog.append(encode_command(cfg, "GEMM", m=n, n=n, k=dh, a_addr=qt, b_addr=kt,
                                   c_addr=st, a_t=1, c_t=1, out_shift=F["q"] + F["k"] - F["s"],
                                   out_width=layer.score_bits))
        send = {} if p_addr is None else {"dest": dest, "dest_addr": p_addr + h * n}
        prog.append(encode_command(cfg, "NL", rows=n, in_addr=st, in_t=1, out_addr=pt,
                                   out_t=1, cmd=sm, **send))
        shift = layer.act_bits - 1 + F["v"] - F["c"]
        if col % R == 0:
            prog.append(encode_command(cfg, "GEMM", m=dh, n=n, k=n, a_addr=v + word, a_ld=ld,
                                       a_col=col, b_addr=pt, c_addr=ctx + word, c_ld=ld,
                                       c_col=col, a_t=1, c_t=1, out_shift=shift,
                                       out_width=layer.act_bits))
        else:
            prog.append(encode_command(cfg, "GEMM", m=n, n=dh, k=n, a_addr=pt, b_addr=v + word,
                                       b_ld=ld, b_col=col, c_addr=ctx + word, c_ld=ld,
                                       c_col=col, a_t=1, out_shift=shift,
                                       out_width=layer.act_bits))
    return prog


# -------------------------------------------------------------------------------- model

def matrix_words(rows, ncols, ld, length, col=0):
    """Words spanned by a ``rows x ncols`` matrix of leading dimension ``ld`` (0: natural)
    whose column 0 is at lane ``col`` of its first word."""
    w = -(-(ncols + col) // length)
    ld = ld or w
    return (rows - 1) * ld + w


def _gemm_shapes(g):
    """``((a_rows, a_cols), (b_rows, b_cols), (c_rows, c_cols))`` as stored (a wide result,
    ``out_width`` 0, takes two columns per element)."""
    m, n, k = g["m"], g["n"], g["k"]
    w = 1 if g["out_width"] else 2
    return ((k, m) if g["a_t"] else (m, k)), ((n, k) if g["b_t"] else (k, n)), \
        ((n, w * m) if g["c_t"] else (m, w * n))


def split_wide(y):
    """32-bit results as two signed 16-bit elements each (low half first, then high): the
    layout of a wide GEMM result (``out_width`` 0); columns ``2c``, ``2c + 1``."""
    y = np.asarray(y, dtype=np.int64) & 0xFFFFFFFF
    lo, hi = y & 0xFFFF, y >> 16
    out = np.empty(y.shape[:-1] + (2 * y.shape[-1],), dtype=np.int64)
    out[..., 0::2], out[..., 1::2] = lo, hi
    return np.where(out >= 1 << 15, out - (1 << 16), out)


def join_wide(x):
    """Inverse of :func:`split_wide`: the signed 32-bit values."""
    x = np.asarray(x, dtype=np.int64) & 0xFFFF
    y = x[..., 0::2] | (x[..., 1::2] << 16)
    return np.where(y >= 1 << 31, y - (1 << 32), y)


def nl_refused(cmd, max_len, out_width=ELEM_BITS):
    """True when :class:`hdl.nonlinear.NonlinearUnit` refuses the command (its rules)."""
    fn, n, ob = cmd["fn"], cmd["length"], cmd["out_bits"]
    if fn > 5 or n == 0 or n > max_len:
        return True
    if fn <= 3 and not 2 <= ob <= out_width:
        return True
    p = cmd["params"]
    if fn == 0:
        s = p["softmax"]
        return s["recip_bits"] > NL_MAX_RECIP_BITS or s["recip_bits"] < ob or s["q_ln2"] == 0
    if fn == 1:
        s = p["layernorm"]
        return (s["recip_bits"] > NL_MAX_RECIP_BITS
                or s["gamma_frac"] + s["norm_frac"] + s["out_scale_log2"] < -NL_MAX_LEFT_SHIFT)
    if fn == 2:
        return p["gelu"]["r"] < -NL_MAX_LEFT_SHIFT
    if fn == 3:
        return p["add"]["shift"] < -NL_MAX_LEFT_SHIFT
    return False


def _nl_row(fn, cmd, row, row2, gamma, beta):
    """One row through the nonlinear unit's golden kernel."""
    p, ob = cmd["params"], cmd["out_bits"]
    n = len(row)
    if fn == 0:
        s = p["softmax"]
        d = row - row.max()
        e = nl.i_exp(d, q_ln2=s["q_ln2"], q_b=s["q_b"], q_c=s["q_c"])
        f = (1 << s["recip_bits"]) // int(e.sum())
        out = nl.rshift_round(e * np.int64(f), s["recip_bits"] - (ob - 1))
        return np.clip(out, 0, (1 << (ob - 1)) - 1)
    if fn == 1:
        s = p["layernorm"]
        return nl.i_layernorm(row[None], gamma[:n], beta[:n], gamma_frac=s["gamma_frac"],
                              out_scale_log2=s["out_scale_log2"], norm_frac=s["norm_frac"],
                              recip_bits=s["recip_bits"], out_bits=ob)[0]
    if fn == 2:
        s = p["gelu"]
        return nl.i_gelu(row, q_clip=s["q_clip"], q_b=s["q_b"], q_c=s["q_c"], q_one=s["q_one"],
                         m=s["m"], r=s["r"], out_bits=ob)
    s = p["add"]
    return nl.saturate(row + nl.rshift_round(row2, s["shift"]), ob)


class Core:
    """Execution model of one core: its memory, the nonlinear unit's ``gamma``/``beta``
    buffers, the ``error`` flag, and the vectors it sent (``(dest, layer, offset, data)``).

    ``memory`` is an ``(mem_words, L)`` integer array of signed 16-bit values (copied).
    """

    def __init__(self, cfg, memory=None):
        if not isinstance(cfg, CoreConfig):
            raise TypeError(f"cfg must be a CoreConfig, not {cfg!r}")
        self.cfg = cfg
        shape = (cfg.mem_words, cfg.length)
        if memory is None:
            memory = np.zeros(shape, dtype=np.int64)
        memory = np.array(memory, dtype=np.int64)
        if memory.shape != shape:
            raise ValueError(f"memory must have shape {shape}, not {memory.shape}")
        self.memory = memory
        self.gamma = np.zeros(cfg.nl_max_len, dtype=np.int64)
        self.beta = np.zeros(cfg.nl_max_len, dtype=np.int64)
        self.error = False
        self.sent = []

    # -- matrices
    def _addr(self, base, ld, ncols, r, c):
        L = self.cfg.length
        ld = ld or self.cfg.words(ncols)
        return base + r * ld + c // L, c % L

    def read_matrix(self, base, nrows, ncols, ld=0, col=0):
        """The ``nrows x ncols`` matrix at ``base`` (int64), column 0 at lane ``col``."""
        ld = ld or self.cfg.words(ncols + col)
        w = self.cfg.words(ncols + col)
        out = np.zeros((nrows, ncols), dtype=np.int64)
        for r in range(nrows):
            words = self.memory[base + r * ld: base + r * ld + w]
            out[r] = words.reshape(-1)[col:col + ncols]
        return out

    def write_matrix(self, base, values, ld=0, col=0):
        """Write ``values`` (``nrows x ncols``) at ``base``, column 0 at lane ``col``; other
        lanes keep their values."""
        values = np.asarray(values, dtype=np.int64)
        L = self.cfg.length
        nrows, ncols = values.shape
        ld = ld or self.cfg.words(ncols + col)
        for r in range(nrows):
            for c in range(ncols):
                self.memory[base + r * ld + (c + col) // L, (c + col) % L] = values[r, c]

    # -- commands
    def _valid_dest(self, c, span):
        cfg = self.cfg
        if c["dest"] == cfg.node:
            return True
        return c["dest"] < cfg.nodes and c["dest_addr"] + span <= (1 << cfg.offset_bits) - 1

    def _fits(self, base, nrows, ncols, ld, col=0):
        w = self.cfg.words(ncols + col)
        return (ld == 0 or ld >= w) and base + matrix_words(nrows, ncols, ld, self.cfg.length, col) \
            <= self.cfg.mem_words

    def check(self, c):
        """True when command ``c`` (:func:`decode_command`'s dict) is accepted by the core's
        field checks (the nonlinear unit's own refusals aside)."""
        cfg = self.cfg
        op, b = c["op"], c["body"]
        if op == 0:
            m, n, k = b["m"], b["n"], b["k"]
            if not (m and n and k) or not (b["out_width"] == 0 or 2 <= b["out_width"] <= ELEM_BITS) \
                    or b["out_shift"] >= cfg.acc_width or (b["a_eye"] and m != k):
                return False
            (ar, ac), (br, bc), (cr, cc) = _gemm_shapes(b)
            R, C, L = cfg.rows, cfg.cols, cfg.length
            wide = b["out_width"] == 0
            align = ((b["a_col"] % R == 0) if b["a_t"] and not b["a_eye"] else True) \
                and ((b["b_col"] % C == 0) if not b["b_t"] else True) \
                and (b["c_col"] % ((2 * min(R, L // 2) if wide else R) if b["c_t"]
                                   else (2 if wide else 1)) == 0)
            if not align:
                return False
            if not b["a_eye"] and not self._fits(b["a_addr"], ar, ac, b["a_ld"], b["a_col"]):
                return False
            if not self._fits(b["b_addr"], br, bc, b["b_ld"], b["b_col"]) \
                    or not self._fits(b["c_addr"], cr, cc, b["c_ld"], b["c_col"]):
                return False
            return self._valid_dest(c, matrix_words(cr, cc, b["c_ld"], cfg.length, b["c_col"]))
        if op == 1:
            r, n, fn = b["rows"], b["cmd"]["length"], b["cmd"]["fn"]
            if not r or not n or n > cfg.nl_max_len:
                return False
            ir, ic = (n, r) if b["in_t"] else (r, n)
            orr, oc = (n, r) if b["out_t"] else (r, n)
            if not self._fits(b["in_addr"], ir, ic, b["in_ld"]):
                return False
            if fn == 3 and not self._fits(b["in2_addr"], ir, ic, b["in_ld"]):
                return False
            if fn <= 3 and not self._fits(b["out_addr"], orr, oc, b["out_ld"]):
                return False
            return fn > 3 or self._valid_dest(c, matrix_words(orr, oc, b["out_ld"], cfg.length))
        if op == 2:
            cnt = b["count"]
            return bool(cnt) and b["src"] + cnt <= cfg.mem_words and c["dest"] < cfg.nodes \
                and c["dest_addr"] + cnt <= (1 << cfg.offset_bits) - 1
        return False

    def _send(self, c, base, count):
        for j in range(count):
            self.sent.append((c["dest"], c["layer"], c["dest_addr"] + j,
                              self.memory[base + j].copy()))

    def execute(self, command):
        """Run one command (an int from :func:`encode_command` or its decoded dict)."""
        c = decode_command(self.cfg, command) if isinstance(command, int) else command
        if not self.check(c):
            self.error = True
            return
        b, L = c["body"], self.cfg.length
        if c["op"] == 0:
            (ar, ac), (br, bc), (cr, cc) = _gemm_shapes(b)
            m, n, k = b["m"], b["n"], b["k"]
            if b["a_eye"]:
                a = np.eye(m, dtype=np.int64)
            else:
                a = systolic.wrap(self.read_matrix(b["a_addr"], ar, ac, b["a_ld"], b["a_col"]),
                                  IN_WIDTH)
                a = a.T if b["a_t"] else a
            bm = systolic.wrap(self.read_matrix(b["b_addr"], br, bc, b["b_ld"], b["b_col"]),
                               IN_WIDTH)
            bm = bm.T if b["b_t"] else bm
            acc = self.cfg.acc_width
            y = systolic.output_stage(systolic.gemm(a, bm, acc_width=acc), acc_width=acc,
                                      out_shift=b["out_shift"], out_width=b["out_width"])
            y = y.T if b["c_t"] else y
            self.write_matrix(b["c_addr"], y if b["out_width"] else split_wide(y), b["c_ld"],
                              b["c_col"])
            if c["dest"] != self.cfg.node:
                self._send(c, b["c_addr"], matrix_words(cr, cc, b["c_ld"], L, b["c_col"]))
        elif c["op"] == 1:
            cmd = b["cmd"]
            fn, n, r = cmd["fn"], cmd["length"], b["rows"]
            if nl_refused(cmd, self.cfg.nl_max_len):
                self.error = True
                return
            ir, ic = (n, r) if b["in_t"] else (r, n)
            for row in range(r):
                x = self.read_matrix(b["in_addr"], ir, ic, b["in_ld"])
                x = (x.T if b["in_t"] else x)[row]
                if fn in (4, 5):
                    (self.gamma if fn == 4 else self.beta)[:n] = x
                    continue
                x2 = None
                if fn == 3:
                    x2 = self.read_matrix(b["in2_addr"], ir, ic, b["in_ld"])
                    x2 = (x2.T if b["in_t"] else x2)[row]
                y = _nl_row(fn, cmd, x, x2, self.gamma, self.beta)
                self._write_row(b, row, r, n, y)
            if fn <= 3 and c["dest"] != self.cfg.node:
                orr, oc = (n, r) if b["out_t"] else (r, n)
                self._send(c, b["out_addr"], matrix_words(orr, oc, b["out_ld"], L))
        else:
            self._send(c, b["src"], b["count"])

    def _write_row(self, b, row, r, n, y):
        base, ld, L = b["out_addr"], b["out_ld"], self.cfg.length
        for col in range(n):
            if b["out_t"]:
                w, lane = self._addr(base, ld, r, col, row)
            else:
                w, lane = self._addr(base, ld, n, row, col)
            self.memory[w, lane] = y[col]


def run(cfg, program, memory=None):
    """Run ``program`` (commands: ints or decoded dicts) on a core whose memory starts as
    ``memory``; returns ``(memory, sent)`` (``sent``: ``(dest, layer, offset, data)`` per
    vector, in order). The :class:`Core` itself (``error`` flag) is :func:`run_core`'s."""
    core = run_core(cfg, program, memory)
    return core.memory, core.sent


def run_core(cfg, program, memory=None):
    """As :func:`run`, returning the :class:`Core` (``memory``, ``sent``, ``error``)."""
    core = Core(cfg, memory)
    for command in program:
        core.execute(command)
    return core


# -------------------------------------------------------------------------------- cycles

def gemm_schedule(cfg, g):
    """The GEMM's fetch and write-back sequences: ``(issues, vectors)``. ``issues``: one
    ``(final, last)`` per memory read cycle (``final``: the input vector is complete;
    ``last``: it is the fold's last); ``vectors``: write cycles of each output vector
    (1 for ``C^T`` or a column past ``N``, ``rows / min(rows, L / 2)`` for a wide ``C^T``,
    ``min(rows, M - m0)`` for ``C``)."""
    R, C = cfg.rows, cfg.cols
    m, n, k = g["m"], g["n"], g["k"]
    j_end = R - 1 if not g["a_t"] and not g["a_eye"] else (C - 1 if g["b_t"] else 0)
    issues, vectors = [], []
    for m0 in range(0, m, R):
        for n0 in range(0, n, C):
            ks = range(m0, min(m0 + R, k)) if g["a_eye"] else range(k)
            for kk in ks:
                issues += [(j == j_end, kk == ks[-1]) for j in range(j_end + 1)]
            ct = R // min(R, cfg.length // 2) if not g["out_width"] else 1
            vectors += [1 if n0 + v >= n else ct if g["c_t"] else min(R, m - m0)
                        for v in range(C)]
    return issues, vectors


def gemm_fold_ks(cfg, g):
    """Input vectors of each fold (``K``, or ``min(rows, K - m0)`` with ``a_eye``)."""
    R, C = cfg.rows, cfg.cols
    return [min(R, g["k"] - m0) if g["a_eye"] else g["k"]
            for m0 in range(0, g["m"], R) for _ in range(0, g["n"], C)]


def gemm_compute_cycles(cfg, g):
    """Cycles of a GEMM from its acceptance on ``cmd`` to the core's return to idle (local
    result), no ``wr`` traffic: the RTL's schedule cycle by cycle, with the array's
    :class:`golden.systolic.TimingModel`. With ``A^T``/identity, ``B`` and ``C^T`` (one read
    and one write per vector) it is :func:`golden.systolic.cycle_model` of the folds plus 4
    (latch, check, the read, the return to idle)."""
    issues, vectors = gemm_schedule(cfg, g)
    tm = systolic.TimingModel(cfg.rows, cfg.cols, "cols")
    p, d_valid, d_final, d_last = 0, False, False, False
    v, w_i, done = 0, 0, False
    t = 2                                   # the GEMM state's first cycle after acceptance
    while not done:
        ov = tm.out_valid()
        take = False
        if ov:
            take = w_i == vectors[v] - 1
        in_valid = d_valid and d_final
        in_ready, _ = tm.step(in_valid, d_last, take)
        adv = not in_valid or in_ready
        if adv:
            d_valid = p < len(issues)
            if d_valid:
                d_final, d_last = issues[p]
                p += 1
        if ov:
            if take:
                w_i, v = 0, v + 1
                done = v == len(vectors)
            else:
                w_i += 1
        t += 1
    return t + 1                            # w_done (t), idle (t + 1): the next acceptance


def nl_row_cycles(fn, n, *, width=ELEM_BITS, max_len=1024):
    """Cycles of one NL row (the nonlinear unit's ``command_cycles`` plus the core's read)."""
    lb = max_len.bit_length()
    d = max(NL_MAX_RECIP_BITS + 1, 2 * width + lb, width + lb + 3) + 2
    k = (2 * width + lb + 1) // 2 + 2
    if fn == 0:
        unit = 2 * n + n + width + d + 9
    elif fn == 1:
        unit = 2 * n + n + 3 * d + k + 8
    elif fn in (2, 3):
        unit = n + 1 + 5
    else:
        unit = n + 2
    return unit + 1


def command_cycles(cfg, command):
    """Cycles from a command's acceptance on ``cmd`` to the next command's acceptance, back to
    back, with no ``wr`` traffic and ``o`` always ready (``tb/test_systolic_core_sim.py``
    checks every command of its programs against it):

    - refused: 2 (latch, check);
    - ``SEND`` of ``count`` words: ``count + 3``;
    - ``GEMM``: :func:`gemm_compute_cycles`, plus ``span + 1`` when the result is sent
      (``span`` its words);
    - ``NL`` over ``R`` rows: ``2 + R * row`` with ``row`` = the unit's
      ``command_cycles(fn, n)`` + 1 (:func:`nl_row_cycles`), plus ``span + 1`` when sent;
      a command the unit refuses: 4.
    """
    core = Core(cfg)
    c = decode_command(cfg, command) if isinstance(command, int) else command
    if not core.check(c):
        return 2
    b, L = c["body"], cfg.length
    remote = c["dest"] != cfg.node
    if c["op"] == 2:
        return b["count"] + 3
    if c["op"] == 0:
        _, _, (cr, cc) = _gemm_shapes(b)
        return gemm_compute_cycles(cfg, b) + (matrix_words(cr, cc, b["c_ld"], L, b["c_col"]) + 1
                                              if remote else 0)
    cmd = b["cmd"]
    if nl_refused(cmd, cfg.nl_max_len):
        return 4
    fn, n, r = cmd["fn"], cmd["length"], b["rows"]
    total = 2 + r * nl_row_cycles(fn, n, max_len=cfg.nl_max_len)
    if fn <= 3 and remote:
        orr, oc = (n, r) if b["out_t"] else (r, n)
        total += matrix_words(orr, oc, b["out_ld"], L) + 1
    return total
