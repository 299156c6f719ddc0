"""The chip's systolic core: a :class:`SystolicArray`, a :class:`NonlinearUnit`, one local
memory and a command sequencer (GEMM, NL, SEND), with the core streams of the chip."""

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from golden import systolic_core as gsc
from golden.network_interface import NiConfig

from ..noc.network_interface import send_layout
from ..nonlinear import Function, NonlinearUnit
from ..nonlinear import command_layout as nl_command_layout
from ..registry import block
from .array import SystolicArray

__all__ = ["SystolicCore", "Opcode", "command_layout", "write_layout"]


class Opcode(enum.Enum, shape=2):
    """Command opcodes (3 is refused)."""
    GEMM = 0
    NL = 1
    SEND = 2


def _layout(spec, name=None, cfg=None):
    if spec[0] in ("struct", "union"):
        fields = {}
        for item in spec[1]:
            key, sub = gsc._norm(item)
            if key == "op":
                fields[key] = Opcode
            elif key == "cmd":
                fields[key] = nl_command_layout(gsc.ELEM_BITS, gsc.ELEM_BITS, cfg.nl_max_len)
            else:
                fields[key] = _layout(sub, key, cfg)
        cls = data.StructLayout if spec[0] == "struct" else data.UnionLayout
        return cls(fields)
    width, is_signed = spec
    return signed(width) if is_signed else unsigned(width)


def command_layout(cfg):
    """The command payload for a :class:`golden.systolic_core.CoreConfig`: the layout of
    :func:`golden.systolic_core.command_fields` (``op`` an :class:`Opcode`, ``body.nl.cmd``
    the nonlinear unit's :func:`hdl.nonlinear.command_layout`)."""
    return _layout(gsc.command_fields(cfg), cfg=cfg)


def write_layout(mem_words, length):
    """A memory write: ``addr``, ``data`` (``ArrayLayout(signed(16), L)``)."""
    return data.StructLayout({"addr": unsigned(ceil_log2(mem_words)),
                              "data": data.ArrayLayout(signed(16), length)})


class _State(enum.Enum, shape=3):
    IDLE = 0
    CHECK = 1
    GEMM = 2
    NL_CMD = 3
    NL_ROW = 4
    SEND = 5


@block("systolic_core",
       rows="PE rows of the array (a power of two)",
       cols="PE columns of the array (a power of two, <= rows)",
       length="vector length L: elements per memory word and NoC vector (rows divides it)",
       mem_words="local memory words (0: sram_bits / (16 L))",
       sram_bits="SRAM bits when mem_words is 0 (Atleus: 1 Mb)",
       ni="(Python only) the chip's NiConfig; sets length, nodes and the tag widths",
       node="this core's node id, -1: from the node_id input port",
       nodes="NoC nodes (dest field width)",
       payload_width="NoC flit payload bits",
       layer_bits="tag layer bits", stage_bits="tag stage bits", offset_bits="tag offset bits",
       acc_width="array accumulator width",
       nl_max_len="nonlinear unit row buffer (longest row)",
       nl_lanes="nonlinear elements per cycle (1: one NonlinearUnit)")
class SystolicCore(wiring.Component):
    """Systolic core: GEMM, nonlinear and send commands over one local memory.

    One command at a time from ``cmd`` (:func:`command_layout`, encoded by
    :func:`golden.systolic_core.encode_command`, semantics and refusals in
    :mod:`golden.systolic_core`): the core latches it (1 cycle), checks its fields (1
    cycle; a bad command sets ``error`` and is dropped), runs it, and takes the next command
    in the cycle after the last result was written or sent.

    - ``GEMM``: folds of ``rows x cols`` output tiles (``M`` outer, ``N`` inner, ``K`` any
      length) through the :class:`SystolicArray`. Each input vector is one memory word per
      operand when memory holds ``A^T`` and ``B`` (two read ports: one vector per cycle, the
      array's own schedule), else ``rows`` (``A``) or ``cols`` (``B^T``) element reads per
      vector; ``a_eye`` generates the identity (a transpose of ``B`` through the array, ``rows``
      input vectors per fold). The write-back applies ``out_shift`` (round half up) and the
      ``out_width`` saturation and writes one word per output vector (``C^T``: the vector is
      one row of ``C^T``, a ``rows``-lane slice of a word) or one element per cycle (``C``).
    - ``NL``: per row one command to the :class:`NonlinearUnit`, the row's elements read one
      per cycle (any layout), its words written one element per cycle.
    - ``SEND`` (and a GEMM/NL result for another node): one word per cycle on ``o``, with
      backpressure.

    Memory writes: ``wr`` has priority over the core's own writes (``wr.ready`` is always
    1, so the NoC is never held by the core); a core write waits while ``wr`` writes.

    Parameters
    ----------
    rows, cols : int
        Array size (powers of two, ``cols <= rows``).
    length : int
        ``L``: elements (signed 16-bit) per memory word and per NoC vector.
    mem_words : int
        Memory words (0: ``sram_bits // (16 L)``), at most 32768.
    sram_bits : int
        SRAM size when ``mem_words`` is 0 (Atleus: 1 Mb per core).
    ni : NiConfig or None
        The chip's :class:`golden.network_interface.NiConfig` (``elem_width`` 16); when
        given it sets ``length``, ``nodes``, ``payload_width`` and the tag widths.
    node : int
        This core's node id (a GEMM/NL result for it stays in local memory), or -1: the id
        comes from the ``node_id`` input port (one core module for every node).
    nodes : int
        NoC nodes.
    payload_width, layer_bits, stage_bits, offset_bits : int
        The chip's :class:`golden.network_interface.NiConfig` (``elem_width = 16``).
    acc_width : int
        Array accumulator width.
    nl_max_len : int
        Longest nonlinear row (the unit's row buffer).
    nl_lanes : int
        Nonlinear elements per cycle: 1 (one :class:`NonlinearUnit`); other values are
        refused.

    Members
    -------
    cmd : In(stream.Signature(command_layout(config)))
        Commands.
    wr : In(stream.Signature(write_layout(mem_words, length)))
        Memory writes (always ready).
    o : Out(stream.Signature(hdl.noc.network_interface.send_layout(ni)))
        Vectors out: ``data``, ``dest``, ``tag`` (``layer``, ``stage`` 0, ``offset``).
    busy : Out(1)
        A command is executing (or offered on ``cmd``).
    error : Out(1)
        Sticky: a command was refused.
    node_id : In(dest_bits)
        This core's node id (only with ``node=-1``).
    """

    def __init__(self, rows=128, cols=32, *, ni=None, length=128, mem_words=0,
                 sram_bits=1 << 20, node=-1, nodes=64, payload_width=32, layer_bits=6,
                 stage_bits=4, offset_bits=16, acc_width=32, nl_max_len=1024, nl_lanes=1):
        if ni is not None:
            if not isinstance(ni, NiConfig):
                raise TypeError(f"ni must be a golden.network_interface.NiConfig, not {ni!r}")
            if ni.elem_width != 16:
                raise ValueError(f"ni.elem_width must be 16, not {ni.elem_width}")
            length, nodes, payload_width = ni.length, ni.nodes, ni.payload_width
            layer_bits, stage_bits, offset_bits = ni.layer_bits, ni.stage_bits, ni.offset_bits
        if not isinstance(mem_words, int) or mem_words < 0:
            raise TypeError(f"mem_words must be a non-negative integer, not {mem_words!r}")
        if not isinstance(sram_bits, int) or sram_bits < 1:
            raise TypeError(f"sram_bits must be a positive integer, not {sram_bits!r}")
        if not isinstance(length, int) or length < 1:
            raise TypeError(f"length must be a positive integer, not {length!r}")
        if not isinstance(nodes, int) or nodes < 1:
            raise TypeError(f"nodes must be a positive integer, not {nodes!r}")
        if not isinstance(node, int) or not -1 <= node < nodes:
            raise TypeError(f"node must be an integer from -1 to {nodes - 1}, not {node!r}")
        if nl_lanes != 1:
            raise ValueError(f"nl_lanes must be 1 (the core has one NonlinearUnit, one element "
                             f"per cycle), not {nl_lanes!r}")
        words = mem_words or gsc.sram_words(sram_bits, length)
        if words < 1:
            raise ValueError(f"sram_bits ({sram_bits}) must hold at least one word of "
                             f"16 x {length} bits")
        self._node = node
        self._cfg = gsc.CoreConfig(rows=rows, cols=cols, length=length, mem_words=words,
                                   node=max(node, 0), nodes=nodes, layer_bits=layer_bits,
                                   stage_bits=stage_bits, offset_bits=offset_bits,
                                   acc_width=acc_width, nl_max_len=nl_max_len)
        self._ni = NiConfig(payload_width=payload_width, elem_width=16, length=length,
                            nodes=nodes, layer_bits=layer_bits, stage_bits=stage_bits,
                            offset_bits=offset_bits)
        members = {
            "cmd": In(stream.Signature(command_layout(self._cfg))),
            "wr": In(stream.Signature(write_layout(words, length))),
            "o": Out(stream.Signature(send_layout(self._ni))),
            "busy": Out(1),
            "error": Out(1),
        }
        if node < 0:
            members["node_id"] = In(self._cfg.dest_bits)
        super().__init__(members)

    config = property(lambda self: self._cfg, doc="The :class:`golden.systolic_core.CoreConfig`")
    ni = property(lambda self: self._ni, doc="The :class:`golden.network_interface.NiConfig`")
    rows = property(lambda self: self._cfg.rows)
    cols = property(lambda self: self._cfg.cols)
    length = property(lambda self: self._cfg.length)
    mem_words = property(lambda self: self._cfg.mem_words)
    node = property(lambda self: self._node, doc="The node id, or -1: the ``node_id`` port")
    nodes = property(lambda self: self._cfg.nodes)
    acc_width = property(lambda self: self._cfg.acc_width)
    nl_max_len = property(lambda self: self._cfg.nl_max_len)
    command_bits = property(lambda self: self._cfg.command_bits)

    # ------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, L, W = cfg.rows, cfg.cols, cfg.length, cfg.mem_words
        lgL, lgR, lgC = L.bit_length() - 1, R.bit_length() - 1, C.bit_length() - 1
        AW = ceil_log2(W)
        AB = gsc.ADDR_BITS + gsc.DIM_BITS + 2         # wide enough for any address sum

        m.submodules.array = arr = SystolicArray(R, C, in_width=gsc.IN_WIDTH,
                                                 acc_width=cfg.acc_width, drain="cols")
        m.submodules.nl = nlu = NonlinearUnit(gsc.ELEM_BITS, out_width=gsc.ELEM_BITS,
                                              max_len=cfg.nl_max_len)
        m.submodules.mem = mem = memory.Memory(shape=data.ArrayLayout(signed(16), L), depth=W,
                                               init=[])
        wp = mem.write_port(granularity=1)
        ra = mem.read_port()
        rb = mem.read_port()

        state = Signal(_State)
        c = Signal(command_layout(cfg))             # the command being run
        g, nc, sd = c.body.gemm, c.body.nl, c.body.send
        m.d.comb += self.busy.eq((state != _State.IDLE) | self.cmd.valid)

        def words(ncols):
            return (ncols + (L - 1)) >> lgL

        # ---------------------------------------------------------------- field checks
        def region(base, nrows, ncols, ld):
            """(fits in memory, effective ld, words spanned)."""
            w = words(ncols)
            eld = Mux(ld == 0, w, ld)
            span = Signal(AB, name="span")
            m.d.comb += span.eq((nrows - 1) * eld + w)
            ok = (ld == 0) | (ld >= w)
            return ok & (base + span <= W), eld, span

        gm, gn, gk = g.m, g.n, g.k
        ga_r, ga_c = Mux(g.a_t, gk, gm), Mux(g.a_t, gm, gk)
        gb_r, gb_c = Mux(g.b_t, gn, gk), Mux(g.b_t, gk, gn)
        wide = g.out_width == 0                      # 32-bit results, two lanes each
        gc_r, gc_c = Mux(g.c_t, gn, gm), Mux(g.c_t, gm, gn) << wide
        a_ok, a_ld, _ = region(g.a_addr, ga_r, ga_c, g.a_ld)
        b_ok, b_ld, _ = region(g.b_addr, gb_r, gb_c, g.b_ld)
        c_ok, c_ld, c_span = region(g.c_addr, gc_r, gc_c, g.c_ld)

        nlen = nc.cmd.length
        nfn = nc.cmd.fn
        ni_r, ni_c = Mux(nc.in_t, nlen, nc.rows), Mux(nc.in_t, nc.rows, nlen)
        no_r, no_c = Mux(nc.out_t, nlen, nc.rows), Mux(nc.out_t, nc.rows, nlen)
        i_ok, i_ld, _ = region(nc.in_addr, ni_r, ni_c, nc.in_ld)
        i2_ok, _, _ = region(nc.in2_addr, ni_r, ni_c, nc.in_ld)
        o_ok, o_ld, o_span = region(nc.out_addr, no_r, no_c, nc.out_ld)
        nl_row_fn = nfn.as_value() <= Function.ADD.value

        own = self.node_id if self._node < 0 else self._node
        remote = c.dest != own
        top = (1 << cfg.offset_bits) - 1

        def dest_ok(span):
            return ~remote | ((c.dest < cfg.nodes) & (c.dest_addr + span <= top))

        gemm_ok = ((gm != 0) & (gn != 0) & (gk != 0) & (wide | (g.out_width >= 2))
                   & (g.out_width <= gsc.ELEM_BITS) & (g.out_shift < cfg.acc_width)
                   & (~g.a_eye | (gm == gk)) & (g.a_eye | a_ok) & b_ok & c_ok & dest_ok(c_span))
        nl_ok = ((nc.rows != 0) & (nlen != 0) & (nlen <= cfg.nl_max_len) & i_ok
                 & ((nfn != Function.ADD) | i2_ok)
                 & (~nl_row_fn | (o_ok & dest_ok(o_span))))
        send_ok = ((sd.count != 0) & (sd.src + sd.count <= W) & (c.dest < cfg.nodes)
                   & (c.dest_addr + sd.count <= top))

        # ---------------------------------------------------------------- registers
        lda, ldb, ldc = (Signal(gsc.ADDR_BITS + 1, name=n) for n in ("lda", "ldb", "ldc"))
        s_src = Signal(AB)          # send phase: first word, count, index
        s_cnt = Signal(AB)
        error = Signal()
        m.d.comb += self.error.eq(error)

        # hi / lo bounds of the output stage (from out_width)
        ow_hi = Signal(signed(17))
        ow_lo = Signal(signed(17))

        # ---------------------------------------------------------------- write port
        cw_req = Signal()
        cw_addr = Signal(AW)
        cw_data = Signal(data.ArrayLayout(signed(16), L))
        cw_en = Signal(L)
        granted = Signal()
        m.d.comb += [self.wr.ready.eq(1), granted.eq(cw_req & ~self.wr.valid)]
        with m.If(self.wr.valid):
            m.d.comb += [wp.addr.eq(self.wr.payload.addr), wp.data.eq(self.wr.payload.data),
                         wp.en.eq(Const((1 << L) - 1, L))]
        with m.Elif(cw_req):
            m.d.comb += [wp.addr.eq(cw_addr), wp.data.eq(cw_data), wp.en.eq(cw_en)]

        # ---------------------------------------------------------------- GEMM fetch
        f_act = Signal()                # issuing
        f_m0 = Signal(gsc.DIM_BITS + 1)
        f_n0 = Signal(gsc.DIM_BITS + 1)
        f_k = Signal(gsc.DIM_BITS + 1)
        f_j = Signal(range(R))
        d_valid = Signal()              # read ports hold an issued read
        d_final = Signal()              # ... the last read of an input vector
        d_last = Signal()               # ... of the fold's last vector
        d_j = Signal(range(R))
        d_k = Signal(gsc.DIM_BITS + 1)
        d_m0 = Signal(gsc.DIM_BITS + 1)
        d_n0 = Signal(gsc.DIM_BITS + 1)
        d_aok = Signal()
        d_bok = Signal()
        d_lane = Signal(range(L))
        gath_a = ~g.a_t & ~g.a_eye
        gath_b = g.b_t
        j_end = Mux(gath_a, R - 1, Mux(gath_b, C - 1, 0))
        k_start = Mux(g.a_eye, f_m0, 0)
        k_end = Mux(g.a_eye, Mux(f_m0 + R < gk, f_m0 + R, gk), gk)   # exclusive

        adv = Signal()                   # the read stage moves on
        m.d.comb += adv.eq(~(d_valid & d_final) | arr.i.ready)
        issue = Signal()
        m.d.comb += issue.eq(f_act & (state == _State.GEMM) & adv)

        # addresses of this issue
        fa_m = f_m0 + f_j
        fb_n = f_n0 + f_j
        a_fast = g.a_addr + f_k * lda + (f_m0 >> lgL)
        a_gath = g.a_addr + fa_m * lda + (f_k >> lgL)
        b_fast = g.b_addr + f_k * ldb + (f_n0 >> lgL)
        b_gath = g.b_addr + fb_n * ldb + (f_k >> lgL)
        a_in = fa_m < gm
        b_in = (fb_n < gn) & (f_j < C)
        gemm_ra = Mux(gath_a, Mux(a_in, a_gath, g.a_addr), a_fast)
        gemm_rb = Mux(gath_b, Mux(b_in, b_gath, g.b_addr), b_fast)

        with m.If(adv & (state == _State.GEMM)):
            m.d.sync += [d_valid.eq(issue), d_final.eq(f_j == j_end),
                         d_last.eq(f_k + 1 == k_end), d_j.eq(f_j), d_k.eq(f_k), d_m0.eq(f_m0),
                         d_n0.eq(f_n0), d_aok.eq(a_in), d_bok.eq(b_in),
                         d_lane.eq(f_k[:lgL] if lgL else 0)]
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

        # operand vectors
        g_a = Signal(data.ArrayLayout(signed(8), R))
        g_b = Signal(data.ArrayLayout(signed(8), C))
        elem_a = Signal(signed(8))
        elem_b = Signal(signed(8))
        m.d.comb += [elem_a.eq(Mux(d_aok, ra.data[d_lane][:8], 0)),
                     elem_b.eq(Mux(d_bok, rb.data[d_lane][:8], 0))]
        with m.If(d_valid):
            for i in range(R):
                with m.If(d_j == i):
                    m.d.sync += g_a[i].eq(elem_a)
            for i in range(C):
                with m.If(d_j == i):
                    m.d.sync += g_b[i].eq(elem_b)
        a_grp = (d_m0 >> lgR)[:max(1, lgL - lgR)] if L > R else 0
        b_grp = (d_n0 >> lgC)[:max(1, lgL - lgC)] if L > C else 0
        for i in range(R):
            fast = Signal(signed(8), name=f"a_fast{i}")
            if L > R:
                with m.Switch(a_grp):
                    for gi in range(L // R):
                        with m.Case(gi):
                            m.d.comb += fast.eq(ra.data[gi * R + i][:8])
            else:
                m.d.comb += fast.eq(ra.data[i][:8])
            eye = (d_m0 + i) == d_k
            m.d.comb += arr.i.payload.a[i].eq(
                Mux(g.a_eye, eye, Mux(gath_a, Mux(d_j == i, elem_a, g_a[i]), fast)))
        for i in range(C):
            fast = Signal(signed(8), name=f"b_fast{i}")
            if L > C:
                with m.Switch(b_grp):
                    for gi in range(L // C):
                        with m.Case(gi):
                            m.d.comb += fast.eq(rb.data[gi * C + i][:8])
            else:
                m.d.comb += fast.eq(rb.data[i][:8])
            m.d.comb += arr.i.payload.b[i].eq(
                Mux(gath_b, Mux(d_j == i, elem_b, g_b[i]), fast))
        m.d.comb += [arr.i.valid.eq(d_valid & d_final & (state == _State.GEMM)),
                     arr.i.payload.last.eq(d_last)]

        # ---------------------------------------------------------------- GEMM write-back
        w_m0 = Signal(gsc.DIM_BITS + 1)
        w_n0 = Signal(gsc.DIM_BITS + 1)
        w_v = Signal(range(C))
        w_i = Signal(range(R))
        w_done = Signal()
        shift = g.out_shift
        ys, yw = [], []
        for i in range(R):
            x = arr.o.payload.data[i].as_signed()
            xr = Signal(signed(cfg.acc_width + 1), name=f"wb_round{i}")
            m.d.comb += xr.eq(Mux(shift == 0, x, ((x >> (shift - 1)[:6]) + 1) >> 1))
            y = Signal(signed(16), name=f"wb_y{i}")
            m.d.comb += y.eq(Mux(xr > ow_hi, ow_hi, Mux(xr < ow_lo, ow_lo, xr)))
            ys.append(y)
            y32 = Signal(signed(max(32, cfg.acc_width + 1)), name=f"wb_wide{i}")
            m.d.comb += y32.eq(xr)
            yw.append(y32[:32])
        w_n = w_n0 + w_v
        w_m = w_m0 + w_i
        i_end = Mux(gm - w_m0 < R, gm - w_m0, R) - 1
        w_grp = (w_m0 >> lgR)[:max(1, lgL - lgR)] if L > R else Const(0)
        # wide C^T: E elements (2 E lanes) per write, R / E writes per vector
        E = min(R, L // 2)
        beats = R // E
        wm_b = Signal(gsc.DIM_BITS + 2)              # first element of this write
        m.d.comb += wm_b.eq(w_m0 + w_i * E)
        wb_word = (wm_b << 1) >> lgL
        wb_grp = ((wm_b << 1)[:lgL] >> (E.bit_length()))[:max(1, lgL - E.bit_length())] \
            if 2 * E < L else Const(0)
        take = Signal()                  # the array's output vector is consumed
        gemm_wb = (state == _State.GEMM) & arr.o.valid & ~w_done
        with m.If(gemm_wb):
            with m.If(w_n >= gn):
                m.d.comb += take.eq(1)
            with m.Elif(g.c_t & ~wide):
                m.d.comb += [cw_req.eq(1),
                             cw_addr.eq(g.c_addr + w_n * ldc + (w_m0 >> lgL)),
                             take.eq(granted)]
                for lane in range(L):
                    i = lane % R
                    m.d.comb += [cw_data[lane].eq(ys[i]),
                                 cw_en[lane].eq((w_grp == lane // R) & (w_m0 + i < gm))]
            with m.Elif(g.c_t):
                m.d.comb += [cw_req.eq(1),
                             cw_addr.eq(g.c_addr + w_n * ldc + wb_word),
                             take.eq(granted & (w_i == beats - 1))]
                for lane in range(L):
                    e, half = (lane % (2 * E)) // 2, lane % 2
                    v = Signal(16, name=f"wb_lane{lane}")
                    with m.Switch(w_i):
                        for b in range(beats):
                            with m.Case(b):
                                m.d.comb += v.eq(yw[b * E + e][16 * half:16 * half + 16])
                    m.d.comb += [cw_data[lane].eq(v),
                                 cw_en[lane].eq((wb_grp == lane // (2 * E)) & (wm_b + e < gm))]
                with m.If(granted):
                    m.d.sync += w_i.eq(Mux(w_i == beats - 1, 0, w_i + 1))
            with m.Else():
                y_i = Signal(signed(16))
                y_w = Signal(32)
                with m.Switch(w_i):
                    for i in range(R):
                        with m.Case(i):
                            m.d.comb += [y_i.eq(ys[i]), y_w.eq(yw[i])]
                lane0 = Mux(wide, (w_n << 1)[:lgL], w_n[:lgL])
                m.d.comb += [cw_req.eq(1),
                             cw_addr.eq(g.c_addr + w_m * ldc + Mux(wide, (w_n << 1) >> lgL,
                                                                    w_n >> lgL)),
                             cw_en.eq(Mux(wide, Const(3, L), Const(1, L)) << lane0),
                             take.eq(granted & (w_i == i_end))]
                m.d.comb += [cw_data[lane].eq(Mux(wide, y_w[16 * (lane % 2):][:16], y_i))
                             for lane in range(L)]
                with m.If(granted):
                    m.d.sync += w_i.eq(Mux(w_i == i_end, 0, w_i + 1))
        m.d.comb += arr.o.ready.eq(take)
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

        # ---------------------------------------------------------------- NL feeder
        n_row = Signal(gsc.DIM_BITS)                 # current row
        e_c = Signal(gsc.DIM_BITS + 1)               # next element to read
        e_act = Signal()
        o_c = Signal(gsc.DIM_BITS + 1)               # next word to write
        e_valid = Signal()
        e_lane = Signal(range(L))
        e_adv = Signal()
        m.d.comb += e_adv.eq(~e_valid | nlu.i.ready)
        e_issue = Signal()
        m.d.comb += e_issue.eq(e_act & (state == _State.NL_ROW) & e_adv)
        nl_ra = Mux(nc.in_t, nc.in_addr + e_c * i_ld + (n_row >> lgL),
                    nc.in_addr + n_row * i_ld + (e_c >> lgL))
        nl_rb = Mux(nc.in_t, nc.in2_addr + e_c * i_ld + (n_row >> lgL),
                    nc.in2_addr + n_row * i_ld + (e_c >> lgL))
        lane_sel = Mux(nc.in_t, n_row, e_c)
        with m.If(e_adv & (state == _State.NL_ROW)):
            m.d.sync += [e_valid.eq(e_issue), e_lane.eq(lane_sel[:lgL] if lgL else 0)]
        with m.If(e_issue):
            m.d.sync += e_c.eq(e_c + 1)
            with m.If(e_c + 1 == nlen):
                m.d.sync += e_act.eq(0)
        m.d.comb += [nlu.i.valid.eq(e_valid & (state == _State.NL_ROW)),
                     nlu.res.valid.eq(e_valid & (state == _State.NL_ROW)),
                     nlu.i.payload.eq(ra.data[e_lane]),
                     nlu.res.payload.eq(rb.data[e_lane])]
        m.d.comb += nlu.cmd.payload.eq(nc.cmd)

        # NL results
        nl_take = Signal()
        out_r = Mux(nc.out_t, o_c, n_row)
        out_c = Mux(nc.out_t, n_row, o_c)
        with m.If((state == _State.NL_ROW) & nlu.o.valid):
            with m.If(nlu.o.payload.error | ~nl_row_fn):
                m.d.comb += nl_take.eq(1)
            with m.Else():
                m.d.comb += [cw_req.eq(1),
                             cw_addr.eq(nc.out_addr + out_r * o_ld + (out_c >> lgL)),
                             cw_en.eq(Const(1, L) << out_c[:lgL]),
                             nl_take.eq(granted)]
                m.d.comb += [cw_data[lane].eq(nlu.o.payload.data) for lane in range(L)]
        m.d.comb += nlu.o.ready.eq(nl_take)

        # ---------------------------------------------------------------- send
        s_idx = Signal(AB)
        s_act = Signal()
        s_valid = Signal()
        s_off = Signal(cfg.offset_bits)
        s_adv = Signal()
        m.d.comb += s_adv.eq(~s_valid | self.o.ready)
        s_issue = Signal()
        m.d.comb += s_issue.eq(s_act & (state == _State.SEND) & s_adv)
        with m.If(s_adv & (state == _State.SEND)):
            m.d.sync += [s_valid.eq(s_issue), s_off.eq(c.dest_addr + s_idx)]
        with m.If(s_issue):
            m.d.sync += s_idx.eq(s_idx + 1)
            with m.If(s_idx + 1 == s_cnt):
                m.d.sync += s_act.eq(0)
        m.d.comb += [self.o.valid.eq(s_valid & (state == _State.SEND)),
                     self.o.payload.data.eq(ra.data),
                     self.o.payload.dest.eq(c.dest),
                     self.o.payload.tag.layer.eq(c.layer),
                     self.o.payload.tag.stage.eq(0),
                     self.o.payload.tag.offset.eq(s_off)]

        # ---------------------------------------------------------------- read ports
        with m.Switch(state):
            with m.Case(_State.GEMM):
                m.d.comb += [ra.addr.eq(gemm_ra), rb.addr.eq(gemm_rb),
                             ra.en.eq(adv), rb.en.eq(adv)]
            with m.Case(_State.NL_ROW):
                m.d.comb += [ra.addr.eq(nl_ra), rb.addr.eq(nl_rb),
                             ra.en.eq(e_adv), rb.en.eq(e_adv)]
            with m.Case(_State.SEND):
                m.d.comb += [ra.addr.eq(s_src + s_idx), ra.en.eq(s_adv)]

        # ---------------------------------------------------------------- sequencer
        def finish(span, base):
            with m.If(remote):
                m.d.sync += [state.eq(_State.SEND), s_src.eq(base), s_cnt.eq(span),
                             s_idx.eq(0), s_act.eq(1), s_valid.eq(0)]
            with m.Else():
                m.d.sync += state.eq(_State.IDLE)

        with m.Switch(state):
            with m.Case(_State.IDLE):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [c.eq(self.cmd.payload), state.eq(_State.CHECK)]
            with m.Case(_State.CHECK):
                m.d.sync += [lda.eq(a_ld), ldb.eq(b_ld), ldc.eq(Mux(c.op == Opcode.GEMM,
                                                                      c_ld, 0)),
                             ow_hi.eq((Const(1, 17) << (g.out_width - 1)[:4]) - 1),
                             ow_lo.eq(-(Const(1, 17) << (g.out_width - 1)[:4]))]
                with m.Switch(c.op):
                    with m.Case(Opcode.GEMM):
                        with m.If(gemm_ok):
                            m.d.sync += [state.eq(_State.GEMM), f_act.eq(1), f_m0.eq(0),
                                         f_n0.eq(0), f_k.eq(0), f_j.eq(0), d_valid.eq(0),
                                         w_m0.eq(0), w_n0.eq(0), w_v.eq(0), w_i.eq(0),
                                         w_done.eq(0)]
                        with m.Else():
                            m.d.sync += [error.eq(1), state.eq(_State.IDLE)]
                    with m.Case(Opcode.NL):
                        with m.If(nl_ok):
                            m.d.sync += [state.eq(_State.NL_CMD), n_row.eq(0)]
                        with m.Else():
                            m.d.sync += [error.eq(1), state.eq(_State.IDLE)]
                    with m.Case(Opcode.SEND):
                        with m.If(send_ok):
                            m.d.sync += [state.eq(_State.SEND), s_src.eq(sd.src),
                                         s_cnt.eq(sd.count), s_idx.eq(0), s_act.eq(1),
                                         s_valid.eq(0)]
                        with m.Else():
                            m.d.sync += [error.eq(1), state.eq(_State.IDLE)]
                    with m.Default():
                        m.d.sync += [error.eq(1), state.eq(_State.IDLE)]
            with m.Case(_State.GEMM):
                with m.If(w_done):
                    finish(c_span, g.c_addr)
            with m.Case(_State.NL_CMD):
                m.d.comb += nlu.cmd.valid.eq(1)
                with m.If(nlu.cmd.ready):
                    m.d.sync += [state.eq(_State.NL_ROW), e_c.eq(0), e_act.eq(1),
                                 e_valid.eq(0), o_c.eq(0)]
            with m.Case(_State.NL_ROW):
                with m.If(nl_take):
                    m.d.sync += o_c.eq(o_c + 1)
                    with m.If(nlu.o.payload.error):
                        m.d.sync += [error.eq(1), state.eq(_State.IDLE)]
                    with m.Elif(nlu.o.payload.last):
                        with m.If(n_row + 1 != nc.rows):
                            m.d.sync += [n_row.eq(n_row + 1), state.eq(_State.NL_CMD)]
                        with m.Elif(nl_row_fn):
                            finish(o_span, nc.out_addr)
                        with m.Else():
                            m.d.sync += state.eq(_State.IDLE)
            with m.Case(_State.SEND):
                with m.If(~s_act & (~s_valid | self.o.ready)):
                    m.d.sync += state.eq(_State.IDLE)
        return m
