"""The stages of :class:`hdl.systolic.core.SystolicCore`: the GEMM operand fetch, the GEMM
write-back (output stage and layouts), the nonlinear row feeder and writer, and the word
sender. Each stage reads its command's fields from ports that hold them for the whole
command, starts on a ``start`` strobe and works while ``run`` is high; memory reads go
through :func:`read_signature` ports (a synchronous read: ``data`` is the word at the ``addr``
of the last cycle with ``en`` high), memory writes out as :func:`write_request_layout`
streams."""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import systolic_core as gsc

__all__ = ["word_layout", "read_signature", "write_request_layout", "GemmFetch",
           "GemmWriteback", "RowFeeder", "RowWriter", "WordSender"]

_DIM = gsc.DIM_BITS + 1
_LD = gsc.ADDR_BITS + 1
_ADDR = gsc.ADDR_BITS + gsc.DIM_BITS + 2      # wide enough for any address sum


def word_layout(length):
    """A memory word: ``L`` signed 16-bit elements."""
    return data.ArrayLayout(signed(16), length)


def read_signature(addr_width, length):
    """A memory read client: ``addr``, ``en`` out, ``data`` (the word) in."""
    return wiring.Signature({"addr": Out(addr_width), "en": Out(1),
                             "data": In(word_layout(length))})


def write_request_layout(addr_width, length):
    """A memory write: ``addr``, ``data``, ``en`` (one bit per element)."""
    return data.StructLayout({"addr": unsigned(addr_width), "data": word_layout(length),
                              "en": unsigned(length)})


def _logs(cfg):
    return tuple(v.bit_length() - 1 for v in (cfg.length, cfg.rows, cfg.cols))


def _gemm_layout(cfg):
    from .core import command_layout
    return command_layout(cfg)["body"].shape["gemm"].shape


def _nl_layout(cfg):
    from .core import command_layout
    return command_layout(cfg)["body"].shape["nl"].shape


class GemmFetch(wiring.Component):
    """GEMM operand fetch: the array's input vectors, folds ``M`` outer, ``N`` inner, ``K``.

    Each cycle that the read stage moves on, both read ports are addressed for the next read
    and the previous reads' words are held (``en`` low) while the array does not take the
    vector they complete. ``A^T`` / ``B`` (fast layouts): one read per input vector; ``A``:
    ``rows`` reads (one element each), ``B^T``: ``cols`` reads; both: ``rows``; the elements
    of a gathered vector collect in registers. ``a_eye`` makes ``A`` the identity (``K``
    restricted to the fold's ``rows``). Operands are the low 8 bits of each element.

    Members
    -------
    start : In(1)
        Load the first fold (one cycle before ``run``).
    run : In(1)
        The GEMM runs (reads issue and vectors go out only then).
    cmd : In(gemm fields of the command)
    lda, ldb : In(17)
        Leading dimensions of the stored A (or A^T) and B (or B^T) in words.
    ra, rb : Out(read_signature(...))
        The A and B read ports.
    o : Out(stream.Signature(SystolicArray.i_layout))
        Input vectors for the array.
    """

    def __init__(self, cfg, addr_width, i_layout):
        self._cfg = cfg
        super().__init__({
            "start": In(1), "run": In(1),
            "cmd": In(_gemm_layout(cfg)), "lda": In(_LD), "ldb": In(_LD),
            "ra": Out(read_signature(addr_width, cfg.length)),
            "rb": Out(read_signature(addr_width, cfg.length)),
            "o": Out(stream.Signature(i_layout)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, L = cfg.rows, cfg.cols, cfg.length
        lgL, lgR, lgC = _logs(cfg)
        g, ra, rb = self.cmd, self.ra, self.rb
        gm, gn, gk = g.m, g.n, g.k

        f_act = Signal()                # reads to issue
        f_m0, f_n0, f_k = Signal(_DIM), Signal(_DIM), Signal(_DIM)
        f_j = Signal(range(R))          # element of a gathered vector
        d_valid = Signal()              # the read ports hold an issued read
        d_final = Signal()              # ... the last read of an input vector
        d_last = Signal()               # ... of the fold's last vector
        d_j = Signal(range(R))
        d_k, d_m0, d_n0 = Signal(_DIM), Signal(_DIM), Signal(_DIM)
        d_aok, d_bok = Signal(), Signal()
        d_lane_a, d_lane_b = Signal(range(L)), Signal(range(L))   # gathered elements' lanes
        d_ga, d_gb = Signal(_DIM + 1), Signal(_DIM + 1)            # fast slices' columns
        gath_a = ~g.a_t & ~g.a_eye
        gath_b = g.b_t
        j_end = Mux(gath_a, R - 1, Mux(gath_b, C - 1, 0))
        k_start = Mux(g.a_eye, f_m0, 0)
        k_end = Mux(g.a_eye, Mux(f_m0 + R < gk, f_m0 + R, gk), gk)   # exclusive

        adv = Signal()                   # the read stage moves on
        issue = Signal()
        m.d.comb += [adv.eq(~(d_valid & d_final) | self.o.ready),
                     issue.eq(f_act & self.run & adv)]

        fa_m = f_m0 + f_j
        fb_n = f_n0 + f_j
        a_in = fa_m < gm
        b_in = (fb_n < gn) & (f_j < C)
        ga, gb = f_m0 + g.a_col, f_n0 + g.b_col     # column of a fast slice
        ka, kb = f_k + g.a_col, f_k + g.b_col       # column of a gathered element
        a_fast = g.a_addr + f_k * self.lda + (ga >> lgL)
        a_gath = g.a_addr + fa_m * self.lda + (ka >> lgL)
        b_fast = g.b_addr + f_k * self.ldb + (gb >> lgL)
        b_gath = g.b_addr + fb_n * self.ldb + (kb >> lgL)
        m.d.comb += [ra.addr.eq(Mux(gath_a, Mux(a_in, a_gath, g.a_addr), a_fast)),
                     rb.addr.eq(Mux(gath_b, Mux(b_in, b_gath, g.b_addr), b_fast)),
                     ra.en.eq(adv), rb.en.eq(adv)]

        with m.If(adv & self.run):
            m.d.sync += [d_valid.eq(issue), d_final.eq(f_j == j_end),
                         d_last.eq(f_k + 1 == k_end), d_j.eq(f_j), d_k.eq(f_k), d_m0.eq(f_m0),
                         d_n0.eq(f_n0), d_aok.eq(a_in), d_bok.eq(b_in), d_lane_a.eq(ka[:lgL]),
                         d_lane_b.eq(kb[:lgL]), d_ga.eq(ga), d_gb.eq(gb)]
        with m.If(issue):
            with m.If(f_j != j_end):
                m.d.sync += f_j.eq(f_j + 1)
            with m.Else():
                m.d.sync += f_j.eq(0)
                with m.If(f_k + 1 != k_end):
                    m.d.sync += f_k.eq(f_k + 1)
                with m.Elif(f_n0 + C < gn):
                    m.d.sync += [f_n0.eq(f_n0 + C), f_k.eq(k_start)]
                with m.Elif(f_m0 + R < gm):
                    m.d.sync += [f_n0.eq(0), f_m0.eq(f_m0 + R),
                                 f_k.eq(Mux(g.a_eye, f_m0 + R, 0))]
                with m.Else():
                    m.d.sync += f_act.eq(0)
        with m.If(self.start):
            m.d.sync += [f_act.eq(1), f_m0.eq(0), f_n0.eq(0), f_k.eq(0), f_j.eq(0),
                         d_valid.eq(0)]

        # operand vectors: gathered elements in registers, fast ones from the read word
        g_a = Signal(data.ArrayLayout(signed(8), R))
        g_b = Signal(data.ArrayLayout(signed(8), C))
        elem_a, elem_b = Signal(signed(8)), Signal(signed(8))
        m.d.comb += [elem_a.eq(Mux(d_aok, ra.data[d_lane_a][:8], 0)),
                     elem_b.eq(Mux(d_bok, rb.data[d_lane_b][:8], 0))]
        with m.If(d_valid):
            for i in range(R):
                with m.If(d_j == i):
                    m.d.sync += g_a[i].eq(elem_a)
            for i in range(C):
                with m.If(d_j == i):
                    m.d.sync += g_b[i].eq(elem_b)
        a_grp = (d_ga >> lgR)[:max(1, lgL - lgR)]
        b_grp = (d_gb >> lgC)[:max(1, lgL - lgC)]

        def fast(word, grp, size, i, name):
            v = Signal(signed(8), name=name)
            if L > size:
                with m.Switch(grp):
                    for gi in range(L // size):
                        with m.Case(gi):
                            m.d.comb += v.eq(word[gi * size + i][:8])
            else:
                m.d.comb += v.eq(word[i][:8])
            return v

        for i in range(R):
            eye = (d_m0 + i) == d_k
            m.d.comb += self.o.payload.a[i].eq(Mux(g.a_eye, eye, Mux(
                gath_a, Mux(d_j == i, elem_a, g_a[i]), fast(ra.data, a_grp, R, i, f"a_fast{i}"))))
        for i in range(C):
            m.d.comb += self.o.payload.b[i].eq(Mux(
                gath_b, Mux(d_j == i, elem_b, g_b[i]), fast(rb.data, b_grp, C, i, f"b_fast{i}")))
        m.d.comb += [self.o.valid.eq(d_valid & d_final & self.run),
                     self.o.payload.last.eq(d_last)]
        return m


class GemmWriteback(wiring.Component):
    """GEMM write-back: the array's result columns through the output stage into memory.

    Output stage of each element: the rounding right shift by ``out_shift`` (half up), then
    saturation to ``out_width`` bits (2..16), exactly :func:`golden.systolic.output_stage`;
    ``out_width`` 0 keeps 32 bits as two elements. Writes per output vector (column ``n`` of
    the fold's tile): ``C^T`` one (a ``rows``-lane slice of row ``n``), wide ``C^T``
    ``rows / min(rows, L/2)``, ``C`` one per element (``min(rows, M - m0)``), a column past
    ``N`` none (taken at once). ``done`` rises the cycle after the last vector is taken.

    Members
    -------
    start, run : In(1)
    cmd : In(gemm fields of the command)
    ldc : In(17)
    i : In(stream.Signature(SystolicArray.o_layout))
    w : Out(stream.Signature(write_request_layout(...)))
    done : Out(1)
    """

    def __init__(self, cfg, addr_width, o_layout):
        self._cfg = cfg
        super().__init__({
            "start": In(1), "run": In(1),
            "cmd": In(_gemm_layout(cfg)), "ldc": In(_LD),
            "i": In(stream.Signature(o_layout)),
            "w": Out(stream.Signature(write_request_layout(addr_width, cfg.length))),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, L = cfg.rows, cfg.cols, cfg.length
        lgL, lgR, _ = _logs(cfg)
        g, w = self.cmd, self.w
        gm, gn = g.m, g.n
        wide = g.out_width == 0

        ow_hi, ow_lo = Signal(signed(17)), Signal(signed(17))
        w_m0, w_n0 = Signal(_DIM), Signal(_DIM)
        w_v = Signal(range(C))
        w_i = Signal(range(R))
        w_done = Signal()
        m.d.comb += self.done.eq(w_done)

        shift = g.out_shift
        ys, yw = [], []
        for i in range(R):
            x = self.i.payload.data[i].as_signed()
            xr = Signal(signed(cfg.acc_width + 1), name=f"round{i}")
            m.d.comb += xr.eq(Mux(shift == 0, x, ((x >> (shift - 1)[:6]) + 1) >> 1))
            y = Signal(signed(16), name=f"y{i}")
            m.d.comb += y.eq(Mux(xr > ow_hi, ow_hi, Mux(xr < ow_lo, ow_lo, xr)))
            ys.append(y)
            y32 = Signal(signed(max(32, cfg.acc_width + 1)), name=f"wide{i}")
            m.d.comb += y32.eq(xr)
            yw.append(y32[:32])
        w_n = w_n0 + w_v
        w_m = w_m0 + w_i
        i_end = Mux(gm - w_m0 < R, gm - w_m0, R) - 1
        w_col = Signal(_DIM + 1)                 # C^T: column of the vector's slice
        m.d.comb += w_col.eq(w_m0 + g.c_col)
        w_grp = (w_col >> lgR)[:max(1, lgL - lgR)] if L > R else Const(0)
        E = min(R, L // 2)                   # wide C^T: E elements (2 E lanes) per write
        beats = R // E
        wm_b = Signal(gsc.DIM_BITS + 2)       # first element of this write
        m.d.comb += wm_b.eq(w_m0 + w_i * E)
        wb_pos = Signal(gsc.DIM_BITS + 4)
        m.d.comb += wb_pos.eq((wm_b << 1) + g.c_col)
        wb_word = wb_pos >> lgL
        wb_grp = (wb_pos[:lgL] >> E.bit_length())[:max(1, lgL - E.bit_length())] \
            if 2 * E < L else Const(0)

        take = Signal()
        granted = Signal()
        m.d.comb += granted.eq(w.valid & w.ready)
        with m.If(self.run & self.i.valid & ~w_done):
            with m.If(w_n >= gn):
                m.d.comb += take.eq(1)
            with m.Elif(g.c_t & ~wide):
                m.d.comb += [w.valid.eq(1),
                             w.payload.addr.eq(g.c_addr + w_n * self.ldc + (w_col >> lgL)),
                             take.eq(granted)]
                for lane in range(L):
                    i = lane % R
                    m.d.comb += [w.payload.data[lane].eq(ys[i]),
                                 w.payload.en[lane].eq((w_grp == lane // R) & (w_m0 + i < gm))]
            with m.Elif(g.c_t):
                m.d.comb += [w.valid.eq(1),
                             w.payload.addr.eq(g.c_addr + w_n * self.ldc + wb_word),
                             take.eq(granted & (w_i == beats - 1))]
                for lane in range(L):
                    e, half = (lane % (2 * E)) // 2, lane % 2
                    v = Signal(16, name=f"lane{lane}")
                    with m.Switch(w_i):
                        for b in range(beats):
                            with m.Case(b):
                                m.d.comb += v.eq(yw[b * E + e][16 * half:16 * half + 16])
                    m.d.comb += [w.payload.data[lane].eq(v),
                                 w.payload.en[lane].eq((wb_grp == lane // (2 * E))
                                                       & (wm_b + e < gm))]
                with m.If(granted):
                    m.d.sync += w_i.eq(Mux(w_i == beats - 1, 0, w_i + 1))
            with m.Else():
                y_i, y_w = Signal(signed(16)), Signal(32)
                with m.Switch(w_i):
                    for i in range(R):
                        with m.Case(i):
                            m.d.comb += [y_i.eq(ys[i]), y_w.eq(yw[i])]
                col = Signal(gsc.DIM_BITS + 4)
                m.d.comb += col.eq(Mux(wide, w_n << 1, w_n) + g.c_col)
                lane0 = col[:lgL]
                m.d.comb += [w.valid.eq(1),
                             w.payload.addr.eq(g.c_addr + w_m * self.ldc + (col >> lgL)),
                             w.payload.en.eq(Mux(wide, Const(3, L), Const(1, L)) << lane0),
                             take.eq(granted & (w_i == i_end))]
                m.d.comb += [w.payload.data[lane].eq(Mux(wide, y_w[16 * (lane % 2):][:16], y_i))
                             for lane in range(L)]
                with m.If(granted):
                    m.d.sync += w_i.eq(Mux(w_i == i_end, 0, w_i + 1))
        m.d.comb += self.i.ready.eq(take)
        with m.If(take):
            with m.If(w_v != C - 1):
                m.d.sync += w_v.eq(w_v + 1)
            with m.Else():
                m.d.sync += w_v.eq(0)
                with m.If(w_n0 + C < gn):
                    m.d.sync += w_n0.eq(w_n0 + C)
                with m.Elif(w_m0 + R < gm):
                    m.d.sync += [w_n0.eq(0), w_m0.eq(w_m0 + R)]
                with m.Else():
                    m.d.sync += w_done.eq(1)
        with m.If(self.start):
            m.d.sync += [w_m0.eq(0), w_n0.eq(0), w_v.eq(0), w_i.eq(0), w_done.eq(0),
                         ow_hi.eq((Const(1, 17) << (g.out_width - 1)[:4]) - 1),
                         ow_lo.eq(-(Const(1, 17) << (g.out_width - 1)[:4]))]
        return m


class RowFeeder(wiring.Component):
    """Nonlinear input: the elements of row ``row`` (and of the second operand), one read per
    element (``in_t``: the stored matrix is the transpose), held while the unit stalls.

    Members
    -------
    start, run : In(1)
    cmd : In(nl fields of the command)
    row : In(16)
    ld : In(17)
        Leading dimension of the stored input (and second operand).
    ra, rb : Out(read_signature(...))
    o : Out(stream.Signature({"x": signed(16), "x2": signed(16)}))
    """

    def __init__(self, cfg, addr_width):
        self._cfg = cfg
        super().__init__({
            "start": In(1), "run": In(1),
            "cmd": In(_nl_layout(cfg)), "row": In(gsc.DIM_BITS), "ld": In(_ADDR),
            "ra": Out(read_signature(addr_width, cfg.length)),
            "rb": Out(read_signature(addr_width, cfg.length)),
            "o": Out(stream.Signature(data.StructLayout({"x": signed(16), "x2": signed(16)}))),
        })

    def elaborate(self, platform):
        m = Module()
        lgL, _, _ = _logs(self._cfg)
        nc, row, ld = self.cmd, self.row, self.ld
        e_c = Signal(_DIM)               # next element to read
        e_act = Signal()
        e_valid = Signal()
        e_lane = Signal(range(self._cfg.length))
        adv, issue = Signal(), Signal()
        m.d.comb += [adv.eq(~e_valid | self.o.ready), issue.eq(e_act & self.run & adv)]
        for port, base in ((self.ra, nc.in_addr), (self.rb, nc.in2_addr)):
            m.d.comb += [port.addr.eq(Mux(nc.in_t, base + e_c * ld + (row >> lgL),
                                          base + row * ld + (e_c >> lgL))),
                         port.en.eq(adv)]
        with m.If(adv & self.run):
            m.d.sync += [e_valid.eq(issue), e_lane.eq(Mux(nc.in_t, row, e_c)[:lgL])]
        with m.If(issue):
            m.d.sync += e_c.eq(e_c + 1)
            with m.If(e_c + 1 == nc.cmd.length):
                m.d.sync += e_act.eq(0)
        with m.If(self.start):
            m.d.sync += [e_c.eq(0), e_act.eq(1), e_valid.eq(0)]
        m.d.comb += [self.o.valid.eq(e_valid & self.run),
                     self.o.payload.x.eq(self.ra.data[e_lane]),
                     self.o.payload.x2.eq(self.rb.data[e_lane])]
        return m


class RowWriter(wiring.Component):
    """Nonlinear output: each word of a row function to element ``(row, c)`` of the result
    (``out_t``: stored transposed), one write per word; error and acknowledgement words (and
    the loads' words) are taken at once without a write.

    Members
    -------
    start, run : In(1)
    cmd : In(nl fields of the command)
    row : In(16)
    ld : In(17)
    i : In(stream.Signature(hdl.nonlinear.output_layout(16)))
    w : Out(stream.Signature(write_request_layout(...)))
    """

    def __init__(self, cfg, addr_width, word_shape):
        self._cfg = cfg
        super().__init__({
            "start": In(1), "run": In(1),
            "cmd": In(_nl_layout(cfg)), "row": In(gsc.DIM_BITS), "ld": In(_ADDR),
            "i": In(stream.Signature(word_shape)),
            "w": Out(stream.Signature(write_request_layout(addr_width, cfg.length))),
        })

    def elaborate(self, platform):
        m = Module()
        L = self._cfg.length
        lgL, _, _ = _logs(self._cfg)
        nc, w = self.cmd, self.w
        o_c = Signal(_DIM)               # next word of the row
        out_r = Mux(nc.out_t, o_c, self.row)
        out_c = Mux(nc.out_t, self.row, o_c)
        row_fn = nc.cmd.fn.as_value() <= gsc.NL_FUNCTIONS["ADD"]
        with m.If(self.run & self.i.valid):
            with m.If(self.i.payload.error | ~row_fn):
                m.d.comb += self.i.ready.eq(1)
            with m.Else():
                m.d.comb += [w.valid.eq(1),
                             w.payload.addr.eq(nc.out_addr + out_r * self.ld + (out_c >> lgL)),
                             w.payload.en.eq(Const(1, L) << out_c[:lgL]),
                             self.i.ready.eq(w.ready)]
                m.d.comb += [w.payload.data[lane].eq(self.i.payload.data) for lane in range(L)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += o_c.eq(o_c + 1)
        with m.If(self.start):
            m.d.sync += o_c.eq(0)
        return m


class WordSender(wiring.Component):
    """``count`` words from ``src`` out on ``o`` (one per cycle, held under backpressure), tag
    offsets ``dest_addr + j``. ``done`` is high in the cycle the last word leaves (or later).

    Members
    -------
    start, run : In(1)
    src, count : In(34)
        First word and number of words (sampled at ``start``).
    dest, layer, dest_addr : In(...)
    ra : Out(read_signature(...))
    o : Out(stream.Signature(hdl.noc.network_interface.send_layout(ni)))
    done : Out(1)
    """

    def __init__(self, cfg, addr_width, send_shape):
        self._cfg = cfg
        super().__init__({
            "start": In(1), "run": In(1),
            "src": In(_ADDR), "count": In(_ADDR),
            "dest": In(cfg.dest_bits), "layer": In(cfg.layer_bits),
            "dest_addr": In(cfg.offset_bits),
            "ra": Out(read_signature(addr_width, cfg.length)),
            "o": Out(stream.Signature(send_shape)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        src, cnt, idx = Signal(_ADDR), Signal(_ADDR), Signal(_ADDR)
        act, valid = Signal(), Signal()
        off = Signal(self._cfg.offset_bits)
        adv, issue = Signal(), Signal()
        m.d.comb += [adv.eq(~valid | self.o.ready), issue.eq(act & self.run & adv),
                     self.ra.addr.eq(src + idx), self.ra.en.eq(adv)]
        with m.If(adv & self.run):
            m.d.sync += [valid.eq(issue), off.eq(self.dest_addr + idx)]
        with m.If(issue):
            m.d.sync += idx.eq(idx + 1)
            with m.If(idx + 1 == cnt):
                m.d.sync += act.eq(0)
        with m.If(self.start):
            m.d.sync += [src.eq(self.src), cnt.eq(self.count), idx.eq(0), act.eq(1),
                         valid.eq(0)]
        m.d.comb += [self.o.valid.eq(valid & self.run),
                     self.o.payload.data.eq(self.ra.data),
                     self.o.payload.dest.eq(self.dest),
                     self.o.payload.tag.layer.eq(self.layer),
                     self.o.payload.tag.stage.eq(0),
                     self.o.payload.tag.offset.eq(off),
                     self.done.eq(~act & (~valid | self.o.ready))]
        return m
