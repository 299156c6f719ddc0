"""ReRAM PIM core: PIM tiles, a local memory and the input/output sequencer (issue 18)."""

from amaranth import (Array, Cat, ClockSignal, Const, Module, Mux, ResetSignal, Shape, Signal,
                      signed, unsigned)
from amaranth.hdl import Instance
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.network_interface import NiConfig
from golden.pim_core import (OUT_BITS_BITS, OUT_SHIFT_BITS, CoreConfig, CoreField, Op,
                             _in_base_bits, command_fields)
from golden.pim_tile import CfgField as _GField
from golden.pim_tile import TileConfig

from ..cells import add_cell
from ..noc.network_interface import send_layout
from ..registry import block
from .layouts import cfg_layout, ubits
from .tile import PimTile

__all__ = ["PimCore", "command_layout", "write_layout", "Op", "macro_name", "sram_name", "memories",
           "ANALOG_PORTS"]

#: The analog ports of a tile, ``{name: direction seen from the tile}``.
ANALOG_PORTS = {"drive": "out", "sample": "out", "column": "out", "trial": "out",
                "trial_en": "out", "decision": "in"}


class _Op(enum.Enum, shape=2):
    CONFIG = Op.CONFIG.value
    MVM = Op.MVM.value
    SEND = Op.SEND.value


def command_layout(cfg):
    """The command (:func:`golden.pim_core.command_fields`: one bit layout for the RTL and the
    host's :func:`golden.pim_core.encode_command`)."""
    f = command_fields(cfg)
    return data.StructLayout({k: (_Op if k == "op" else unsigned(w)) for k, w in f.items()})


def write_layout(cfg):
    """A ``wr`` transfer: ``{addr, data}`` (one memory word)."""
    return data.StructLayout({"addr": unsigned(ubits(cfg.mem_words)),
                              "data": data.ArrayLayout(signed(cfg.elem_width), cfg.length)})


def macro_name(tile):
    """Verilog module name of a tile's analog crossbars: ``reram_crossbars_<X>x<R>x<C>``."""
    return f"reram_crossbars_{tile.crossbars}x{tile.rows}x{tile.cols}"


def sram_name(depth, width, transparent):
    """Verilog module name of a blackbox SRAM (``memory="macro"``):
    ``pim_sram_<depth>x<width>_<t|n per read port>`` (``t``: transparent for the write)."""
    return f"pim_sram_{depth}x{width}_" + "".join("t" if t else "n" for t in transparent)


def memories(cfg):
    """The core's memories, ``{name: (shape, depth, transparent)}``: the local memory
    ``"mem"`` (``mem_words`` words, one plain read port) and the row buffer ``"rowbuf"``
    (``row_words`` words of ``acc_width``-bit elements; read ports: the accumulator's,
    transparent, and the drain's)."""
    return {"mem": (data.ArrayLayout(signed(cfg.elem_width), cfg.length), cfg.mem_words, (False,)),
            "rowbuf": (data.ArrayLayout(signed(cfg.acc_width), cfg.length), max(cfg.row_words, 2),
                       (True, False))}


class _Port:
    """The members of a memory port that the core uses (``addr``, ``data``, ``en``)."""

    def __init__(self, name, shape, depth):
        self.addr = Signal(ubits(depth), name=f"{name}_addr")
        self.data = Signal(shape, name=f"{name}_data")
        self.en = Signal(name=f"{name}_en")


def _ram(m, name, shape, depth, transparent, memory):
    """A one-write, ``len(transparent)``-read synchronous memory: an Amaranth ``Memory`` or a
    blackbox SRAM :func:`sram_name` (ports ``clk``, ``we``, ``waddr``, ``wdata``, ``raddr<k>``,
    ``rdata<k>``; every read port always enabled, ``rdata<k>`` the row at the previous edge's
    ``raddr<k>``, the written data for a transparent port reading the row being written).
    Returns ``(write port, read ports)``."""
    if memory == "amaranth":
        m.submodules[name] = mem = Memory(shape=shape, depth=depth, init=[])
        wp = mem.write_port()
        return wp, tuple(mem.read_port(transparent_for=(wp,) if t else ()) for t in transparent)
    width = Shape.cast(shape).width
    wp = _Port(f"{name}_w", shape, depth)
    rps = tuple(_Port(f"{name}_r{k}", shape, depth) for k in range(len(transparent)))
    ports = {"i_clk": ClockSignal(), "i_we": wp.en, "i_waddr": wp.addr, "i_wdata": wp.data}
    for k, rp in enumerate(rps):
        ports[f"i_raddr{k}"] = rp.addr
        ports[f"o_rdata{k}"] = rp.data
    m.submodules[name] = Instance(sram_name(depth, width, transparent), **ports)
    return wp, rps


#: The smallest core the synthesis test builds (``tile="small", ni="small"``): the tile of
#: ``tb/test_synth.py``'s ``pim_tile`` entry, 32-bit elements, 8 lanes.
SMALL_TILE = dict(crossbars=2, rows=8, cols=8, input_bits=2, weight_bits=2, adc_bits=4,
                  resolutions=(3, 4), group=2, row_blocks=1, outputs=8, scale_bits=6,
                  scale_frac_bits=4, out_bits=8)


def _preset(name, value, cls):
    """A configuration object, or a preset name: ``"atleus"`` (full size), ``"regression"``
    (:data:`golden.chip.REGRESSION_CHIP`'s) or ``"small"`` (:data:`SMALL_TILE`; 32-bit
    elements, 8 lanes, 4 nodes: for quick synthesis)."""
    if isinstance(value, cls):
        return value
    if value == "atleus":
        return TileConfig() if cls is TileConfig else NiConfig(
            payload_width=32, elem_width=32, length=128, nodes=64)
    if value == "regression":
        from golden.chip import REGRESSION_CHIP as rc
        if cls is TileConfig:
            return rc.tile
        return NiConfig(payload_width=32, elem_width=32, nodes=rc.dims[0] * rc.dims[1] * rc.dims[2],
                        length=max(rc.tile.rows, rc.systolic_rows))
    if value == "small":
        return TileConfig(**SMALL_TILE) if cls is TileConfig else NiConfig(
            payload_width=32, elem_width=32, length=8, nodes=4)
    raise TypeError(f"{name.capitalize()} must be a {cls.__module__}.{cls.__name__} or one of "
                    f"'atleus', 'regression', 'small', not {value!r}")


def _analog_shapes(t):
    return {"drive": data.ArrayLayout(t.rows, t.crossbars), "sample": unsigned(t.crossbars),
            "column": data.ArrayLayout(ubits(t.columns_per_adc), t.n_adcs),
            "trial": data.ArrayLayout(t.adc_bits, t.n_adcs), "trial_en": unsigned(t.n_adcs),
            "decision": unsigned(t.n_adcs)}


def _divmod(v, d):
    """``(v // d, v % d)`` of an unsigned value by a constant (bit slices for a power of two)."""
    if d == 1:
        return v, Const(0, 1)
    if d & (d - 1) == 0:
        k = d.bit_length() - 1
        return v[k:], v[:k]
    return v // d, v % d


def _next_set(m, mask, n, name):
    """``first, nxt``: the lowest set bit of ``mask`` and, for each ``k``, the lowest set bit
    above ``k`` (index and a valid flag)."""
    first = Signal(range(max(n, 2)), name=f"{name}_first")
    for k in reversed(range(n)):
        with m.If(mask[k]):
            m.d.comb += first.eq(k)
    nxt, nxt_ok = [], []
    for k in range(n):
        s = Signal(range(max(n, 2)), name=f"{name}_nxt{k}")
        ok = Signal(name=f"{name}_ok{k}")
        for j in reversed(range(k + 1, n)):
            with m.If(mask[j]):
                m.d.comb += [s.eq(j), ok.eq(1)]
        nxt.append(s)
        nxt_ok.append(ok)
    return first, Array(nxt), Array(nxt_ok)


@block("pim_core",
       tiles="PIM tiles of the core, one shared tile configuration (Atleus: 16)",
       tile="a golden.pim_tile.TileConfig, or atleus (96 crossbars of 128x128), regression "
            "(16 of 32x32) or small (2 of 8x8)",
       ni="a golden.network_interface.NiConfig, or atleus (32-bit elements, 128 lanes, 64 nodes), "
          "regression (32-bit, 32 lanes, 8 nodes) or small (32-bit, 8 lanes, 4 nodes); "
          "the chip's cores use 16-bit elements",
       mem_words="local memory words of ni.length elements (2-32768)",
       max_cols="longest output row in columns (0: tiles * tile.outputs)",
       analog="ports (analog ports at the top, tests) or macro (a blackbox per tile)",
       memory="amaranth (Memory: storage in the Verilog) or macro (blackbox SRAMs)")
class PimCore(wiring.Component):
    """ReRAM PIM core: ``tiles`` PIM tiles, a local memory and an input/output sequencer.

    The core of a ReRAM node of the Atleus chip (``hdl/chip``): commands on ``cmd`` (one at a
    time, in order), memory writes on ``wr``, result vectors on ``o``
    (:func:`hdl.noc.network_interface.send_layout`). The commands and their exact semantics
    are :mod:`golden.pim_core` (:func:`~golden.pim_core.encode_command`,
    :class:`~golden.pim_core.PimCoreModel`):

    - ``CONFIG``: a tile register write (:class:`PimTile`'s ``cfg``; waits until the tile is
      idle) to tile ``tile`` or to all tiles (one after the other), or a core register of the
      tile (``core = 1``: ``IN_BASE``, ``OUT_COL``). 1 cycle per tile plus the tile's wait.
    - ``MVM``: ``tokens`` input rows; the feeder reads each row block a tile needs from local
      memory (2 cycles per beat) into the tile's input double buffer, so the tiles compute
      token ``k`` while token ``k + 1`` loads; the collector takes the tiles' outputs, tile by
      tile in index order, and adds each into a row buffer (``acc_width`` bits per element, one
      output per cycle, a read-modify-write pipeline through a transparent read port); when
      every selected tile delivered its ``last`` output, the row is requantized
      (``saturate(rshift_round(y, out_shift), out_bits)``) and drained, one word per 3 cycles,
      to local memory (taking priority over ``wr``) or to ``o``, and the row buffer is cleared
      behind it. A tile's next output vector waits while the row drains.
    - ``SEND``: ``count`` words from local memory to ``o``, one per 2 cycles.

    Throughput: the tiles of a command run in parallel, each on its own copy of the token's
    input (a tile's input double buffer lets the feeder load token ``k + 1`` while token ``k``
    computes), so in steady state the core takes one token per ``max over the selected tiles
    of golden.pim_tile.mvm_cycles`` cycles (:func:`golden.pim_core.cycles_per_token`;
    ``tb/test_pim_core_verilator.py`` measures it: 678 cycles for 16 x 16 crossbars at 6
    input bits and a 7-bit ADC), provided the collection (``sum of N_OUTPUTS`` cycles), the
    drain (``3 * ceil(out_cols / L)``) and the feed (``2 * sum of N_BLOCKS``) of a token fit
    within it (regression W^QKV: 192 + 18 against 2056; Atleus's widest row, 16 tiles of 384
    outputs: 6144 + 144 against 8200). Latency, measured (``to_o``, no backpressure): word
    ``j`` of token ``k`` leaves ``mvm_cycles + sum of N_OUTPUTS + D + 3 j + k * interval``
    cycles after the command is taken, ``D`` = 27 for 16 x 16 crossbars in groups of 2 with one
    row block, 39 for ``REGRESSION_TILE`` (two row blocks); ``interval`` is the tile's own
    vector interval: ``mvm_cycles`` (678 measured for 16 x 16 crossbars at a 7-bit ADC), but
    2057 against the model's 2056 at ``REGRESSION_TILE``, whose groups' shift-and-add (256
    codes per plane) is within a cycle of the ADC sweep (257): the tile alone shows the same.

    Element widths: a tile's outputs are ``out_width = out_bits + ceil(log2(crossbars))``
    bits (28 regression, 31 full size); the row buffer keeps ``acc_width = out_width +
    ceil(log2(tiles))`` bits, so the sum over row chunks is exact; the requantization then
    saturates to ``out_bits`` (0: the element width ``ni.elem_width``). With the chip's
    32-bit elements ``out_shift = 0, out_bits = 0`` sends the exact projection output of
    :meth:`golden.transformer.EncoderLayer.project` (whenever it fits 32 bits, as every
    regression output does: the tests check it bit for bit), for the LoRA add and the final
    saturation of ``_projection_out`` elsewhere; ``out_shift = out_frac_bits + f_in - f_out``
    with ``out_bits = 0`` does that function's first step here, and with ``out_bits`` the
    target's width the whole of it for a projection without LoRA.

    Bad commands (:func:`golden.pim_core.check_command`) set ``error`` (sticky until reset)
    and are dropped; ``cmd`` is taken again in the next cycle. Reset (also in mid-command)
    drops everything in flight; the row buffer then clears itself (``row_words`` cycles)
    before the first command is taken; the local memory keeps its contents.

    Parameters
    ----------
    tiles : int
        Tiles in the core (1 to 64).
    tile : golden.pim_tile.TileConfig or str
        The tiles' configuration, or ``"atleus"`` (``TileConfig()``), ``"regression"``
        (``golden.chip.REGRESSION_TILE``) or ``"small"`` (:data:`SMALL_TILE`).
    ni : golden.network_interface.NiConfig or str
        The network-interface parameters (``elem_width``, ``length``, ``nodes``, tag widths),
        or ``"atleus"`` (the full-size chip's 128 lanes and 64 nodes), ``"regression"``
        (``REGRESSION_CHIP``'s 32 lanes and 8 nodes) or ``"small"`` (8 lanes, 4 nodes). The
        presets have 32-bit elements, so a standalone core can send exact projection
        outputs; the chip passes its own NiConfig (16-bit elements,
        :func:`hdl.chip.chip_ni_config`), where the core saturates its outputs to 16 bits.
    mem_words : int
        Local memory words (2 to 32768).
    max_cols : int
        Longest output row (``0``: ``tiles * tile.outputs``): the row buffer's size.
    analog : {"ports", "macro"}
        ``"ports"``: each tile's analog ports are ports of the core (arrays over the tiles);
        ``"macro"``: each tile's analog ports go to an ``Instance`` of the blackbox
        :func:`macro_name` (ports ``clk``, ``rst``, ``drive``, ``sample``, ``column``,
        ``trial``, ``trial_en`` in, ``decision`` out), which simulation supplies
        (:func:`tb.env.pim_core.crossbar_macro_verilog`).
    memory : {"amaranth", "macro"}
        The local memory and the row buffer: ``amaranth.lib.memory.Memory`` s (``"amaranth"``:
        the storage is in the Verilog, with its zero initialization: at the full size's 16.8
        Mbit this dominates the Verilog generation) or blackbox SRAM instances
        (:func:`sram_name`, ``"macro"``: a memory compiler's macros in synthesis; simulation
        supplies them, :func:`tb.env.pim_core.core_macros_verilog`).

    Members
    -------
    cmd : In(stream.Signature(command_layout(config)))
    wr : In(stream.Signature(write_layout(config)))
    o : Out(stream.Signature(hdl.noc.network_interface.send_layout(ni)))
    busy : Out(1)
        A command is executing or waits on ``cmd``.
    error : Out(1)
        A command was refused (sticky until reset).
    drive, sample, column, trial, trial_en : Out(data.ArrayLayout(<the tile's port>, tiles))
        Only with ``analog="ports"``: tile ``k``'s analog outputs (:class:`PimTile`).
    decision : In(data.ArrayLayout(unsigned(n_adcs), tiles))
        Only with ``analog="ports"``.
    """

    def __init__(self, tiles=16, *, tile="atleus", ni="atleus", mem_words=4096, max_cols=0,
                 analog="ports", memory="amaranth"):
        tile = _preset("tile", tile, TileConfig)
        ni = _preset("ni", ni, NiConfig)
        if analog not in ("ports", "macro"):
            raise TypeError(f"Analog must be 'ports' or 'macro', not {analog!r}")
        if memory not in ("amaranth", "macro"):
            raise TypeError(f"Memory must be 'amaranth' or 'macro', not {memory!r}")
        self._memory = memory
        if not isinstance(max_cols, int) or isinstance(max_cols, bool) or max_cols < 0:
            raise TypeError(f"Max_cols must be a non-negative integer (0: tiles * tile.outputs), "
                            f"not {max_cols!r}")
        self._config = CoreConfig(tiles=tiles, tile=tile, ni=ni, mem_words=mem_words,
                                  max_cols=max_cols or None)
        self._analog = analog
        c = self._config
        members = {
            "cmd": In(stream.Signature(command_layout(c))),
            "wr": In(stream.Signature(write_layout(c))),
            "o": Out(stream.Signature(send_layout(ni))),
            "busy": Out(1),
            "error": Out(1),
        }
        if analog == "ports":
            for name, shape in _analog_shapes(tile).items():
                flow = In if ANALOG_PORTS[name] == "in" else Out
                members[name] = flow(data.ArrayLayout(shape, tiles))
        super().__init__(members)

    # -- parameters
    @property
    def config(self):
        """The parameters (:class:`golden.pim_core.CoreConfig`)."""
        return self._config

    tiles = property(lambda self: self._config.tiles, doc="The ``tiles`` parameter.")
    tile = property(lambda self: self._config.tile, doc="The tiles' ``TileConfig``.")
    ni = property(lambda self: self._config.ni, doc="The ``NiConfig``.")
    mem_words = property(lambda self: self._config.mem_words, doc="The ``mem_words`` parameter.")
    max_cols = property(lambda self: self._config.max_cols,
                        doc="The longest output row (``tiles * tile.outputs`` for 0).")
    analog = property(lambda self: self._analog, doc="The ``analog`` parameter.")
    memory = property(lambda self: self._memory, doc="The ``memory`` parameter.")

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        t = cfg.tile
        T, L, E, W = cfg.tiles, cfg.length, cfg.elem_width, cfg.mem_words
        AW = cfg.acc_width
        R, G = t.rows, cfg.blocks_per_word
        RW = cfg.row_words
        IB = _in_base_bits(cfg)

        # -- tiles (one shared module) and their analog side
        tiles = []
        for k in range(T):
            tl = add_cell(m, f"tile{k}", PimTile, **t.__dict__)
            tiles.append(tl)
            if self._analog == "ports":
                m.d.comb += [self.drive[k].eq(tl.drive), self.sample[k].eq(tl.sample),
                             self.column[k].eq(tl.column), self.trial[k].eq(tl.trial),
                             self.trial_en[k].eq(tl.trial_en), tl.decision.eq(self.decision[k])]
            else:
                m.submodules[f"xbars{k}"] = Instance(
                    macro_name(t), i_clk=ClockSignal(), i_rst=ResetSignal(),
                    i_drive=tl.drive, i_sample=tl.sample, i_column=tl.column,
                    i_trial=tl.trial, i_trial_en=tl.trial_en, o_decision=tl.decision)

        # -- local memory and row buffer
        mems = memories(cfg)
        wp, (rd,) = _ram(m, "mem", *mems["mem"], self._memory)
        rb_w, (rb_acc, rb_drn) = _ram(m, "rowbuf", *mems["rowbuf"], self._memory)

        # -- per-tile registers of the core: shadows of N_BLOCKS / N_OUTPUTS, IN_BASE, OUT_COL
        n_blocks = Array(Signal(range(t.row_blocks + 1), init=1, name=f"n_blocks{k}") for k in range(T))
        n_outputs = Array(Signal(range(t.outputs + 1), init=t.outputs, name=f"n_outputs{k}")
                          for k in range(T))
        in_base = Array(Signal(IB, name=f"in_base{k}") for k in range(T))
        out_col = Array(Signal(range(cfg.max_cols), name=f"out_col{k}") for k in range(T))

        # -- command acceptance and checks (golden.pim_core.check_command)
        p = self.cmd.payload
        c = Signal(command_layout(cfg))            # the command being executed
        ok = Signal()
        ow_p = Signal(range(RW + 2))
        m.d.comb += ow_p.eq(_divmod(p.out_cols + (L - 1), L)[0])
        val, fld = p.value, p.field
        mode_ok = Signal()
        res_ok = Signal()
        m.d.comb += res_ok.eq(Cat(*[(val >> 2) == r for r in t.resolutions]).any())
        m.d.comb += mode_ok.eq(((val >> (2 + t.adc_bits.bit_length())) == 0) & (~val[0] | res_ok))
        per_xbar = (fld == _GField.MODE) | (fld == _GField.IN_BLOCK) | \
                   (fld == _GField.OUT_BASE) | (fld == _GField.SCALE)
        tile_ok = Signal()
        with m.Switch(fld):
            with m.Case(_GField.MODE):
                m.d.comb += tile_ok.eq(mode_ok)
            with m.Case(_GField.IN_BLOCK):
                m.d.comb += tile_ok.eq(val < t.row_blocks)
            with m.Case(_GField.OUT_BASE):
                m.d.comb += tile_ok.eq(val < t.outputs)
            with m.Case(_GField.SCALE):
                m.d.comb += tile_ok.eq((val >> t.scale_bits) == 0)
            with m.Case(_GField.N_OUTPUTS):
                m.d.comb += tile_ok.eq((val >= 1) & (val <= t.outputs))
            with m.Case(_GField.N_BLOCKS):
                m.d.comb += tile_ok.eq((val >= 1) & (val <= t.row_blocks))
        core_ok = Mux(fld == CoreField.IN_BASE, (val >> IB) == 0,
                      (fld == CoreField.OUT_COL) & (val < cfg.max_cols))
        cfg_ok = (p.all | (p.tile < T)) & Mux(p.core, core_ok,
                                              tile_ok & (~per_xbar | (p.xbar < t.crossbars)))
        fits = []
        for k in range(T):
            fits.append(~p.mask[k] | (((in_base[k] + n_blocks[k]) * R <= p.in_words * L)
                                      & (out_col[k] + n_outputs[k] <= p.out_cols)))
        mvm_ok = ((p.mask != 0) & (p.tokens != 0) & (p.in_words != 0) & (p.out_cols >= 1)
                  & (p.out_cols <= cfg.max_cols) & (p.in_addr + p.tokens * p.in_words <= W)
                  & (p.to_o | (p.out_addr + p.tokens * ow_p <= W))
                  & (p.out_shift <= AW) & (p.out_bits <= E) & Cat(*fits).all())
        send_ok = (p.tokens != 0) & (p.in_addr + p.tokens <= W)
        with m.Switch(p.op):
            with m.Case(_Op.CONFIG):
                m.d.comb += ok.eq(cfg_ok)
            with m.Case(_Op.MVM):
                m.d.comb += ok.eq(mvm_ok)
            with m.Case(_Op.SEND):
                m.d.comb += ok.eq(send_ok)

        mask_first, mask_nxt, mask_nxt_ok = _next_set(m, c.mask, T, "mask")

        # -- sequencer state
        clear_idx = Signal(range(max(RW, 2)))
        cfg_idx = Signal(range(max(T, 2)))
        ow = Signal(range(RW + 2))                 # words per output row
        # feeder
        f_tok = Signal(range(W + 1))
        f_tile = Signal(range(max(T, 2)))
        f_blk = Signal(range(t.row_blocks + 1))
        f_row = Signal(range(W + 1))               # word address of the token's input row
        f_beat = Signal()                          # the read data is there: offer the beat
        f_done = Signal()
        # collector
        c_tile = Signal(range(max(T, 2)))
        c_on = Signal()                            # accepting tile outputs
        b_valid = Signal()
        b_addr = Signal(range(max(RW, 2)))
        b_lane = Signal(range(max(L, 2)))
        b_val = Signal(signed(AW))
        # drain
        d_wait = Signal()
        d_on = Signal()
        d_phase = Signal(2)                        # 0 address, 1 requantize, 2 offer
        d_word = Signal(range(RW + 1))
        d_tok = Signal(range(W + 1))
        d_row = Signal(range(W + (1 << cfg.ni.offset_bits) + 1))   # first word/offset of the row
        q = Signal(data.ArrayLayout(signed(E), L))
        # send
        s_idx = Signal(range(W + 1))
        s_beat = Signal()

        m.d.comb += rd.en.eq(1)
        m.d.comb += [rb_drn.en.eq(1), rb_acc.en.eq(1)]

        # memory writes from wr (the drain to memory has priority)
        drain_mem = Signal()
        m.d.comb += self.wr.ready.eq(~drain_mem)
        with m.If(drain_mem):
            m.d.comb += [wp.addr.eq(d_row + d_word), wp.data.eq(q), wp.en.eq(1)]
        with m.Else():
            m.d.comb += [wp.addr.eq(self.wr.payload.addr), wp.data.eq(self.wr.payload.data),
                         wp.en.eq(self.wr.valid)]

        cfg_target = Signal(range(max(T, 2)))
        m.d.comb += cfg_target.eq(Mux(c.all, cfg_idx, c.tile))
        tile_cfg_ready = Signal()
        m.d.comb += tile_cfg_ready.eq(Array(tl.cfg.ready for tl in tiles)[cfg_target])

        with m.FSM(init="CLEAR") as fsm:
            with m.State("CLEAR"):
                m.d.comb += [rb_w.addr.eq(clear_idx), rb_w.data.eq(0), rb_w.en.eq(1)]
                m.d.sync += clear_idx.eq(clear_idx + 1)
                with m.If(clear_idx == max(RW, 2) - 1):
                    m.next = "IDLE"

            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += c.eq(p)
                    with m.If(~ok):
                        m.d.sync += self.error.eq(1)
                    with m.Elif(p.op == _Op.CONFIG):
                        m.d.sync += cfg_idx.eq(0)
                        m.next = "CONFIG"
                    with m.Elif(p.op == _Op.MVM):
                        m.d.sync += [ow.eq(ow_p), f_tok.eq(0), f_blk.eq(0), f_row.eq(p.in_addr),
                                     f_beat.eq(0), f_done.eq(0), c_on.eq(1), d_wait.eq(0),
                                     d_on.eq(0), d_tok.eq(0),
                                     d_row.eq(Mux(p.to_o, p.dest_addr, p.out_addr))]
                        # the first selected tile: set in the next cycle (mask_first of c)
                        m.next = "MVM_START"
                    with m.Elif(p.op == _Op.SEND):
                        m.d.sync += [s_idx.eq(0), s_beat.eq(0)]
                        m.next = "SEND"

            with m.State("CONFIG"):
                with m.If(c.core):
                    for k in range(T):
                        with m.If(cfg_target == k):
                            with m.If(c.field == CoreField.IN_BASE):
                                m.d.sync += in_base[k].eq(c.value)
                            with m.Else():
                                m.d.sync += out_col[k].eq(c.value)
                advance = Signal()
                m.d.comb += advance.eq(Mux(c.core, 1, tile_cfg_ready))
                for k, tl in enumerate(tiles):
                    m.d.comb += [tl.cfg.valid.eq(~c.core & (cfg_target == k)),
                                 tl.cfg.payload.xbar.eq(c.xbar),
                                 tl.cfg.payload.field.eq(c.field),
                                 tl.cfg.payload.value.eq(c.value)]
                with m.If(advance & ~c.core):
                    for k in range(T):
                        with m.If(cfg_target == k):
                            with m.If(c.field == _GField.N_BLOCKS):
                                m.d.sync += n_blocks[k].eq(c.value)
                            with m.If(c.field == _GField.N_OUTPUTS):
                                m.d.sync += n_outputs[k].eq(c.value)
                with m.If(advance):
                    with m.If(c.all & (cfg_idx != T - 1)):
                        m.d.sync += cfg_idx.eq(cfg_idx + 1)
                    with m.Else():
                        m.next = "IDLE"

            with m.State("MVM_START"):
                m.d.sync += [f_tile.eq(mask_first), c_tile.eq(mask_first)]
                m.next = "MVM"

            with m.State("MVM"):
                # ---- feeder: row blocks from memory into the tiles' input buffers
                blk_abs = Signal(IB + 1)
                m.d.comb += blk_abs.eq(in_base[f_tile] + f_blk)
                word_off, group = _divmod(blk_abs, G)
                m.d.comb += rd.addr.eq(f_row + word_off)
                beat = Signal(R * t.input_bits)
                groups = [Cat(*[rd.data[g * R + r][:t.input_bits] for r in range(R)]) for g in range(G)]
                m.d.comb += beat.eq(Array(groups)[group] if G > 1 else groups[0])
                beat_taken = Signal()
                for k, tl in enumerate(tiles):
                    m.d.comb += [tl.i.valid.eq(f_beat & ~f_done & (f_tile == k)),
                                 tl.i.payload.eq(beat)]
                m.d.comb += beat_taken.eq(f_beat & ~f_done &
                                          Array(tl.i.ready for tl in tiles)[f_tile])
                with m.If(~f_done):
                    with m.If(~f_beat):
                        m.d.sync += f_beat.eq(1)
                    with m.Elif(beat_taken):
                        m.d.sync += f_beat.eq(0)
                        with m.If(f_blk + 1 < n_blocks[f_tile]):
                            m.d.sync += f_blk.eq(f_blk + 1)
                        with m.Elif(mask_nxt_ok[f_tile]):
                            m.d.sync += [f_blk.eq(0), f_tile.eq(mask_nxt[f_tile])]
                        with m.Else():
                            m.d.sync += [f_blk.eq(0), f_tile.eq(mask_first),
                                         f_tok.eq(f_tok + 1), f_row.eq(f_row + c.in_words)]
                            with m.If(f_tok + 1 == c.tokens):
                                m.d.sync += f_done.eq(1)

                # ---- collector: tile outputs into the row buffer (read-modify-write)
                sel_valid, sel_last = Signal(), Signal()
                sel_index = Signal(range(max(t.outputs, 2)))
                sel_value = Signal(signed(t.out_width))
                with m.Switch(c_tile):
                    for k, tl in enumerate(tiles):
                        with m.Case(k):
                            m.d.comb += [sel_valid.eq(tl.o.valid), sel_last.eq(tl.o.payload.last),
                                         sel_index.eq(tl.o.payload.index),
                                         sel_value.eq(tl.o.payload.value)]
                a_fire = Signal()
                for k, tl in enumerate(tiles):
                    m.d.comb += tl.o.ready.eq(c_on & (c_tile == k))
                m.d.comb += a_fire.eq(c_on & sel_valid)
                col = Signal(range(cfg.max_cols + t.outputs + 1))
                m.d.comb += col.eq(out_col[c_tile] + sel_index)
                col_word, col_lane = _divmod(col, L)
                m.d.comb += rb_acc.addr.eq(col_word)
                m.d.sync += [b_valid.eq(a_fire), b_addr.eq(col_word), b_lane.eq(col_lane),
                             b_val.eq(sel_value)]
                with m.If(a_fire & sel_last):
                    with m.If(mask_nxt_ok[c_tile]):
                        m.d.sync += c_tile.eq(mask_nxt[c_tile])
                    with m.Else():
                        m.d.sync += [c_on.eq(0), d_wait.eq(1)]
                old = Signal(signed(AW))
                m.d.comb += old.eq(rb_acc.data[b_lane] if L > 1 else rb_acc.data[0])
                new_word = Signal(data.ArrayLayout(signed(AW), L))
                for lane in range(L):
                    m.d.comb += new_word[lane].eq(Mux(b_lane == lane, old + b_val,
                                                      rb_acc.data[lane]))

                # ---- drain: requantize the row, to memory or to o, clearing the row buffer
                with m.If(d_wait):
                    m.d.sync += [d_wait.eq(0), d_on.eq(1), d_phase.eq(0), d_word.eq(0)]
                m.d.comb += rb_drn.addr.eq(d_word)
                shift = c.out_shift
                sat_bits = Mux(c.out_bits == 0, E, c.out_bits)
                hi = Signal(signed(E + 1))
                lo = Signal(signed(E + 1))
                m.d.comb += [hi.eq((Const(1, E + 1) << (sat_bits - 1)[:OUT_BITS_BITS]) - 1), lo.eq(-hi - 1)]
                with m.If(d_on & (d_phase == 0)):
                    m.d.sync += d_phase.eq(1)
                with m.If(d_on & (d_phase == 1)):
                    for lane in range(L):
                        v = rb_drn.data[lane]
                        rounded = Signal(signed(AW + 1), name=f"rq{lane}")
                        half = (Const(1, AW + 1) << (shift - 1)[:OUT_SHIFT_BITS])[:AW + 1]
                        m.d.comb += rounded.eq(Mux(shift == 0, v, (v + half.as_signed()) >> shift))
                        m.d.sync += q[lane].eq(Mux(rounded > hi, hi, Mux(rounded < lo, lo, rounded)))
                    m.d.sync += d_phase.eq(2)
                d_take = Signal()
                m.d.comb += drain_mem.eq(d_on & (d_phase == 2) & ~c.to_o)
                m.d.comb += d_take.eq(d_on & (d_phase == 2) & (~c.to_o | self.o.ready))
                with m.If(d_on & (d_phase == 2) & c.to_o):
                    m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(q),
                                 self.o.payload.dest.eq(c.dest),
                                 self.o.payload.tag.layer.eq(c.layer),
                                 self.o.payload.tag.stage.eq(0),
                                 self.o.payload.tag.offset.eq(d_row + d_word)]
                with m.If(d_take):
                    m.d.comb += [rb_w.addr.eq(d_word), rb_w.data.eq(0), rb_w.en.eq(1)]
                    m.d.sync += d_phase.eq(0)
                    with m.If(d_word + 1 < ow):
                        m.d.sync += d_word.eq(d_word + 1)
                    with m.Else():
                        m.d.sync += [d_on.eq(0), d_tok.eq(d_tok + 1), d_row.eq(d_row + ow),
                                     c_tile.eq(mask_first)]
                        with m.If(d_tok + 1 == c.tokens):
                            m.next = "IDLE"
                        with m.Else():
                            m.d.sync += c_on.eq(1)
                with m.Elif(b_valid):
                    m.d.comb += [rb_w.addr.eq(b_addr), rb_w.data.eq(new_word), rb_w.en.eq(1)]

            with m.State("SEND"):
                m.d.comb += rd.addr.eq(c.in_addr + s_idx)
                with m.If(~s_beat):
                    m.d.sync += s_beat.eq(1)
                with m.Else():
                    m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(rd.data),
                                 self.o.payload.dest.eq(c.dest),
                                 self.o.payload.tag.layer.eq(c.layer),
                                 self.o.payload.tag.stage.eq(0),
                                 self.o.payload.tag.offset.eq(c.dest_addr + s_idx)]
                    with m.If(self.o.ready):
                        m.d.sync += [s_beat.eq(0), s_idx.eq(s_idx + 1)]
                        with m.If(s_idx + 1 == c.tokens):
                            m.next = "IDLE"

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | self.cmd.valid)
        return m
