"""Crossbar-wise dequantizer: multiply by the crossbar's fixed-point scale, round, saturate."""

from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.quant import ROUNDING_MODES

from ..lib.signatures import strobe
from ._check import check_bool, check_choice, check_int
from .shift_add import _ubits

__all__ = ["Dequantizer", "cfg_layout", "dq_output_layout"]

MULTIPLIERS = ("csd", "generic")


def cfg_layout(*, xbars, scale_bits):
    """Payload of a scale-register write."""
    return data.StructLayout({"xbar": unsigned(_ubits(xbars)), "scale": signed(scale_bits)})


def dq_output_layout(*, columns, xbars, out_bits):
    """Payload of one dequantized column result."""
    return data.StructLayout({
        "xbar": unsigned(_ubits(xbars)),
        "column": unsigned(_ubits(columns)),
        "value": signed(out_bits),
        "saturated": unsigned(1),
    })


class Dequantizer(wiring.Component):
    """Multiply column results by their crossbar's scale with shifts and adds, round, saturate.

    ``out = saturate(round_shift(value * scale[xbar], scale_frac_bits, rounding), out_bits)``
    (:func:`golden.quant.dequantize`), bit-exact. The scale registers hold the raw signed
    scales (``scale_bits`` each, Atleus' 16-bit scale registers). With ``multiplier="csd"`` the
    selected scale is recoded into canonical signed digits (``pos - neg == scale``, no two
    adjacent non-zero digits, :func:`golden.shift_add.csd_digits`, one ``3 * x`` adder), so each
    digit pair ``(2k, 2k+1)`` holds at most one non-zero digit and the product is the sum of
    ``ceil(scale_bits / 2)`` shifted terms ``0``, ``+-value`` or ``+-2 * value``, added by an
    adder tree (pipelined one level per cycle when ``pipelined_tree``). ``multiplier="generic"``
    uses one ``*`` (a DSP-style multiplier) for comparison.

    Latency and throughput: one result per cycle, ``latency`` cycles from input to output
    (``3 + ceil(log2(ceil(scale_bits / 2)))`` for ``"csd"`` with ``pipelined_tree``, else 3). One global
    stall: a stage advances when ``o`` is empty or ready, so ``i.ready`` follows ``o.ready``
    combinationally. Scale writes on ``cfg`` are always accepted and apply to the results that
    enter on ``i`` in later cycles (results already inside the pipeline keep the old scale);
    reset clears the scales to 0. ``saturated`` is sticky: set by any emitted saturated
    result, cleared by reset or ``clear_saturated``.

    Parameters
    ----------
    in_width : int
        Width of the signed input values, 2 to 64.
    columns, xbars : int
        Ranges of the ``column`` and ``xbar`` tags, 1 to 1024 and 1 to 256.
    scale_bits : int
        Signed scale width, 2 to 32.
    scale_frac_bits : int
        Fractional bits of the scale (the right shift), 0 to ``in_width + scale_bits - 1``.
    out_bits : int
        Signed output width, 2 to 64.
    rounding : {"half_up", "half_even", "floor"}
    multiplier : {"csd", "generic"}
    pipelined_tree : bool
        Register every level of the CSD adder tree (short critical path) or none (the same
        latency as the generic multiplier).
    scale_registers : bool
        Own the scale registers and the ``cfg`` port; ``False`` takes the scales from the
        ``scales`` input instead (registers shared by several dequantizers).

    Members
    -------
    i : In(stream.Signature(sa_output_layout(...)))
        ``xbar, column, value`` (the :class:`ShiftAddAccumulator` output).
    o : Out(stream.Signature(dq_output_layout(...)))
        ``xbar, column, value, saturated``.
    cfg : In(strobe(cfg_layout(...)))
        Scale-register writes ``xbar, scale`` (a strobe); only with ``scale_registers``.
    scales : In(data.ArrayLayout(signed(scale_bits), xbars))
        The scales, only without ``scale_registers``.
    saturated : Out(1)
        Sticky saturation flag.
    clear_saturated : In(1)
        Clears ``saturated``.
    """

    def __init__(self, *, in_width=32, columns=64, xbars=8, scale_bits=16, scale_frac_bits=14,
                 out_bits=16, rounding="half_up", multiplier="csd", pipelined_tree=True,
                 scale_registers=True):
        from .shift_add import sa_output_layout
        self._in_width = check_int("in_width", in_width, 2, 64)
        self._columns = check_int("columns", columns, 1, 1024)
        self._xbars = check_int("xbars", xbars, 1, 256)
        self._scale_bits = check_int("scale_bits", scale_bits, 2, 32)
        self._scale_frac_bits = check_int("scale_frac_bits", scale_frac_bits, 0, in_width + scale_bits - 1)
        self._out_bits = check_int("out_bits", out_bits, 2, 64)
        self._rounding = check_choice("rounding", rounding, ROUNDING_MODES)
        self._multiplier = check_choice("multiplier", multiplier, MULTIPLIERS)
        self._pipelined_tree = check_bool("pipelined_tree", pipelined_tree)
        self._scale_registers = check_bool("scale_registers", scale_registers)
        self._terms = -(-scale_bits // 2)
        super().__init__({
            "i": In(stream.Signature(sa_output_layout(columns=columns, xbars=xbars, acc_width=in_width))),
            "o": Out(stream.Signature(dq_output_layout(columns=columns, xbars=xbars, out_bits=out_bits))),
            **({"cfg": In(strobe(cfg_layout(xbars=xbars, scale_bits=scale_bits)))}
               if scale_registers else
               {"scales": In(data.ArrayLayout(signed(scale_bits), xbars))}),
            "saturated": Out(1),
            "clear_saturated": In(1),
        })

    in_width = property(lambda self: self._in_width)
    columns = property(lambda self: self._columns)
    xbars = property(lambda self: self._xbars)
    scale_bits = property(lambda self: self._scale_bits)
    scale_frac_bits = property(lambda self: self._scale_frac_bits)
    out_bits = property(lambda self: self._out_bits)
    rounding = property(lambda self: self._rounding)
    multiplier = property(lambda self: self._multiplier)
    pipelined_tree = property(lambda self: self._pipelined_tree)
    scale_registers = property(lambda self: self._scale_registers)

    @property
    def tree_levels(self):
        """Pipeline stages of the CSD adder tree (0 when not pipelined or generic)."""
        if self._multiplier == "csd" and self._pipelined_tree:
            return (self._terms - 1).bit_length()
        return 0

    @property
    def latency(self):
        """Register stages from ``i`` to ``o``."""
        return 3 + self.tree_levels

    def elaborate(self, platform):
        m = Module()
        sb, iw = self._scale_bits, self._in_width
        pw = iw + sb                       # product width
        ip = self.i.payload

        # Scale registers: one raw signed scale per crossbar (or the shared ones of the group).
        if self._scale_registers:
            scale = Array(Signal(signed(sb), name=f"scale{k}") for k in range(self._xbars))
            with m.If(self.cfg.valid):
                m.d.sync += scale[self.cfg.payload.xbar].eq(self.cfg.payload.scale)
        else:
            scale = Array(self.scales[k] for k in range(self._xbars))

        ce = Signal()
        m.d.comb += [ce.eq(~self.o.valid | self.o.ready), self.i.ready.eq(ce)]

        def stage(valid_in, tags_in):
            v = Signal()
            tags = [Signal.like(t) for t in tags_in]
            with m.If(ce):
                m.d.sync += [v.eq(valid_in)] + [a.eq(b) for a, b in zip(tags, tags_in)]
            return v, tags

        def reg(value, width, name):
            r = Signal(signed(width), name=name)
            with m.If(ce):
                m.d.sync += r.eq(value)
            return r

        # Stage 1: partial products (CSD) or the product (generic).
        v, (xbar, col) = stage(self.i.valid, [ip.xbar, ip.column])
        if self._multiplier == "csd":
            # Canonical signed digits of the selected scale: y = 3x, pos = (y & ~x) >> 1,
            # neg = (~y & x) >> 1 (golden.shift_add.csd_digits).
            x = Signal(sb + 2)
            y = Signal(sb + 2)
            pos = Signal(sb)
            neg = Signal(sb)
            m.d.comb += [x.eq(scale[ip.xbar]), y.eq(x * 3),
                         pos.eq((y & ~x) >> 1), neg.eq((~y & x) >> 1)]
            # Digit pair (2k, 2k+1) holds at most one non-zero digit: the term is 0, +-v or +-2v,
            # weighted by 4**k.
            terms = []
            for k in range(self._terms):
                bits = [2 * k] + ([2 * k + 1] if 2 * k + 1 < sb else [])
                nz = pos[bits[0]] | neg[bits[0]]
                dbl = Signal(1, name=f"dbl{k}")
                sub = Signal(1, name=f"sub{k}")
                if len(bits) == 2:
                    nz = nz | pos[bits[1]] | neg[bits[1]]
                    m.d.comb += [dbl.eq(pos[bits[1]] | neg[bits[1]]),
                                 sub.eq(neg[bits[0]] | neg[bits[1]])]
                else:
                    m.d.comb += sub.eq(neg[bits[0]])
                mag = Mux(dbl, ip.value << 1, ip.value)
                term = Mux(nz, Mux(sub, -mag, mag), 0)
                terms.append((term, iw + 2, 2 * k))
            level = [(reg(t, w, f"pp{k}") if self._pipelined_tree else t, w, sh)
                     for k, (t, w, sh) in enumerate(terms)]
            depth = 0
            while len(level) > 1:
                nxt = []
                for k in range(0, len(level), 2):
                    if k + 1 == len(level):
                        # An odd term out still needs this level's register, or it would
                        # meet the next input's terms one stage early.
                        t, w, sh = level[k]
                        nxt.append((reg(t, w, f"pass{depth}") if self._pipelined_tree else t,
                                    w, sh))
                        continue
                    (a, wa, sa), (b, wb, sb2) = level[k], level[k + 1]
                    width = min(max(wa, wb + sb2 - sa) + 1, pw)
                    total = a + (b << (sb2 - sa))
                    nxt.append((reg(total, width, f"sum{depth}_{k // 2}") if self._pipelined_tree else total,
                                width, sa))
                level = nxt
                depth += 1
                if self._pipelined_tree:
                    v, (xbar, col) = stage(v, [xbar, col])
            prod = level[0][0] if self._pipelined_tree else reg(level[0][0], pw, "prod")
        else:
            prod = reg(ip.value * scale[ip.xbar], pw, "prod")

        # Stage: rounding shift.
        f = self._scale_frac_bits
        rounded = Signal(signed(pw + 1))
        if f == 0:
            r = prod
        elif self._rounding == "floor":
            r = prod >> f
        elif self._rounding == "half_up":
            r = (prod + (1 << (f - 1))) >> f
        else:
            q = prod >> f
            rem = prod.as_unsigned()[:f]
            half = 1 << (f - 1)
            r = q + ((rem > half) | ((rem == half) & q[0]))
        with m.If(ce):
            m.d.sync += rounded.eq(r)
        v, (xbar, col) = stage(v, [xbar, col])

        # Stage: saturation into the output register.
        lo, hi = -(1 << (self._out_bits - 1)), (1 << (self._out_bits - 1)) - 1
        over, under = rounded > hi, rounded < lo
        op = self.o.payload
        with m.If(ce):
            m.d.sync += [self.o.valid.eq(v), op.xbar.eq(xbar), op.column.eq(col),
                         op.value.eq(Mux(over, hi, Mux(under, lo, rounded))),
                         op.saturated.eq(over | under)]
        with m.If(self.clear_saturated):
            m.d.sync += self.saturated.eq(0)
        with m.Elif(self.o.valid & self.o.ready & op.saturated):
            m.d.sync += self.saturated.eq(1)
        return m
