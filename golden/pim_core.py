"""Host side and golden model of the ReRAM PIM core (``hdl/pim_tile/core.py``, issue 18).

A PIM core is ``tiles`` PIM tiles (:mod:`golden.pim_tile`) of one :class:`TileConfig`, a local
memory of ``mem_words`` words of ``length`` signed ``elem_width``-bit elements (matrices
row-major as in the chip's interface note: a ``R x C`` matrix at ``base`` has ``ceil(C / L)``
words per row, element ``(r, c)`` at word ``base + r * ceil(C / L) + c // L``, lane ``c % L``)
and a sequencer that runs one command at a time:

- ``CONFIG``: a register write to one tile (``tile``) or to every tile (``all``). ``core = 0``:
  the tile's own register ``field`` (:class:`golden.pim_tile.CfgField`, crossbar ``xbar``,
  ``value``), the writes of :meth:`golden.pim_tile.TileMapping.config_writes`. ``core = 1``: a
  register of the core's per-tile input/output map, ``field`` from :class:`CoreField`:
  ``IN_BASE`` (the tile's first input element, in row blocks of ``rows`` elements: the chunk's
  ``r0 / rows``) and ``OUT_COL`` (the output-row column of the tile's output 0: the chunk's
  ``c0``).
- ``MVM``: for ``tokens`` input rows of ``in_words`` words at ``in_addr``, every tile of
  ``mask`` gets elements ``IN_BASE * rows .. + N_BLOCKS * rows`` of the row (each element's low
  ``input_bits`` bits: the activations must fit), and output ``i`` of tile ``t`` is added into
  column ``OUT_COL[t] + i`` of an ``out_cols``-column output row (tiles holding row chunks of
  the same columns are summed exactly, as :meth:`golden.transformer.EncoderLayer.project`
  does). Each element of the exact row is then requantized, ``saturate(rshift_round(y,
  out_shift), out_bits)`` (:func:`golden.nonlinear.rshift_round`, :func:`saturate`; ``out_bits
  = 0`` means ``elem_width``), and the row (``ceil(out_cols / L)`` words, lanes above
  ``out_cols`` zero) goes to local memory at ``out_addr + token * ceil(out_cols / L)``
  (``to_o = 0``) or on ``o`` to node ``dest``, tag offset ``dest_addr + token * ceil(out_cols /
  L) + j`` for word ``j`` (``to_o = 1``), tag layer ``layer``, stage 0.
- ``SEND``: ``count`` words from ``in_addr`` on ``o`` to ``dest``, offsets ``dest_addr + j``.

A command with a bad field is refused: ``error`` (sticky), nothing happens (:func:`check_command`
lists the rules).

Widths. A tile output is ``out_width`` bits (:attr:`TileConfig.out_width`); the core sums
them in ``acc_width = out_width + ceil(log2(tiles))`` bits, so the unshifted sum is exact.
With the chip's 32-bit elements the exact projection output ``y`` of
:meth:`EncoderLayer.project` fits an element (``out_shift = 0``, ``out_bits = 0``) whenever it
fits 32 bits (every tile output of the regression and full-size tiles does: ``out_width`` 28
and 31); the requantization lets the core do the first step of
``golden.transformer._projection_out`` itself (``out_shift = ofb + f_in - f_out``, ``out_bits
= 0``: the LoRA term is added later, before the final saturation) or the whole of it for a
projection without LoRA (``out_bits`` = the target's width).
"""

import enum
from dataclasses import dataclass, field

import numpy as np

from ._check import check_int
from .network_interface import NiConfig
from .nonlinear import rshift_round, saturate
from .pim_tile import CFG_FIELD_BITS, CFG_VALUE_BITS, CfgField, TileConfig, cfg_write_fields
from .transformer import tile_forward

__all__ = ["Op", "CoreField", "CoreConfig", "command_fields", "encode_command",
           "decode_command", "check_command", "PimCoreModel", "chunk_registers",
           "OUT_SHIFT_BITS", "OUT_BITS_BITS", "cycles_per_token", "tile_commands",
           "matrix_words"]


class Op(enum.IntEnum):
    """The command's operation."""
    CONFIG = 0
    MVM = 1
    SEND = 2


class CoreField(enum.IntEnum):
    """Per-tile registers of the core (a ``CONFIG`` with ``core = 1``)."""
    IN_BASE = 0     # first input element of the tile, in row blocks of ``rows``
    OUT_COL = 1     # output-row column of the tile's output 0


#: Widths of the MVM requantization fields.
OUT_SHIFT_BITS = 6
OUT_BITS_BITS = 7


def _ubits(n):
    return max(1, (n - 1).bit_length())


@dataclass(frozen=True)
class CoreConfig:
    """Parameters of a PIM core (the same names as :class:`hdl.pim_tile.PimCore`).

    Parameters
    ----------
    tiles : int
        PIM tiles (Atleus: 16), 1 to 64.
    tile : TileConfig
        The configuration every tile shares.
    ni : NiConfig
        The chip's network-interface parameters: ``elem_width``, ``length`` (the memory word),
        ``nodes`` (``dest``), the tag widths.
    mem_words : int
        Local memory words, 2 to 32768.
    max_cols : int or None
        Longest output row (columns); ``None`` or 0: ``tiles * tile.outputs``.
    """
    tiles: int = 16
    tile: TileConfig = field(default_factory=TileConfig)
    ni: NiConfig = field(default_factory=lambda: NiConfig(payload_width=32, elem_width=32,
                                                          length=128, nodes=64))
    mem_words: int = 4096
    max_cols: int = None

    def __post_init__(self):
        check_int("tiles", self.tiles, 1, 64)
        if not isinstance(self.tile, TileConfig):
            raise TypeError(f"tile must be a golden.pim_tile.TileConfig, not {self.tile!r}")
        if not isinstance(self.ni, NiConfig):
            raise TypeError(f"ni must be a golden.network_interface.NiConfig, not {self.ni!r}")
        check_int("mem_words", self.mem_words, 2, 32768)
        if self.ni.length % self.tile.rows:
            raise ValueError(f"tile.rows ({self.tile.rows}) must divide the vector length "
                             f"ni.length ({self.ni.length})")
        if self.max_cols is None or self.max_cols == 0:
            object.__setattr__(self, "max_cols", self.tiles * self.tile.outputs)
        check_int("max_cols", self.max_cols, 1, 1 << 20)
        if self.ni.elem_width < self.tile.input_bits:
            raise ValueError(f"ni.elem_width ({self.ni.elem_width}) must hold the tile's "
                             f"input_bits ({self.tile.input_bits})")

    @property
    def length(self):
        return self.ni.length

    @property
    def elem_width(self):
        return self.ni.elem_width

    @property
    def acc_width(self):
        """Width of the exact output-row sums: ``out_width + ceil(log2(tiles))``."""
        return self.tile.out_width + (self.tiles - 1).bit_length()

    @property
    def row_words(self):
        """Words of the longest output row."""
        return -(-self.max_cols // self.length)

    @property
    def blocks_per_word(self):
        """Row blocks of ``rows`` elements in one memory word."""
        return self.length // self.tile.rows

    @property
    def max_command_bits(self):
        """The command must fit a vector after the 16-bit ``wait`` field."""
        return self.elem_width * self.length - 16


def command_fields(cfg):
    """Fields of a command, LSB first, ``{name: width}`` (the RTL's ``command_layout``).

    Shared: ``op``. CONFIG: ``all``, ``tile``, ``core``, ``xbar``, ``field``, ``value``. MVM:
    ``mask``, ``tokens``, ``in_addr``, ``in_words``, ``out_cols``, ``out_addr``, ``to_o``,
    ``dest``, ``dest_addr``, ``layer``, ``out_shift``, ``out_bits``. SEND: ``in_addr``,
    ``tokens`` (the word count), ``dest``, ``dest_addr``, ``layer``.
    """
    t, ni = cfg.tile, cfg.ni
    addr = _ubits(cfg.mem_words)
    count = cfg.mem_words.bit_length()
    xbar = cfg_write_fields(t.crossbars)["xbar"]
    f = {"op": 2, "all": 1, "tile": _ubits(cfg.tiles), "core": 1, "xbar": xbar,
         "field": CFG_FIELD_BITS, "value": CFG_VALUE_BITS,
         "mask": cfg.tiles, "tokens": count, "in_addr": addr, "in_words": count,
         "out_cols": cfg.max_cols.bit_length(), "out_addr": addr, "to_o": 1,
         "dest": ni.dest_bits, "dest_addr": ni.offset_bits, "layer": ni.layer_bits,
         "out_shift": OUT_SHIFT_BITS, "out_bits": OUT_BITS_BITS}
    total = sum(f.values())
    if total > cfg.max_command_bits:
        raise ValueError(f"The command ({total} bits) does not fit a vector after the wait "
                         f"field ({cfg.max_command_bits} bits): raise elem_width or length")
    return f


def encode_command(cfg, op, **fields):
    """The command as an integer (field 0 at the LSB), as ``hdl.pim_tile.PimCore.cmd`` takes it.

    Unnamed fields are 0. ``ValueError`` for an unknown field or a value that does not fit its
    width (an out-of-range value that fits, e.g. a tile index beyond ``tiles``, is encoded: the
    core refuses it).
    """
    spec = command_fields(cfg)
    values = {"op": int(Op(op))}
    for k, v in fields.items():
        if k not in spec or k == "op":
            raise ValueError(f"Unknown command field {k!r}; fields are {', '.join(spec)}")
        values[k] = int(v)
    word, shift = 0, 0
    for k, w in spec.items():
        v = values.get(k, 0)
        if not 0 <= v < (1 << w):
            raise ValueError(f"Command field {k} must be 0 to {(1 << w) - 1}, not {v}")
        word |= v << shift
        shift += w
    return word


def decode_command(cfg, word):
    """The fields of a command integer, ``{name: value}``."""
    out, shift = {}, 0
    for k, w in command_fields(cfg).items():
        out[k] = (int(word) >> shift) & ((1 << w) - 1)
        shift += w
    return out


def _mode_ok(t, value):
    enable, adc = value & 1, value >> 2
    if value >> (2 + t.adc_bits.bit_length()):
        return False
    return not enable or adc in t.resolutions


def check_command(cfg, c, regs):
    """Whether the decoded command ``c`` is accepted (``True``) by a core whose per-tile
    registers are ``regs`` (``{"n_blocks", "n_outputs", "in_base", "out_col"}``: lists).

    Refused: op 3; CONFIG to tile >= ``tiles`` (without ``all``), to ``xbar >= crossbars`` (a
    per-crossbar field), field values out of range (MODE: more bits than the register or an
    enabled crossbar at a resolution not in ``resolutions``; IN_BLOCK >= row_blocks; OUT_BASE
    >= outputs; SCALE beyond ``scale_bits``; N_OUTPUTS not 1..outputs; N_BLOCKS not
    1..row_blocks; a core field other than IN_BASE/OUT_COL; OUT_COL >= max_cols). MVM: empty
    mask or a bit >= tiles, ``tokens`` 0, ``in_words`` 0, ``out_cols`` not 1..max_cols, the
    input or (``to_o = 0``) the output rows beyond memory, ``out_shift > acc_width``,
    ``out_bits > elem_width``, a selected tile whose inputs ``(IN_BASE + N_BLOCKS) * rows``
    exceed ``in_words * L`` or whose outputs ``OUT_COL + N_OUTPUTS`` exceed ``out_cols``.
    SEND: ``tokens`` (the count) 0 or words beyond memory.
    """
    t, L, W = cfg.tile, cfg.length, cfg.mem_words
    op = c["op"]
    if op == Op.CONFIG:
        if not c["all"] and c["tile"] >= cfg.tiles:
            return False
        v, fld = c["value"], c["field"]
        if c["core"]:
            if fld == CoreField.IN_BASE:
                return v < (1 << _in_base_bits(cfg))
            if fld == CoreField.OUT_COL:
                return v < cfg.max_cols
            return False
        if fld > max(CfgField):
            return False
        fld = CfgField(fld)
        if fld in (CfgField.MODE, CfgField.IN_BLOCK, CfgField.OUT_BASE, CfgField.SCALE) \
                and c["xbar"] >= t.crossbars:
            return False
        return {CfgField.MODE: _mode_ok(t, v), CfgField.IN_BLOCK: v < t.row_blocks,
                CfgField.OUT_BASE: v < t.outputs, CfgField.SCALE: v < (1 << t.scale_bits),
                CfgField.N_OUTPUTS: 1 <= v <= t.outputs,
                CfgField.N_BLOCKS: 1 <= v <= t.row_blocks}[fld]
    if op == Op.MVM:
        mask = c["mask"]
        if not mask or mask >> cfg.tiles or not c["tokens"] or not c["in_words"]:
            return False
        n = c["out_cols"]
        if not 1 <= n <= cfg.max_cols:
            return False
        ow = -(-n // L)
        if c["in_addr"] + c["tokens"] * c["in_words"] > W:
            return False
        if not c["to_o"] and c["out_addr"] + c["tokens"] * ow > W:
            return False
        if c["out_shift"] > cfg.acc_width or c["out_bits"] > cfg.elem_width:
            return False
        for k in range(cfg.tiles):
            if (mask >> k) & 1:
                if (regs["in_base"][k] + regs["n_blocks"][k]) * t.rows > c["in_words"] * L:
                    return False
                if regs["out_col"][k] + regs["n_outputs"][k] > n:
                    return False
        return True
    if op == Op.SEND:
        return 1 <= c["tokens"] and c["in_addr"] + c["tokens"] <= W
    return False


def _in_base_bits(cfg):
    """Width of the IN_BASE register: any row block of the longest input row in memory."""
    return (cfg.mem_words * cfg.blocks_per_word).bit_length()


def chunk_registers(tile, r0, c0):
    """The core's registers of a tile holding the chunk at ``(r0, c0)`` of a matrix
    (:func:`golden.transformer.chunk_plan`): ``{CoreField.IN_BASE: r0 // rows,
    CoreField.OUT_COL: c0}``."""
    if r0 % tile.rows:
        raise ValueError(f"r0 ({r0}) must be a multiple of tile.rows ({tile.rows})")
    return {CoreField.IN_BASE: r0 // tile.rows, CoreField.OUT_COL: c0}


def tile_commands(cfg, tile, mapping, r0=0, c0=0):
    """CONFIG commands that load tile ``tile`` with ``mapping`` (its
    :meth:`~golden.pim_tile.TileMapping.config_writes`) holding the chunk at ``(r0, c0)`` of
    a matrix (:func:`chunk_registers`): a list of command integers."""
    out = [encode_command(cfg, Op.CONFIG, tile=tile, xbar=w["xbar"], field=int(w["field"]),
                          value=w["value"]) for w in mapping.config_writes()]
    for fld, v in chunk_registers(cfg.tile, r0, c0).items():
        out.append(encode_command(cfg, Op.CONFIG, tile=tile, core=1, field=int(fld), value=v))
    return out


def matrix_words(x, length):
    """A ``R x C`` integer matrix as memory words (row-major, ``ceil(C / length)`` words per
    row, lanes above ``C`` zero): ``(R * ceil(C / length), length)``."""
    x = np.asarray(x, dtype=np.int64)
    wpr = -(-x.shape[1] // length)
    out = np.zeros((x.shape[0], wpr * length), dtype=np.int64)
    out[:, :x.shape[1]] = x
    return out.reshape(-1, length)


def cycles_per_token(cfg, mappings):
    """Steady-state cycles per token of an MVM over tiles ``mappings`` (``{tile: TileMapping}``):
    the tiles run in parallel, so the slowest tile's :func:`golden.pim_tile.mvm_cycles`
    (while a token's collection, ``sum of N_OUTPUTS`` cycles, plus its drain, ``3 *
    ceil(out_cols / L)``, fit within it). The RTL tile takes one cycle more per vector when a
    group's shift-and-add is within a cycle of the ADC sweep (``REGRESSION_TILE``: 2057
    against 2056)."""
    return max(m.cycles_per_mvm() for m in mappings.values())


class PimCoreModel:
    """The core's golden execution model: memory, registers, tiles, and the command semantics.

    Parameters
    ----------
    cfg : CoreConfig

    Members
    -------
    mem : ndarray ``(mem_words, length)`` of int64
        The local memory.
    error : bool
        A command was refused (sticky).
    reset()
        The core's reset.
    program(tile, mapping, step0=0)
        The crossbars of tile ``tile`` (a :class:`golden.pim_tile.TileMapping`); its next
        vector is noise step ``step0`` (the golden model keys read and comparator noise by a
        global vector index: :meth:`golden.transformer.EncoderLayer.project` uses one counter
        for all its matrices, so W^O's tiles start where W^QKV's calls ended). The model takes the tile's registers to
        be the mapping's (:func:`tile_commands` sent after the last reset); a tile without a
        mapping has every crossbar disabled and outputs zeros.
    write(addr, words)
        ``wr`` transfers.
    execute(word) -> list of ``(dest, offset, layer, data)``
        Run one command (integer or field dict); returns the vectors it sends on ``o``.
    """

    def __init__(self, cfg):
        if not isinstance(cfg, CoreConfig):
            raise TypeError(f"cfg must be a CoreConfig, not {cfg!r}")
        self.cfg = cfg
        t = cfg.tile
        self.mem = np.zeros((cfg.mem_words, cfg.length), dtype=np.int64)
        self.reset()
        self.mappings = [None] * cfg.tiles
        self.steps = [0] * cfg.tiles

    def reset(self):
        """A reset of the core: the registers (the tiles' and the core's) and ``error``
        cleared; the memory and the programmed crossbars keep their contents."""
        t = self.cfg.tile
        self.error = False
        T = self.cfg.tiles
        self.regs = {"n_blocks": [1] * T, "n_outputs": [t.outputs] * T,
                     "in_base": [0] * T, "out_col": [0] * T}

    def program(self, tile, mapping, step0=0):
        self.mappings[tile] = mapping
        self.steps[tile] = step0

    def write(self, addr, words):
        words = np.asarray(words, dtype=np.int64).reshape(-1, self.cfg.length)
        self.mem[addr:addr + len(words)] = _wrap(words, self.cfg.elem_width)

    def read_matrix(self, base, rows, cols):
        """A row-major ``rows x cols`` matrix at word ``base``."""
        wpr = -(-cols // self.cfg.length)
        return self.mem[base:base + rows * wpr].reshape(rows, wpr * self.cfg.length)[:, :cols].copy()

    def execute(self, word):
        cfg = self.cfg
        c = word if isinstance(word, dict) else decode_command(cfg, word)
        if not check_command(cfg, c, self.regs):
            self.error = True
            return []
        op = Op(c["op"])
        if op == Op.CONFIG:
            targets = range(cfg.tiles) if c["all"] else [c["tile"]]
            for k in targets:
                if c["core"]:
                    key = "in_base" if c["field"] == CoreField.IN_BASE else "out_col"
                    self.regs[key][k] = c["value"]
                elif c["field"] == CfgField.N_BLOCKS:
                    self.regs["n_blocks"][k] = c["value"]
                elif c["field"] == CfgField.N_OUTPUTS:
                    self.regs["n_outputs"][k] = c["value"]
            return []
        if op == Op.SEND:
            return [(c["dest"], (c["dest_addr"] + j) % (1 << cfg.ni.offset_bits), c["layer"],
                     self.mem[c["in_addr"] + j].copy()) for j in range(c["tokens"])]
        return self._mvm(c)

    def mvm_rows(self, c, x):
        """The exact (unrequantized) output rows of an MVM over input rows ``x`` ``(tokens,
        in_words * L)`` (advances the tiles' noise steps)."""
        cfg, t = self.cfg, self.cfg.tile
        tokens = x.shape[0]
        y = np.zeros((tokens, c["out_cols"]), dtype=np.int64)
        lim = 1 << (t.input_bits - 1)
        xi = ((x + lim) % (2 * lim)) - lim
        for k in range(cfg.tiles):
            if not (c["mask"] >> k) & 1:
                continue
            m = self.mappings[k]
            r0 = self.regs["in_base"][k] * t.rows
            if m is None:         # every crossbar disabled (the reset state): zeros
                out = np.zeros((tokens, self.regs["n_outputs"][k]), dtype=np.int64)
            else:
                out = tile_forward(m, xi[:, r0:r0 + m.n_inputs], step=self.steps[k])
            self.steps[k] += tokens
            c0 = self.regs["out_col"][k]
            y[:, c0:c0 + out.shape[1]] += out
        return y

    def requantize(self, y, out_shift, out_bits):
        return saturate(rshift_round(y, out_shift), out_bits or self.cfg.elem_width)

    def _mvm(self, c):
        cfg = self.cfg
        L = cfg.length
        x = self.mem[c["in_addr"]:c["in_addr"] + c["tokens"] * c["in_words"]]
        x = x.reshape(c["tokens"], c["in_words"] * L)
        y = self.requantize(self.mvm_rows(c, x), c["out_shift"], c["out_bits"])
        ow = -(-c["out_cols"] // L)
        words = np.zeros((c["tokens"], ow * L), dtype=np.int64)
        words[:, :c["out_cols"]] = y
        words = words.reshape(-1, L)
        if not c["to_o"]:
            self.mem[c["out_addr"]:c["out_addr"] + len(words)] = words
            return []
        mod = 1 << cfg.ni.offset_bits
        return [(c["dest"], (c["dest_addr"] + j) % mod, c["layer"], words[j].copy())
                for j in range(len(words))]


def _wrap(v, bits):
    """Signed ``bits``-bit two's complement wrap."""
    h = 1 << (bits - 1)
    return ((np.asarray(v, dtype=np.int64) + h) % (2 * h)) - h
