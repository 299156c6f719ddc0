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
from .core_stages import GemmFetch, GemmWriteback, RowFeeder, RowWriter, WordSender

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
    cycle; a bad command sets ``error`` and is dropped), runs it through its stages
    (:mod:`hdl.systolic.core_stages`), and takes the next command in the cycle after the
    last result was written or sent. Cycles per command, with no ``wr`` traffic and ``o``
    always ready: :func:`golden.systolic_core.command_cycles` (exact).

    - ``GEMM`` (:class:`~hdl.systolic.core_stages.GemmFetch` -> :class:`SystolicArray` ->
      :class:`~hdl.systolic.core_stages.GemmWriteback`): folds of ``rows x cols`` output
      tiles (``M`` outer, ``N`` inner, ``K`` any length). An input vector is one word per
      operand when memory holds ``A^T`` and ``B`` (two read ports: one vector per cycle, the
      array's own schedule: ``cycle_model`` of the folds + 4 cycles per command), else
      ``rows`` (``A``) or ``cols`` (``B^T``) element reads; ``a_eye`` generates the identity
      (a transpose of ``B`` through the array, ``rows`` vectors per fold). The write-back
      applies ``out_shift`` (round half up) and the ``out_width`` saturation and writes one
      word per output vector for ``C^T`` (a ``rows``-lane slice of a row of ``C^T``), one
      element per cycle for ``C``; ``out_width`` 0 writes 32-bit results as lane pairs.
    - ``NL`` (:class:`~hdl.systolic.core_stages.RowFeeder` -> :class:`NonlinearUnit` ->
      :class:`~hdl.systolic.core_stages.RowWriter`): per row one unit command, the row's
      elements read one per cycle (any layout), its words written one element per cycle.
    - ``SEND`` (:class:`~hdl.systolic.core_stages.WordSender`), also after a GEMM or NL
      result for another node: one word per cycle on ``o``, held under backpressure.

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
    ni : NiConfig, keyword only
        The chip's :class:`golden.network_interface.NiConfig` (``elem_width`` 16); when
        given it sets ``length``, ``nodes``, ``payload_width`` and the tag widths (Python
        only: not a ``python -m hdl`` parameter).
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

    def __init__(self, rows=128, cols=32, *, length=128, mem_words=0, sram_bits=1 << 20,
                 node=-1, nodes=64, payload_width=32, layer_bits=6, stage_bits=4,
                 offset_bits=16, acc_width=32, nl_max_len=1024, nl_lanes=1, **chip):
        # ``ni`` (Python only, not a command-line parameter) comes in through ``**chip``.
        ni = chip.pop("ni", None)
        if chip:
            raise TypeError(f"SystolicCore got unexpected keyword arguments {sorted(chip)}")
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
    nl_lanes = property(lambda self: 1)
    sram_bits = property(lambda self: self._cfg.mem_words * 16 * self._cfg.length,
                         doc="Bits of the local memory")
    payload_width = property(lambda self: self._ni.payload_width)
    layer_bits = property(lambda self: self._ni.layer_bits)
    stage_bits = property(lambda self: self._ni.stage_bits)
    offset_bits = property(lambda self: self._ni.offset_bits)
    command_bits = property(lambda self: self._cfg.command_bits)

    # ------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C, L, W = cfg.rows, cfg.cols, cfg.length, cfg.mem_words
        lgL = L.bit_length() - 1
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
        def region(base, nrows, ncols, ld, col=0):
            """(fits in memory, effective ld, words spanned)."""
            w = words(ncols + col)
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
        a_ok, a_ld, _ = region(g.a_addr, ga_r, ga_c, g.a_ld, g.a_col)
        b_ok, b_ld, _ = region(g.b_addr, gb_r, gb_c, g.b_ld, g.b_col)
        c_ok, c_ld, c_span = region(g.c_addr, gc_r, gc_c, g.c_ld, g.c_col)
        lgR, lgC, lgE2 = R.bit_length() - 1, C.bit_length() - 1, min(R, L // 2).bit_length()

        def low(v, bits):
            return v[:bits] == 0 if bits else Const(1)
        aligned = ((~g.a_t | g.a_eye | low(g.a_col, lgR)) & (g.b_t | low(g.b_col, lgC))
                   & Mux(g.c_t, Mux(wide, low(g.c_col, lgE2), low(g.c_col, lgR)),
                         ~wide | low(g.c_col, 1)))

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
                   & (~g.a_eye | (gm == gk)) & (g.a_eye | a_ok) & b_ok & c_ok & aligned
                   & dest_ok(c_span))
        nl_ok = ((nc.rows != 0) & (nlen != 0) & (nlen <= cfg.nl_max_len) & i_ok
                 & ((nfn != Function.ADD) | i2_ok)
                 & (~nl_row_fn | (o_ok & dest_ok(o_span))))
        send_ok = ((sd.count != 0) & (sd.src + sd.count <= W) & (c.dest < cfg.nodes)
                   & (c.dest_addr + sd.count <= top))

        # ---------------------------------------------------------------- stages
        m.submodules.fetch = fetch = GemmFetch(cfg, AW, arr.i_layout)
        m.submodules.writeback = wb = GemmWriteback(cfg, AW, arr.o_layout)
        m.submodules.feeder = feeder = RowFeeder(cfg, AW)
        m.submodules.writer = writer = RowWriter(cfg, AW, nlu.o.payload.shape())
        m.submodules.sender = sender = WordSender(cfg, AW, self.o.payload.shape())
        wiring.connect(m, fetch.o, arr.i)
        wiring.connect(m, arr.o, wb.i)
        wiring.connect(m, nlu.o, writer.i)
        wiring.connect(m, sender.o, wiring.flipped(self.o))
        n_row = Signal(gsc.DIM_BITS)                 # the NL command's current row
        lda, ldb, ldc = (Signal(gsc.ADDR_BITS + 1, name=n) for n in ("lda", "ldb", "ldc"))
        m.d.comb += [fetch.cmd.eq(g), fetch.lda.eq(lda), fetch.ldb.eq(ldb),
                     wb.cmd.eq(g), wb.ldc.eq(ldc),
                     feeder.cmd.eq(nc), feeder.row.eq(n_row), feeder.ld.eq(i_ld),
                     writer.cmd.eq(nc), writer.row.eq(n_row), writer.ld.eq(o_ld),
                     sender.dest.eq(c.dest), sender.layer.eq(c.layer),
                     sender.dest_addr.eq(c.dest_addr),
                     fetch.run.eq(state == _State.GEMM), wb.run.eq(state == _State.GEMM),
                     feeder.run.eq(state == _State.NL_ROW), writer.run.eq(state == _State.NL_ROW),
                     sender.run.eq(state == _State.SEND)]
        # the row feeder's elements go to the unit's i and res together
        m.d.comb += [nlu.i.valid.eq(feeder.o.valid), nlu.res.valid.eq(feeder.o.valid),
                     nlu.i.payload.eq(feeder.o.payload.x), nlu.res.payload.eq(feeder.o.payload.x2),
                     feeder.o.ready.eq(nlu.i.ready), nlu.cmd.payload.eq(nc.cmd)]

        # ---------------------------------------------------------------- memory ports
        # Reads: the running stage's. Writes: wr first (always ready), then the stage's.
        with m.Switch(state):
            with m.Case(_State.GEMM):
                m.d.comb += [ra.addr.eq(fetch.ra.addr), ra.en.eq(fetch.ra.en),
                             rb.addr.eq(fetch.rb.addr), rb.en.eq(fetch.rb.en)]
            with m.Case(_State.NL_ROW):
                m.d.comb += [ra.addr.eq(feeder.ra.addr), ra.en.eq(feeder.ra.en),
                             rb.addr.eq(feeder.rb.addr), rb.en.eq(feeder.rb.en)]
            with m.Case(_State.SEND):
                m.d.comb += [ra.addr.eq(sender.ra.addr), ra.en.eq(sender.ra.en)]
        m.d.comb += [fetch.ra.data.eq(ra.data), fetch.rb.data.eq(rb.data),
                     feeder.ra.data.eq(ra.data), feeder.rb.data.eq(rb.data),
                     sender.ra.data.eq(ra.data)]
        stage_w = Mux(state == _State.GEMM, wb.w.payload.as_value(), writer.w.payload.as_value())
        stage_w = data.View(wb.w.payload.shape(), stage_w)
        stage_valid = Mux(state == _State.GEMM, wb.w.valid, writer.w.valid)
        m.d.comb += [self.wr.ready.eq(1), wb.w.ready.eq(~self.wr.valid),
                     writer.w.ready.eq(~self.wr.valid)]
        with m.If(self.wr.valid):
            m.d.comb += [wp.addr.eq(self.wr.payload.addr), wp.data.eq(self.wr.payload.data),
                         wp.en.eq(Const((1 << L) - 1, L))]
        with m.Elif(stage_valid):
            m.d.comb += [wp.addr.eq(stage_w.addr), wp.data.eq(stage_w.data),
                         wp.en.eq(stage_w.en)]

        # ---------------------------------------------------------------- sequencer
        error = Signal()
        m.d.comb += self.error.eq(error)
        nl_word = nlu.o.valid & nlu.o.ready

        def send(src, count):
            m.d.comb += [sender.start.eq(1), sender.src.eq(src), sender.count.eq(count)]
            m.d.sync += state.eq(_State.SEND)

        def finish(span, base):
            with m.If(remote):
                send(base, span)
            with m.Else():
                m.d.sync += state.eq(_State.IDLE)

        def refuse():
            m.d.sync += [error.eq(1), state.eq(_State.IDLE)]

        with m.Switch(state):
            with m.Case(_State.IDLE):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += [c.eq(self.cmd.payload), state.eq(_State.CHECK)]
            with m.Case(_State.CHECK):
                m.d.sync += [lda.eq(a_ld), ldb.eq(b_ld), ldc.eq(c_ld)]
                with m.Switch(c.op):
                    with m.Case(Opcode.GEMM):
                        with m.If(gemm_ok):
                            m.d.comb += [fetch.start.eq(1), wb.start.eq(1)]
                            m.d.sync += state.eq(_State.GEMM)
                        with m.Else():
                            refuse()
                    with m.Case(Opcode.NL):
                        with m.If(nl_ok):
                            m.d.sync += [state.eq(_State.NL_CMD), n_row.eq(0)]
                        with m.Else():
                            refuse()
                    with m.Case(Opcode.SEND):
                        with m.If(send_ok):
                            send(sd.src, sd.count)
                        with m.Else():
                            refuse()
                    with m.Default():
                        refuse()
            with m.Case(_State.GEMM):
                with m.If(wb.done):
                    finish(c_span, g.c_addr)
            with m.Case(_State.NL_CMD):
                m.d.comb += nlu.cmd.valid.eq(1)
                with m.If(nlu.cmd.ready):
                    m.d.comb += [feeder.start.eq(1), writer.start.eq(1)]
                    m.d.sync += state.eq(_State.NL_ROW)
            with m.Case(_State.NL_ROW):
                with m.If(nl_word):
                    with m.If(nlu.o.payload.error):
                        refuse()
                    with m.Elif(nlu.o.payload.last):
                        with m.If(n_row + 1 != nc.rows):
                            m.d.sync += [n_row.eq(n_row + 1), state.eq(_State.NL_CMD)]
                        with m.Elif(nl_row_fn):
                            finish(o_span, nc.out_addr)
                        with m.Else():
                            m.d.sync += state.eq(_State.IDLE)
            with m.Case(_State.SEND):
                with m.If(sender.done):
                    m.d.sync += state.eq(_State.IDLE)
        return m
