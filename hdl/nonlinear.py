"""Row-wise integer nonlinear unit of a systolic core: softmax, LayerNorm, GELU, residual add.

Bit-exact with the I-BERT kernels of :mod:`golden.nonlinear` (:func:`~golden.nonlinear.i_softmax`,
:func:`~golden.nonlinear.i_layernorm`, :func:`~golden.nonlinear.i_gelu`) and with the residual
add of :mod:`golden.transformer` (``saturate(o + rshift_round(x, shift), res_bits)``).
"""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import nonlinear as nl
from golden._check import check_int, check_real

from .registry import block

__all__ = ["NonlinearUnit", "Function", "command_layout", "output_layout", "MULT_BITS",
           "MAX_RECIP_BITS", "MAX_LEFT_SHIFT"]

#: Width of the signed dyadic multiplier ``m`` of i-GELU (``gelu_constants(mult_bits <= 18)``).
MULT_BITS = 18
#: Largest ``recip_bits`` of softmax and LayerNorm (the reciprocal divider's numerator ``2**48``;
#: :func:`golden.nonlinear.i_softmax` allows the same range).
MAX_RECIP_BITS = 48
#: Largest left shift (a non-positive ``rshift_round`` shift) a command may ask for.
MAX_LEFT_SHIFT = 63


class Function(enum.Enum, shape=3):
    """The function a command selects (``fn``); the values 6 and 7 are refused."""
    SOFTMAX = 0
    LAYERNORM = 1
    GELU = 2
    ADD = 3
    LOAD_GAMMA = 4
    LOAD_BETA = 5


def _len_bits(max_len):
    return max_len.bit_length()


def command_layout(width, out_width, max_len):
    """Command payload: ``fn``, ``length`` (row length), ``out_bits`` and the function's
    parameters in the union ``params`` (the golden call's constants, by their golden names).

    ``params.softmax``: ``q_ln2, q_b, q_c`` (:func:`golden.nonlinear.exp_constants`),
    ``recip_bits``. ``params.layernorm``: ``recip_bits, norm_frac, gamma_frac,
    out_scale_log2``. ``params.gelu``: ``q_clip, q_b, q_c, q_one, m, r``
    (:func:`golden.nonlinear.gelu_constants`). ``params.add``: ``shift``.
    """
    w = width
    params = data.UnionLayout({
        "softmax": data.StructLayout({"q_ln2": unsigned(w + 1), "q_b": signed(w + 4),
                                      "q_c": signed(2 * w + 8), "recip_bits": unsigned(6)}),
        "layernorm": data.StructLayout({"recip_bits": unsigned(6), "norm_frac": unsigned(6),
                                        "gamma_frac": signed(8), "out_scale_log2": signed(8)}),
        "gelu": data.StructLayout({"q_clip": unsigned(w), "q_b": signed(w + 4),
                                   "q_c": signed(2 * w + 8), "q_one": signed(2 * w + 8),
                                   "m": signed(MULT_BITS), "r": signed(8)}),
        "add": data.StructLayout({"shift": signed(8)}),
    })
    return data.StructLayout({"fn": Function, "length": unsigned(_len_bits(max_len)),
                              "out_bits": unsigned(6), "params": params})


def output_layout(out_width):
    """Output word: ``data`` (signed ``out_width``), ``last`` (the command's last word) and
    ``error`` (the command was refused; ``data`` is 0)."""
    return data.StructLayout({"data": signed(out_width), "last": 1, "error": 1})


class _State(enum.Enum, shape=4):
    IDLE = 0
    LOAD = 1
    EXP = 2
    MEAN = 3
    VAR = 4
    VARDIV = 5
    SQRT = 6
    RECIP = 7
    OUT = 8
    ACK = 9
    ERR = 10


def _s64(v):
    """A signed value cut to at most 64 bits (numpy's int64 ring: exact wherever golden's int64
    arithmetic does not wrap, and the same wrap where it does for add, multiply, left shift)."""
    v = v.as_signed() if not v.shape().signed else v
    return v[:64].as_signed() if len(v) > 64 else v


def _rshift_round(x, s):
    """:func:`golden.nonlinear.rshift_round` of a signed value by a signed shift value ``s``
    (``-MAX_LEFT_SHIFT <= s``): ``s <= 0`` left shift, ``1..62`` round half up, ``> 62`` the
    sign."""
    x = _s64(x)
    right = ((x >> (s - 1)[:6]) + 1) >> 1          # == (x + 2**(s-1)) >> s, without the carry
    left = _s64(x << (-s)[:6])
    return Mux(s > 62, Mux(x < 0, -1, 0), Mux(s > 0, right, left))


@block("nonlinear_unit",
       width="signed width of the input elements (4..24; 16: the residual stream and scores)",
       out_width="signed width of the output elements (2..32); out_bits per command up to it",
       max_len="row buffer depth: longest row (1..65536)")
class NonlinearUnit(wiring.Component):
    """Row-wise integer softmax, LayerNorm, GELU and residual add (I-BERT), one command per row.

    A command on ``cmd`` selects the function and its parameters for one row of ``length``
    elements. Softmax and LayerNorm take the row on ``i`` into a row buffer
    (:class:`amaranth.lib.memory.Memory`, ``max_len`` deep) and make two (softmax: max, then
    exp and sum) or three (LayerNorm: sum, then the squares, then the output) passes over it;
    GELU and the add are element-wise (the add takes its second operand from ``res``).
    Every command ends with one word with ``last`` set on ``o``: a row gives ``length`` words,
    ``LOAD_GAMMA`` / ``LOAD_BETA`` (``length`` elements on ``i`` into the LayerNorm ``gamma_q`` /
    ``beta_q`` buffers, which survive reset) one acknowledgement word (``data`` 0). Bit-exact
    with :mod:`golden.nonlinear` (see each function below).

    Latency and throughput (no idle input, no backpressure; :meth:`row_latency` gives them):

    - Input: one element per cycle from the cycle after the command is accepted; the unit
      takes one command at a time (the next command is accepted in the cycle after the
      previous command's last word left ``o``).
    - Output: one element per cycle once the first is out; a stall on ``o`` stalls the
      output pipeline and, through ``i.ready``, GELU and the add.
    - From the cycle the row's last element is accepted on ``i`` to the cycle its first word
      is valid on ``o``: softmax ``n + width + D + 9``, LayerNorm ``n + 3 D + K + 8``
      (``D = divider_cycles``, ``K = sqrt_cycles``, ``n = length``); GELU and the add:
      ``pipeline_latency`` (5) cycles from each element's input to its output, so the last
      word of a row is valid 5 cycles after its last element is accepted.
    - A unit is occupied ``command_cycles(fn, n)`` cycles per command: ``2 n + latency``
      for softmax and LayerNorm (``3 n + 76`` and ``3 n + 185`` at the defaults),
      ``n + 6`` for GELU and ADD.

    Functions (``golden.nonlinear`` names; ``out_bits`` per command, 2 to ``out_width``):

    - ``SOFTMAX``: :func:`~golden.nonlinear.i_softmax` of the row (``scale`` given as the
      integer constants ``q_ln2, q_b, q_c`` of :func:`~golden.nonlinear.exp_constants`, with
      ``q_ln2`` at most ``2**width``: a larger one gives the same ``i_exp``), ``recip_bits``
      from ``out_bits`` to 48.
    - ``LAYERNORM``: :func:`~golden.nonlinear.i_layernorm` with the loaded ``gamma_q``,
      ``beta_q`` (their first ``length`` entries), ``recip_bits`` up to 48, ``norm_frac``,
      ``gamma_frac``, ``out_scale_log2``. Mean, variance and the reciprocal by one sequential
      restoring divider, ``isqrt`` by the bit-by-bit restoring square root (exact).
    - ``GELU``: :func:`~golden.nonlinear.i_gelu` with ``q_clip`` (at most ``2**(width-1)``: a
      larger one gives the same result), ``q_b, q_c, q_one, m, r``.
    - ``ADD``: ``saturate(i + rshift_round(res, shift), out_bits)``, the residual add of
      :mod:`golden.transformer` (``o + _align(x, f_x, f_r)``).

    Refused commands (``fn`` 6 or 7, ``length`` 0 or above ``max_len``, ``out_bits`` outside
    2..``out_width`` for a row, ``recip_bits`` above 48 or (softmax) below ``out_bits``,
    ``q_ln2`` 0, a left shift above 63) take nothing from ``i`` or ``res`` and give one word
    with ``error`` and ``last`` set, ``data`` 0. Synchronous reset returns to idle from any
    state and drops the word on ``o``.

    Elaboration-time parameters: the widths and ``max_len``. Per command: everything in
    :func:`command_layout` (function, row length, output width, the kernel constants and
    shifts). The command builders (:meth:`softmax_command`, ...) compute and check them. The
    constant fields scale with ``width`` (``q_b``: ``width + 4`` bits, ``q_c``, ``q_one``:
    ``2 width + 8``; ``m``: 18; shifts: 8), which bounds the input scales to those that
    resolve a ``width``-bit row: softmax ``scale >= 1.353 / 2**(width + 3)``, GELU
    ``scale >~ 2**-(width + 1.7)``; a finer scale is a ``ValueError`` of the builder. Products
    are kept to 64 bits (numpy's int64, so exact wherever the golden kernel is).

    Parameters
    ----------
    width : int
        Signed width of the elements on ``i`` and ``res`` (and of ``gamma_q``, ``beta_q``),
        4 to 24.
    out_width : int
        Signed width of ``o.payload.data``, 2 to 32.
    max_len : int
        Row buffer depth, 1 to 65536.

    Members
    -------
    cmd : In(stream.Signature(command_layout(width, out_width, max_len)))
        Commands.
    i : In(stream.Signature(signed(width)))
        Row elements (and ``gamma_q`` / ``beta_q`` for the loads).
    res : In(stream.Signature(signed(width)))
        Second operand of ``ADD`` (the residual, before its shift).
    o : Out(stream.Signature(output_layout(out_width)))
        Words ``{data, last, error}``.
    busy : Out(1)
        A command is in progress.
    """

    def __init__(self, width=16, *, out_width=16, max_len=1024):
        self._width = check_int("width", width, 4, 24)
        self._out_width = check_int("out_width", out_width, 2, 32)
        self._max_len = check_int("max_len", max_len, 1, 65536)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(width, out_width, max_len))),
            "i": In(stream.Signature(signed(width))),
            "res": In(stream.Signature(signed(width))),
            "o": Out(stream.Signature(output_layout(out_width))),
            "busy": Out(1),
        })

    width = property(lambda self: self._width)
    out_width = property(lambda self: self._out_width)
    max_len = property(lambda self: self._max_len)

    # ---------------------------------------------------------------- derived sizes
    @property
    def _lb(self):
        return _len_bits(self._max_len)

    @property
    def exp_width(self):
        """Width of the stored i-exp values (signed)."""
        return 2 * self._width + 11

    @property
    def divider_cycles(self):
        """Cycles of one division (numerator bits plus a load and a result cycle)."""
        w, lb = self._width, self._lb
        return max(MAX_RECIP_BITS + 1, 2 * w + lb, w + lb + 3) + 2

    @property
    def _var_bits(self):
        return 2 * self._width + self._lb

    @property
    def sqrt_cycles(self):
        """Cycles of the square root (one result bit per cycle plus load and result)."""
        return (self._var_bits + 1) // 2 + 2

    pipeline_latency = 5

    def row_latency(self, fn, length):
        """Cycles from the row's last input element (accepted) to its first word valid on
        ``o``, with no backpressure (GELU, ADD: from each element to its word)."""
        fn = Function(fn)
        if fn == Function.SOFTMAX:
            return length + self._width + self.divider_cycles + 9
        if fn == Function.LAYERNORM:
            return length + 3 * self.divider_cycles + self.sqrt_cycles + 8
        if fn in (Function.GELU, Function.ADD):
            return self.pipeline_latency
        raise ValueError(f"fn must be a row function (SOFTMAX, LAYERNORM, GELU, ADD), not {fn!r}")

    def command_cycles(self, fn, length):
        """Cycles from a command's acceptance to the next command's, back to back with no
        idle input and no backpressure (the unit's occupancy per command): ``2 n + 1 +
        row_latency`` for softmax and LayerNorm, ``n + 1 + pipeline_latency`` for GELU and
        ADD, ``n + 2`` for the loads, 2 for a refused command."""
        fn = Function(fn)
        if fn in (Function.SOFTMAX, Function.LAYERNORM):
            return 2 * length + self.row_latency(fn, length)
        if fn in (Function.GELU, Function.ADD):
            return length + 1 + self.pipeline_latency
        return length + 2

    # ---------------------------------------------------------------- command builders
    def _length(self, length):
        return check_int("length", length, 1, self._max_len)

    def _out_bits(self, out_bits):
        return check_int("out_bits", out_bits, 2, self._out_width)

    @staticmethod
    def _fit(name, value, shape):
        lo = -(1 << (shape.width - 1)) if shape.signed else 0
        hi = (1 << (shape.width - (1 if shape.signed else 0))) - 1
        if not lo <= value <= hi:
            raise ValueError(f"{name} = {value} does not fit the unit's {shape.width}-bit "
                             f"{'signed' if shape.signed else 'unsigned'} field ({lo} to {hi})")
        return value

    def _params(self, fn):
        return command_layout(self._width, self._out_width, self._max_len)["params"].shape[fn].shape

    def softmax_command(self, length, scale, *, out_bits=8, recip_bits=32):
        """Command of ``i_softmax(row, scale, out_bits=, recip_bits=)``.

        Raises ``TypeError`` for parameters out of golden's ranges, ``ValueError`` when a
        constant of :func:`golden.nonlinear.exp_constants` does not fit its field.
        """
        length = self._length(length)
        out_bits = check_int("out_bits", out_bits, 2, min(16, self._out_width))   # golden's range
        recip_bits = check_int("recip_bits", recip_bits, out_bits, MAX_RECIP_BITS)
        c = nl.exp_constants(check_real("scale", scale, 0, lo_open=True))
        lay = self._params("softmax")
        p = {"q_ln2": min(c["q_ln2"], 1 << self._width), "recip_bits": recip_bits}
        for k in ("q_b", "q_c"):
            p[k] = self._fit(k, c[k], lay[k].shape)
        return {"fn": Function.SOFTMAX.value, "length": length, "out_bits": out_bits,
                "params": {"softmax": p}}

    def layernorm_command(self, length, *, gamma_frac, out_scale_log2, norm_frac=12,
                          recip_bits=24, out_bits=8):
        """Command of ``i_layernorm(row, gamma_q, beta_q, gamma_frac=, out_scale_log2=,
        norm_frac=, recip_bits=, out_bits=)`` with the loaded ``gamma_q``, ``beta_q``."""
        length, out_bits = self._length(length), self._out_bits(out_bits)
        recip_bits = check_int("recip_bits", recip_bits, 0, MAX_RECIP_BITS)
        norm_frac = check_int("norm_frac", norm_frac, 0, 63)
        gamma_frac = check_int("gamma_frac", gamma_frac, -128, 127)
        out_scale_log2 = check_int("out_scale_log2", out_scale_log2, -128, 127)
        if gamma_frac + norm_frac + out_scale_log2 < -MAX_LEFT_SHIFT:
            raise ValueError(f"gamma_frac + norm_frac + out_scale_log2 must be at least "
                             f"{-MAX_LEFT_SHIFT}, not {gamma_frac + norm_frac + out_scale_log2}")
        return {"fn": Function.LAYERNORM.value, "length": length, "out_bits": out_bits,
                "params": {"layernorm": {"recip_bits": recip_bits, "norm_frac": norm_frac,
                                         "gamma_frac": gamma_frac,
                                         "out_scale_log2": out_scale_log2}}}

    def gelu_command(self, length, *, q_clip, q_b, q_c, q_one, m, r, out_bits=8):
        """Command of ``i_gelu(row, q_clip=, q_b=, q_c=, q_one=, m=, r=, out_bits=)`` (the
        constants of :func:`golden.nonlinear.gelu_constants`)."""
        length, out_bits = self._length(length), self._out_bits(out_bits)
        lay = self._params("gelu")
        p = {"q_clip": min(check_int("q_clip", q_clip, 0), 1 << (self._width - 1))}
        for k, v in (("q_b", q_b), ("q_c", q_c), ("q_one", q_one), ("m", m)):
            p[k] = self._fit(k, check_int(k, v), lay[k].shape)
        p["r"] = check_int("r", r, -MAX_LEFT_SHIFT, 127)
        return {"fn": Function.GELU.value, "length": length, "out_bits": out_bits,
                "params": {"gelu": p}}

    def add_command(self, length, *, shift, out_bits):
        """Command of ``saturate(i + rshift_round(res, shift), out_bits)``."""
        length, out_bits = self._length(length), self._out_bits(out_bits)
        shift = check_int("shift", shift, -MAX_LEFT_SHIFT, 127)
        return {"fn": Function.ADD.value, "length": length, "out_bits": out_bits,
                "params": {"add": {"shift": shift}}}

    def load_command(self, length, which):
        """Command loading ``length`` elements of ``gamma_q`` (``which="gamma"``) or
        ``beta_q`` (``"beta"``) from ``i``."""
        length = self._length(length)
        if which not in ("gamma", "beta"):
            raise TypeError(f"which must be one of 'gamma', 'beta', not {which!r}")
        fn = Function.LOAD_GAMMA if which == "gamma" else Function.LOAD_BETA
        return {"fn": fn.value, "length": length, "out_bits": 0}

    # ---------------------------------------------------------------- hardware
    def elaborate(self, platform):
        m = Module()
        W, OW, N, LB = self._width, self._out_width, self._max_len, self._lb
        EW = self.exp_width
        NB = self.divider_cycles - 2                 # divider numerator bits (= steps)
        DB = EW + LB                                 # divider denominator bits
        VB = self._var_bits
        K = self.sqrt_cycles - 2                     # square-root result bits (= steps)
        AB = max(1, (N - 1).bit_length())

        state = Signal(_State)
        m.d.comb += self.busy.eq(state != _State.IDLE)

        # ------------------------------------------------------------ command registers
        cmd = self.cmd.payload
        fn = Signal(Function)
        n = Signal(LB)
        k = Signal(LB)                               # issue / load counter
        cnt = Signal(LB)                             # completions of an internal pass
        sm = Signal.like(cmd.params.softmax)
        ge = Signal.like(cmd.params.gelu)
        recip = Signal(6)                            # recip_bits (softmax, LayerNorm)
        shift_a = Signal(signed(10))     # softmax t, LayerNorm recip - norm_frac, ADD shift
        shift_b = Signal(signed(10))     # LayerNorm gamma_frac + norm_frac + out_scale_log2
        hi = Signal(signed(OW + 1))
        lo = Signal(signed(OW + 1))

        ln = cmd.params.layernorm
        c_shift_out = Signal(signed(10))
        m.d.comb += c_shift_out.eq(ln.gamma_frac + ln.norm_frac + ln.out_scale_log2)
        is_row = (cmd.fn == Function.SOFTMAX) | (cmd.fn == Function.LAYERNORM) | \
                 (cmd.fn == Function.GELU) | (cmd.fn == Function.ADD)
        bad = Signal()
        with m.Switch(cmd.fn):
            with m.Case(Function.SOFTMAX):
                m.d.comb += bad.eq((cmd.params.softmax.recip_bits > MAX_RECIP_BITS)
                                   | (cmd.params.softmax.recip_bits < cmd.out_bits)
                                   | (cmd.params.softmax.q_ln2 == 0))
            with m.Case(Function.LAYERNORM):
                m.d.comb += bad.eq((ln.recip_bits > MAX_RECIP_BITS)
                                   | (c_shift_out < -MAX_LEFT_SHIFT))
            with m.Case(Function.GELU):
                m.d.comb += bad.eq(cmd.params.gelu.r < -MAX_LEFT_SHIFT)
            with m.Case(Function.ADD):
                m.d.comb += bad.eq(cmd.params.add.shift < -MAX_LEFT_SHIFT)
            with m.Case(Function.LOAD_GAMMA, Function.LOAD_BETA):
                pass
            with m.Default():
                m.d.comb += bad.eq(1)
        refused = Signal()
        m.d.comb += refused.eq(bad | (cmd.length == 0) | (cmd.length > N)
                               | (is_row & ((cmd.out_bits < 2) | (cmd.out_bits > OW))))

        # ------------------------------------------------------------ row buffers
        m.submodules.row = row = memory.Memory(shape=unsigned(EW), depth=N, init=[])
        m.submodules.gamma = gam = memory.Memory(shape=signed(W), depth=N, init=[])
        m.submodules.beta = bet = memory.Memory(shape=signed(W), depth=N, init=[])
        row_w = row.write_port()
        row_r = row.read_port()
        gam_w, gam_r = gam.write_port(), gam.read_port()
        bet_w, bet_r = bet.write_port(), bet.read_port()
        for port in (gam_w, bet_w):
            m.d.comb += [port.addr.eq(k), port.data.eq(self.i.payload)]
        m.d.comb += [gam_r.addr.eq(row_r.addr), bet_r.addr.eq(row_r.addr),
                     gam_r.en.eq(row_r.en), bet_r.en.eq(row_r.en)]

        # ------------------------------------------------------------ row statistics
        max_q = Signal(signed(W))
        sum_q = Signal(signed(W + LB + 1))
        sum_e = Signal(signed(DB + 1))
        mu = Signal(signed(W + 1))
        sumsq = Signal(VB)
        var = Signal(VB)
        std = Signal(K + 1)
        f = Signal(MAX_RECIP_BITS + 1)

        # ------------------------------------------------------------ divider / square root
        d_cnt = Signal(range(max(NB, K) + 2))
        d_num = Signal(NB)
        d_den = Signal(DB)
        d_rem = Signal(DB + 1)
        d_quo = Signal(NB)
        d_neg = Signal()
        r2 = Signal(DB + 1)
        m.d.comb += r2.eq((d_rem << 1) | d_num[NB - 1])
        s_rem = Signal(K + 2)
        s_val = Signal(2 * K)
        s_root = Signal(K)
        s_r2 = Signal(K + 4)
        s_trial = Signal(K + 2)
        m.d.comb += [s_r2.eq((s_rem << 2) | s_val[2 * K - 2:]), s_trial.eq((s_root << 2) | 1)]

        def divide(num, den, done):
            """Division state body: load (d_cnt == NB + 1), NB steps, then ``done(quotient)``."""
            with m.If(d_cnt == NB + 1):
                m.d.sync += [d_num.eq(num), d_den.eq(den), d_rem.eq(0), d_quo.eq(0),
                             d_cnt.eq(NB)]
            with m.Elif(d_cnt != 0):
                with m.If(r2 >= d_den):
                    m.d.sync += [d_rem.eq(r2 - d_den), d_quo.eq((d_quo << 1) | 1)]
                with m.Else():
                    m.d.sync += [d_rem.eq(r2), d_quo.eq(d_quo << 1)]
                m.d.sync += [d_num.eq(d_num << 1), d_cnt.eq(d_cnt - 1)]
            with m.Else():
                done(Mux(d_den == 0, 0, d_quo))

        # ------------------------------------------------------------ EXP pass (softmax)
        issue = Signal()                              # an internal pass reads address k
        ex_v = [Signal(name=f"ex_v{j}") for j in range(W + 3)]
        ex_a = [Signal(AB, name=f"ex_a{j}") for j in range(W + 3)]
        m.d.sync += [ex_v[0].eq(issue & (state == _State.EXP)), ex_a[0].eq(k)]
        x0 = Signal(W)
        m.d.comb += x0.eq(max_q - row_r.data[:W].as_signed())
        rem, quo, xs = Const(0, W + 1), Const(0, W), x0
        for j in range(W):                            # long division x / q_ln2, one bit per stage
            t = Signal(W + 2, name=f"ex_t{j}")
            m.d.comb += t.eq((rem << 1) | xs[W - 1 - j])
            ge_ = t >= sm.q_ln2
            nrem, nquo, nx = (Signal(W + 1, name=f"ex_rem{j}"), Signal(W, name=f"ex_quo{j}"),
                              Signal(W, name=f"ex_x{j}"))
            m.d.sync += [nrem.eq(Mux(ge_, t - sm.q_ln2, t)), nquo.eq((quo << 1) | ge_), nx.eq(xs),
                         ex_v[j + 1].eq(ex_v[j]), ex_a[j + 1].eq(ex_a[j])]
            rem, quo, xs = nrem, nquo, nx
        ex_L = Signal(signed(EW))
        ex_z = Signal(W)
        tt = Signal(signed(W + 5))
        m.d.comb += tt.eq(sm.q_b - rem)
        m.d.sync += [ex_L.eq(tt * tt + sm.q_c), ex_z.eq(quo),
                     ex_v[W + 1].eq(ex_v[W]), ex_a[W + 1].eq(ex_a[W])]
        ex_e = Signal(signed(EW))
        zc = Mux(ex_z > 63, 63, ex_z)[:6]
        m.d.sync += [ex_e.eq(Mux(ex_z > 62, 0, ex_L >> zc)),
                     ex_v[W + 2].eq(ex_v[W + 1]), ex_a[W + 2].eq(ex_a[W + 1])]
        ex_done = ex_v[W + 2]

        # ------------------------------------------------------------ VAR pass (LayerNorm)
        va_v0, va_v1 = Signal(), Signal()
        va_sq = Signal(2 * W + 2)
        y0 = Signal(signed(W + 2))
        m.d.comb += y0.eq(row_r.data[:W].as_signed() - mu)
        m.d.sync += [va_v0.eq(issue & (state == _State.VAR)), va_v1.eq(va_v0),
                     va_sq.eq(y0 * y0)]

        # ------------------------------------------------------------ output pipeline
        ce = Signal()
        m.d.comb += ce.eq(~self.o.valid | self.o.ready)
        stream_src = (fn == Function.GELU) | (fn == Function.ADD)
        issuing = (state == _State.OUT) & (k < n)
        i_take = Signal()
        with m.If(issuing & stream_src):
            with m.If(fn == Function.ADD):
                m.d.comb += [self.i.ready.eq(ce & self.res.valid),
                             self.res.ready.eq(ce & self.i.valid)]
            with m.Else():
                m.d.comb += self.i.ready.eq(ce)
        m.d.comb += i_take.eq(self.i.valid & self.i.ready)
        out_issue = Signal()
        m.d.comb += out_issue.eq(Mux(stream_src, i_take, issuing & ce))

        v = [Signal(name=f"o_v{j}") for j in range(1, 6)]
        last = [Signal(name=f"o_last{j}") for j in range(1, 6)]
        q1, b1 = Signal(signed(W)), Signal(signed(W))
        with m.If(ce):
            m.d.sync += [v[0].eq(out_issue), last[0].eq(k == n - 1)]
            m.d.sync += [v[j + 1].eq(v[j]) for j in range(4)]
            m.d.sync += [last[j + 1].eq(last[j]) for j in range(4)]
            m.d.sync += [q1.eq(self.i.payload), b1.eq(self.res.payload)]

        def pipe(value, name):
            r = Signal(value.shape(), name=name)
            with m.If(ce):
                m.d.sync += r.eq(value)
            return r

        def delay(value, stages, name):
            for j in range(stages):
                value = pipe(value, f"{name}_d{j}")
            return value

        def saturate(x):
            return Mux(x > hi, hi, Mux(x < lo, lo, x))

        qs = Mux(stream_src, q1, row_r.data[:W].as_signed())
        es = row_r.data.as_signed()
        # softmax: p = clip(rshift_round(e f, t), 0, hi)
        sm2 = pipe(_s64(es * f), "sm_ef")
        sm3 = pipe(_rshift_round(sm2, shift_a), "sm_p")
        sm4 = pipe(Mux(sm3 > hi, hi, Mux(sm3 < 0, 0, sm3))[:OW].as_signed(), "sm_clip")
        sm5 = delay(sm4, 1, "sm")
        # LayerNorm: z = rshift_round(y f, recip - norm_frac); rshift_round(z gamma, ...) + beta
        y = qs - mu
        ln2 = pipe(_s64(y * f), "ln_yf")
        ln3 = pipe(_rshift_round(ln2, shift_a), "ln_z")
        g3 = delay(gam_r.data, 2, "ln_gamma")
        ln4 = pipe(_s64(ln3 * g3), "ln_zg")
        b4 = delay(bet_r.data, 3, "ln_beta")
        ln5 = pipe(saturate(_rshift_round(ln4, shift_b) + b4)[:OW].as_signed(), "ln_out")
        # GELU: L = (min(|q|, q_clip) + q_b)**2 + q_c; g = q (sign(q) L + q_one); requantize
        aq = Mux(qs < 0, -qs, qs)
        a = Mux(aq > ge.q_clip, ge.q_clip, aq)
        tg = Signal(signed(W + 5))
        m.d.comb += tg.eq(a + ge.q_b)
        gl2 = pipe(tg * tg + ge.q_c, "ge_L")
        gq2 = pipe(qs, "ge_q")
        gl3 = pipe(_s64(gq2 * (Mux(gq2 < 0, -gl2, gl2) + ge.q_one)), "ge_g")
        gl4 = pipe(_s64(gl3 * ge.m), "ge_gm")
        gl5 = pipe(saturate(_rshift_round(gl4, ge.r))[:OW].as_signed(), "ge_out")
        # ADD: saturate(i + rshift_round(res, shift))
        ad2 = pipe(saturate(q1 + _rshift_round(b1, shift_a))[:OW].as_signed(), "add_out")
        ad5 = delay(ad2, 3, "add")

        result = Signal(signed(OW))
        with m.Switch(fn):
            with m.Case(Function.SOFTMAX):
                m.d.comb += result.eq(sm5)
            with m.Case(Function.LAYERNORM):
                m.d.comb += result.eq(ln5)
            with m.Case(Function.GELU):
                m.d.comb += result.eq(gl5)
            with m.Case(Function.ADD):
                m.d.comb += result.eq(ad5)
        word = (state == _State.ACK) | (state == _State.ERR)
        m.d.comb += [
            self.o.valid.eq(v[4] | word),
            self.o.payload.data.eq(Mux(word, 0, result)),
            self.o.payload.last.eq(last[4] | word),
            self.o.payload.error.eq(state == _State.ERR),
        ]

        # ------------------------------------------------------------ read port
        m.d.comb += [row_r.addr.eq(k), row_r.en.eq(Mux(state == _State.OUT, ce, 1))]

        # ------------------------------------------------------------ sequencer
        def start_pass(next_state):
            m.d.sync += [state.eq(next_state), k.eq(0), cnt.eq(0)]

        with m.Switch(state):
            with m.Case(_State.IDLE):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    ob = cmd.out_bits
                    m.d.sync += [fn.eq(cmd.fn), n.eq(cmd.length), k.eq(0), cnt.eq(0),
                                 sm.eq(cmd.params.softmax), ge.eq(cmd.params.gelu),
                                 max_q.eq(-(1 << (W - 1))), sum_q.eq(0), sum_e.eq(0),
                                 sumsq.eq(0),
                                 hi.eq((Const(1, 33) << (ob - 1)[:5]) - 1),
                                 lo.eq(-(Const(1, 33) << (ob - 1)[:5]))]
                    with m.Switch(cmd.fn):
                        with m.Case(Function.SOFTMAX):
                            m.d.sync += [recip.eq(cmd.params.softmax.recip_bits),
                                         shift_a.eq(cmd.params.softmax.recip_bits - (ob - 1))]
                        with m.Case(Function.LAYERNORM):
                            m.d.sync += [recip.eq(ln.recip_bits),
                                         shift_a.eq(ln.recip_bits - ln.norm_frac),
                                         shift_b.eq(c_shift_out)]
                        with m.Case(Function.ADD):
                            m.d.sync += shift_a.eq(cmd.params.add.shift)
                    with m.If(refused):
                        m.d.sync += state.eq(_State.ERR)
                    with m.Elif((cmd.fn == Function.GELU) | (cmd.fn == Function.ADD)):
                        m.d.sync += state.eq(_State.OUT)
                    with m.Else():
                        m.d.sync += state.eq(_State.LOAD)

            with m.Case(_State.LOAD):
                m.d.comb += self.i.ready.eq(1)
                m.d.comb += [row_w.addr.eq(k), row_w.data.eq(self.i.payload.as_signed()),
                             row_w.en.eq(self.i.valid & ((fn == Function.SOFTMAX)
                                                         | (fn == Function.LAYERNORM))),
                             gam_w.en.eq(self.i.valid & (fn == Function.LOAD_GAMMA)),
                             bet_w.en.eq(self.i.valid & (fn == Function.LOAD_BETA))]
                with m.If(self.i.valid):
                    m.d.sync += [k.eq(k + 1), sum_q.eq(sum_q + self.i.payload)]
                    with m.If(self.i.payload > max_q):
                        m.d.sync += max_q.eq(self.i.payload)
                    with m.If(k == n - 1):
                        with m.Switch(fn):
                            with m.Case(Function.SOFTMAX):
                                start_pass(_State.EXP)
                            with m.Case(Function.LAYERNORM):
                                m.d.sync += [state.eq(_State.MEAN), d_cnt.eq(NB + 1)]
                            with m.Default():
                                m.d.sync += state.eq(_State.ACK)

            with m.Case(_State.EXP):
                m.d.comb += issue.eq(k < n)
                with m.If(issue):
                    m.d.sync += k.eq(k + 1)
                m.d.comb += [row_w.addr.eq(ex_a[W + 2]), row_w.data.eq(ex_e),
                             row_w.en.eq(ex_done)]
                with m.If(ex_done):
                    m.d.sync += [sum_e.eq(sum_e + ex_e), cnt.eq(cnt + 1)]
                    with m.If(cnt == n - 1):
                        m.d.sync += [state.eq(_State.RECIP), d_cnt.eq(NB + 1)]

            with m.Case(_State.MEAN):
                # mu = floor((2 s + n) / (2 n)), a flooring division of a signed numerator
                num = Signal(signed(W + LB + 3))
                m.d.comb += num.eq(2 * sum_q + n)
                with m.If(d_cnt == NB + 1):
                    m.d.sync += d_neg.eq(num < 0)

                def mean_done(qv):
                    m.d.sync += mu.eq(Mux(d_neg, -qv, qv))
                    start_pass(_State.VAR)
                divide(Mux(num < 0, -num + 2 * n - 1, num), 2 * n, mean_done)

            with m.Case(_State.VAR):
                m.d.comb += issue.eq(k < n)
                with m.If(issue):
                    m.d.sync += k.eq(k + 1)
                with m.If(va_v1):
                    m.d.sync += [sumsq.eq(sumsq + va_sq), cnt.eq(cnt + 1)]
                    with m.If(cnt == n - 1):
                        m.d.sync += [state.eq(_State.VARDIV), d_cnt.eq(NB + 1)]

            with m.Case(_State.VARDIV):
                def var_done(qv):
                    m.d.sync += [var.eq(qv), state.eq(_State.SQRT), d_cnt.eq(K + 1)]
                divide(sumsq, n, var_done)

            with m.Case(_State.SQRT):
                with m.If(d_cnt == K + 1):
                    m.d.sync += [s_val.eq(var), s_rem.eq(0), s_root.eq(0), d_cnt.eq(K)]
                with m.Elif(d_cnt != 0):
                    with m.If(s_r2 >= s_trial):
                        m.d.sync += [s_rem.eq(s_r2 - s_trial), s_root.eq((s_root << 1) | 1)]
                    with m.Else():
                        m.d.sync += [s_rem.eq(s_r2), s_root.eq(s_root << 1)]
                    m.d.sync += [s_val.eq(s_val << 2), d_cnt.eq(d_cnt - 1)]
                with m.Else():
                    m.d.sync += [std.eq(Mux(s_root == 0, 1, s_root)), state.eq(_State.RECIP),
                                 d_cnt.eq(NB + 1)]

            with m.Case(_State.RECIP):
                def recip_done(qv):
                    m.d.sync += f.eq(qv)
                    start_pass(_State.OUT)
                den = Mux(fn == Function.SOFTMAX, Mux(sum_e < 0, 0, sum_e), std)
                divide((Const(1, NB) << recip)[:NB], den, recip_done)

            with m.Case(_State.OUT):
                with m.If(out_issue):
                    m.d.sync += k.eq(k + 1)
                with m.If(self.o.valid & self.o.ready & last[4]):
                    m.d.sync += state.eq(_State.IDLE)

            with m.Case(_State.ACK, _State.ERR):
                with m.If(self.o.ready):
                    m.d.sync += state.eq(_State.IDLE)

        return m
