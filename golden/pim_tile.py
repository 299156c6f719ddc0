"""Host-side mapper and golden model of the ReRAM PIM tile (``hdl/pim_tile/``).

The tile (Atleus Table IV, ISAAC's IMA organization) holds ``crossbars`` crossbars of
``rows x cols`` cells, each read by ``adcs_per_xbar`` column-multiplexed SAR ADCs, grouped by
``group`` crossbars that share one shift-and-add unit and one dequantizer (with one scale
register per crossbar). This module is the host side and the spec of the tile:

- :class:`TileConfig`: the tile's parameters, the same names as :class:`hdl.pim_tile.PimTile`
  (which keeps one ``TileConfig``); the register map of its ``cfg`` port (:class:`CfgField`,
  :data:`REGISTERS`, :func:`cfg_write_fields`, :func:`mode_fields`, :func:`mode_word`).
- :func:`map_matrix`: a float or integer weight matrix of any size -> crossbar-wise quantized
  tiles (Atleus), optionally split by SVD into an SLC and an MLC part (HyFlexPIM, through
  :func:`golden.hybrid.svd_split`), placed on the crossbars, with the golden crossbars
  programmed (:class:`golden.crossbar.Crossbar`, with their noise) and the tile's register
  values computed. Every configuration error is raised here, before anything runs.
- :class:`TileMapping`: the mapped layer. :meth:`TileMapping.golden` is the tile's exact
  integer output, in the RTL's arithmetic order (per-crossbar integer MVM through DAC planes,
  ADC, shift-and-add; per-crossbar dequantization; sum over the crossbars of each output);
  :meth:`TileMapping.config_writes` are the register writes of the RTL's ``cfg`` port.
- :func:`mvm_cycles`, :func:`analytic_bound`: the tile's cycle model.

Layout of a mapped layer: the input vector ``x`` (length ``K``) is cut into row blocks of
``rows``; crossbar ``x`` reads row block ``in_block[x]`` and adds its ``n_out`` outputs
(``cols * cell_bits // weight_bits``: 32 for MLC, 16 for SLC at 128 columns and 8-bit weights)
into outputs ``out_base[x] ..``. Weights use the offset encoding (cells hold
``w + 2**(weight_bits - 1)``, corrected digitally with the popcount of each input plane), the
encoding the shift-and-add unit implements for both SLC and MLC crossbars.

Output format: integers with ``out_frac_bits`` fractional bits (``out_frac_bits`` may be
negative); the float result is ``y * 2.0 ** -out_frac_bits``.
"""

import enum
import math
from dataclasses import dataclass

import numpy as np

from ._check import as_int_array, check_choice, check_int, check_real
from .crossbar import Crossbar, CrossbarConfig
from .hybrid import svd_split
from .noise import NoiseConfig
from .quant import ROUNDING_MODES, aggregate, dequantize, quantize_crossbarwise

__all__ = ["TileConfig", "TileMapping", "map_matrix", "mvm_cycles", "analytic_bound",
           "adc_utilization", "CfgField", "FIELD_MODE", "FIELD_IN_BLOCK", "FIELD_OUT_BASE",
           "FIELD_SCALE", "FIELD_N_OUTPUTS", "FIELD_N_BLOCKS", "CFG_FIELD_BITS", "CFG_VALUE_BITS",
           "REGISTERS", "cfg_write_fields", "mode_fields", "mode_word", "DEFAULT_ADC_BITS"]


# --------------------------------------------------------------------------------------------
# Register map of the tile's configuration port (``PimTile.cfg``): described here once; the
# RTL views these fields through ``data.StructLayout`` s built from the functions below.

class CfgField(enum.IntEnum):
    """Register selected by a configuration write ``{xbar, field, value}``."""
    MODE = 0        # per crossbar: the MODE word (mode_fields)
    IN_BLOCK = 1    # per crossbar: row block of the input vector the crossbar reads
    OUT_BASE = 2    # per crossbar: output index of the crossbar's first weight column
    SCALE = 3       # per crossbar: signed fixed-point dequantization scale (low scale_bits)
    N_OUTPUTS = 4   # tile: output vector length
    N_BLOCKS = 5    # tile: input beats (row blocks) per vector


FIELD_MODE, FIELD_IN_BLOCK, FIELD_OUT_BASE, FIELD_SCALE, FIELD_N_OUTPUTS, FIELD_N_BLOCKS = CfgField

#: Width of the ``field`` and ``value`` parts of a configuration write.
CFG_FIELD_BITS = 3
CFG_VALUE_BITS = 32

#: Scope of every register: ``"xbar"`` (one per crossbar, selected by ``xbar``) or ``"tile"``
#: (``xbar`` ignored).
REGISTERS = {CfgField.MODE: "xbar", CfgField.IN_BLOCK: "xbar", CfgField.OUT_BASE: "xbar",
             CfgField.SCALE: "xbar", CfgField.N_OUTPUTS: "tile", CfgField.N_BLOCKS: "tile"}


def _ubits(n):
    return max(1, (n - 1).bit_length())


def cfg_write_fields(crossbars):
    """Fields of one configuration write, LSB first: ``{"xbar", "field", "value"}`` -> width."""
    return {"xbar": _ubits(crossbars), "field": CFG_FIELD_BITS, "value": CFG_VALUE_BITS}


def mode_fields(adc_bits):
    """Fields of the MODE word, LSB first, -> width: ``enable`` (the crossbar converts),
    ``slc`` (1-bit cells: ``weight_bits`` slices per weight, else 2-bit cells), ``adc_bits``
    (its ADC resolution, one of the tile's ``resolutions``)."""
    return {"enable": 1, "slc": 1, "adc_bits": int(adc_bits).bit_length()}


#: ADC resolution per cell type when the mapper is not told: SLC 7 bits (HyFlexPIM), MLC 8 bits
#: (Atleus/ISAAC).
DEFAULT_ADC_BITS = {1: 7, 2: 8}


def mode_word(enable, cell_bits, adc_bits):
    """Value of a crossbar's MODE register (:func:`mode_fields`): ``enable | (cell_bits == 1)
    << 1 | adc_bits << 2``."""
    word, shift = 0, 0
    values = {"enable": int(bool(enable)), "slc": int(cell_bits == 1), "adc_bits": int(adc_bits)}
    for name, width in mode_fields(adc_bits).items():
        word |= values[name] << shift
        shift += width
    return word


@dataclass(frozen=True)
class TileConfig:
    """Parameters of the tile (the same names and defaults as :class:`hdl.pim_tile.PimTile`).

    Parameters
    ----------
    crossbars : int
        Crossbars in the tile (Atleus: 96).
    rows, cols : int
        Cells per crossbar (128 x 128).
    input_bits : int
        Signed activation width, one 1-bit DAC plane per bit (8).
    weight_bits : int
        Signed weight width (8): 4 MLC cells or 8 SLC cells per weight.
    adc_bits : int
        Widest ADC resolution (8).
    resolutions : tuple of int
        ADC resolutions a crossbar may select (HyFlexPIM's 6/7 and Atleus's 8).
    adcs_per_xbar : int
        ADCs per crossbar, each behind a mux of ``cols // adcs_per_xbar`` columns (1).
    group : int
        Crossbars per shift-and-add/dequantization group (8: 12 groups, Atleus's 12 scale
        registers and S&A units).
    row_blocks : int
        Input vector length in row blocks of ``rows`` (the input buffer holds
        ``row_blocks * rows`` activations).
    outputs : int
        Output accumulator entries (the longest output vector).
    scale_bits, scale_frac_bits : int
        Signed scale register width (16: Atleus's 192 B for 96 crossbars) and its fractional
        bits (the dequantizer's right shift).
    out_bits : int
        Signed width of one dequantized partial sum (saturating).
    rounding : {"half_up", "half_even", "floor"}
        Rounding of the dequantizer shift.
    """

    crossbars: int = 96
    rows: int = 128
    cols: int = 128
    input_bits: int = 8
    weight_bits: int = 8
    adc_bits: int = 8
    resolutions: tuple = (6, 7, 8)
    adcs_per_xbar: int = 1
    group: int = 8
    row_blocks: int = 8
    outputs: int = 1024
    scale_bits: int = 16
    scale_frac_bits: int = 16
    out_bits: int = 24
    rounding: str = "half_up"

    def __post_init__(self):
        check_tile_params(**{f: getattr(self, f) for f in self.__dataclass_fields__})

    @property
    def columns_per_adc(self):
        return self.cols // self.adcs_per_xbar

    @property
    def groups(self):
        return self.crossbars // self.group

    def n_out(self, cell_bits):
        """Weight columns of one crossbar with ``cell_bits`` bits per cell."""
        return self.cols * cell_bits // self.weight_bits

    @property
    def max_n_out(self):
        return self.n_out(2)

    @property
    def out_width(self):
        """Width of the tile's output values (a sum of ``crossbars`` partial sums)."""
        return self.out_bits + (self.crossbars - 1).bit_length()

    @property
    def n_adcs(self):
        """ADCs in the tile (``crossbars * adcs_per_xbar``)."""
        return self.crossbars * self.adcs_per_xbar

    @property
    def group_columns(self):
        """Accumulator entries of a group's shift-and-add unit: ``group * max_n_out``."""
        return self.group * self.max_n_out

    @property
    def sa_acc_width(self):
        """Width of a group's shift-and-add results (:func:`golden.shift_add.sa_acc_width` of
        the tile's offset-encoded, signed-input, 1-bit-slice configuration)."""
        from .shift_add import sa_acc_width
        return sa_acc_width(adc_bits=self.adc_bits, input_bits=self.input_bits,
                            weight_bits=self.weight_bits, cell_bits=1, rows=self.rows,
                            encoding="offset", flip=False, signed_inputs=True, row_groups=1)


def check_tile_params(*, crossbars, rows, cols, input_bits, weight_bits, adc_bits, resolutions,
                      adcs_per_xbar, group, row_blocks, outputs, scale_bits, scale_frac_bits,
                      out_bits, rounding):
    """House-style checks of the tile parameters (shared by the RTL and the golden model)."""
    check_int("crossbars", crossbars, 1, 256)
    check_int("rows", rows, 2, 1024)
    check_int("cols", cols, 8, 1024)
    check_int("input_bits", input_bits, 2, 16)
    if weight_bits not in (2, 4, 8, 16):
        raise TypeError(f"weight_bits must be one of 2, 4, 8, 16, not {weight_bits!r}")
    check_int("adc_bits", adc_bits, 1, 16)
    if (not isinstance(resolutions, tuple) or not resolutions
            or not all(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= 16 for r in resolutions)):
        raise TypeError(f"resolutions must be a non-empty tuple of integers from 1 to 16, not {resolutions!r}")
    if max(resolutions) != adc_bits:
        raise ValueError(f"the widest of resolutions {resolutions!r} must equal adc_bits ({adc_bits})")
    check_int("adcs_per_xbar", adcs_per_xbar, 1, cols)
    check_int("group", group, 1, 64)
    check_int("row_blocks", row_blocks, 1, 64)
    check_int("outputs", outputs, 1, 4096)
    check_int("scale_bits", scale_bits, 2, 32)
    check_int("scale_frac_bits", scale_frac_bits, 0, 48)
    check_int("out_bits", out_bits, 2, 48)
    check_choice("rounding", rounding, ROUNDING_MODES)
    if cols & (cols - 1):
        raise ValueError(f"cols must be a power of two, not {cols}")
    slc_slices = weight_bits
    if cols % adcs_per_xbar or (cols // adcs_per_xbar) % slc_slices:
        raise ValueError(f"cols // adcs_per_xbar ({cols} // {adcs_per_xbar}) must be a whole multiple "
                         f"of weight_bits ({weight_bits}): the slices of a weight share one ADC")
    if crossbars % group:
        raise ValueError(f"group ({group}) must divide crossbars ({crossbars})")


# --------------------------------------------------------------------------------------------
# Cycle model

def analytic_bound(tile, adc_bits=None):
    """Cycles per MVM with every ADC busy: ``input_bits * (1 + columns_per_adc * adc_bits)``
    (one sample cycle, then one trial per bit per column, per input plane)."""
    b = tile.adc_bits if adc_bits is None else adc_bits
    return tile.input_bits * (1 + tile.columns_per_adc * b)


def mvm_cycles(tile, crossbar_bits):
    """Cycle model of one MVM in steady state (the RTL runs the planes of all crossbars in
    lockstep): per plane, the slowest crossbar's ``1 + columns_per_adc * bits``, or the busiest
    group's shift-and-add (one ADC code per cycle), whichever is longer.

    Parameters
    ----------
    crossbar_bits : dict
        ADC resolution of each enabled crossbar, ``{xbar: bits}``.
    """
    if not crossbar_bits:
        return 0
    adc = max(1 + tile.columns_per_adc * b for b in crossbar_bits.values())
    per_group = {}
    for x in crossbar_bits:
        per_group[x // tile.group] = per_group.get(x // tile.group, 0) + tile.cols
    return tile.input_bits * max(adc, max(per_group.values()))


def adc_utilization(tile, crossbar_bits, cycles_per_mvm):
    """Fraction of the enabled ADCs' cycles spent on trials."""
    if not crossbar_bits or not cycles_per_mvm:
        return 0.0
    trials = sum(tile.input_bits * tile.cols * b for b in crossbar_bits.values())
    return trials / (cycles_per_mvm * len(crossbar_bits) * tile.adcs_per_xbar)


# --------------------------------------------------------------------------------------------
# Mapping

@dataclass
class _Xbar:
    index: int
    cell_bits: int
    adc_bits: int
    in_block: int
    out_base: int
    scale: float
    crossbar: Crossbar
    scale_fixed: int = 0


class TileMapping:
    """A weight matrix mapped onto the tile (made by :func:`map_matrix`).

    Members
    -------
    golden(x, *, step=0) -> (y, saturated)
        Exact integer outputs ``(batch, N)`` (``out_frac_bits`` fractional bits) and the
        saturation flags of the partial sums.
    float_reference(x)
        ``x @ w`` in float (the unquantized layer).
    config_writes()
        Register writes for the RTL, list of dicts ``{xbar, field, value}``.
    """

    def __init__(self, tile, w, xbars, *, out_frac_bits, n_blocks, slc_rate, noise):
        self.tile = tile
        self.w = w
        self.xbars = xbars
        self.out_frac_bits = out_frac_bits
        self.n_blocks = n_blocks
        self.slc_rate = slc_rate
        self.noise = noise

    @property
    def shape(self):
        return self.w.shape

    @property
    def n_inputs(self):
        return self.w.shape[0]

    @property
    def n_outputs(self):
        return self.w.shape[1]

    @property
    def crossbar_bits(self):
        """ADC resolution of each used crossbar, ``{xbar: bits}``."""
        return {x.index: x.adc_bits for x in self.xbars}

    @property
    def scale_fixed(self):
        return {x.index: x.scale_fixed for x in self.xbars}

    def crossbar(self, index):
        """The golden :class:`~golden.crossbar.Crossbar` programmed on tile crossbar ``index``."""
        for x in self.xbars:
            if x.index == index:
                return x.crossbar
        return None

    def cycles_per_mvm(self):
        return mvm_cycles(self.tile, self.crossbar_bits)

    def pad_inputs(self, x):
        """Integer inputs ``(batch, K)`` checked and padded to ``(batch, n_blocks * rows)``."""
        t = self.tile
        lim = 1 << (t.input_bits - 1)
        x = as_int_array("x", x, lo=-lim, hi=lim - 1)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"x must have shape (batch, {self.n_inputs}), not {x.shape}")
        xp = np.zeros((x.shape[0], self.n_blocks * t.rows), dtype=np.int64)
        xp[:, :self.n_inputs] = x
        return xp

    def partials(self, x, *, step=0):
        """Integer partial sum of every used crossbar, ``{xbar: (batch, n_out)}``."""
        t = self.tile
        xp = self.pad_inputs(x)
        out = {}
        for xb in self.xbars:
            xi = xp[:, xb.in_block * t.rows:(xb.in_block + 1) * t.rows]
            out[xb.index] = xb.crossbar.mvm(xi, step=step, adc_bits=xb.adc_bits)
        return out

    def golden(self, x, *, step=0):
        """The tile's outputs, bit-exact: ``(y, saturated)``, each ``(batch, N)``.

        ``step`` is the global index of the first vector (keys the per-vector noise: read and
        comparator noise); vector ``b`` of the batch is step ``step + b``.
        """
        t = self.tile
        parts = self.partials(x, step=step)
        batch = next(iter(parts.values())).shape[0]
        n = self.n_outputs
        terms = []
        sats = np.zeros((batch, n), dtype=bool)
        for xb in self.xbars:
            deq, sat = dequantize(parts[xb.index], xb.scale_fixed, scale_frac_bits=t.scale_frac_bits,
                                  out_bits=t.out_bits, rounding=t.rounding)
            full = np.zeros((batch, max(n, xb.out_base + deq.shape[1])), dtype=np.int64)
            full[:, xb.out_base:xb.out_base + deq.shape[1]] = deq
            terms.append(full[:, :n])
            fs = np.zeros_like(full, dtype=bool)
            fs[:, xb.out_base:xb.out_base + deq.shape[1]] = sat
            sats |= fs[:, :n]
        y = aggregate(np.stack(terms)).astype(np.int64)
        return y, sats

    def to_float(self, y):
        return np.asarray(y, dtype=np.float64) * 2.0 ** -self.out_frac_bits

    def float_reference(self, x):
        return np.asarray(x, dtype=np.float64) @ self.w

    def config_writes(self):
        """Register writes for ``PimTile.cfg``: every crossbar's mode (unused ones disabled),
        row block, output base and scale, then the output and input vector lengths."""
        t = self.tile
        used = {x.index: x for x in self.xbars}
        writes = []
        for i in range(t.crossbars):
            xb = used.get(i)
            if xb is None:
                writes.append({"xbar": i, "field": FIELD_MODE, "value": 0})
                continue
            writes += [
                {"xbar": i, "field": FIELD_MODE, "value": mode_word(1, xb.cell_bits, xb.adc_bits)},
                {"xbar": i, "field": FIELD_IN_BLOCK, "value": xb.in_block},
                {"xbar": i, "field": FIELD_OUT_BASE, "value": xb.out_base},
                {"xbar": i, "field": FIELD_SCALE, "value": xb.scale_fixed & ((1 << t.scale_bits) - 1)},
            ]
        writes.append({"xbar": 0, "field": FIELD_N_OUTPUTS, "value": self.n_outputs})
        writes.append({"xbar": 0, "field": FIELD_N_BLOCKS, "value": self.n_blocks})
        return writes


def _noise_for(noise, cell_bits):
    if noise is None:
        return NoiseConfig()
    if isinstance(noise, NoiseConfig):
        return noise
    if isinstance(noise, dict):
        n = noise.get("slc" if cell_bits == 1 else "mlc", NoiseConfig())
        if not isinstance(n, NoiseConfig):
            raise TypeError(f"noise['slc'/'mlc'] must be a NoiseConfig, not {n!r}")
        return n
    raise TypeError(f"noise must be a NoiseConfig or a dict {{'slc': .., 'mlc': ..}}, not {noise!r}")


def map_matrix(w, tile=None, *, slc_rate=None, cell_bits=2, adc_bits=None, scale=1.0,
               out_frac_bits=None, noise=None, seed=0):
    """Map a weight matrix onto the tile; every error is raised here, before anything runs.

    Parameters
    ----------
    w : array_like
        ``(K, N)`` weights, ``y = x @ w``. Float: crossbar-wise quantized to ``weight_bits``
        (one scale per crossbar, Atleus). Integer: used as they are (they must fit
        ``weight_bits``), every crossbar with the real scale ``scale``.
    tile : TileConfig
    slc_rate : float or None
        HyFlexPIM's hybrid mapping: the fraction of singular components on SLC crossbars (0 to
        1), the rest on MLC crossbars (float weights only). ``None``: every crossbar has
        ``cell_bits``.
    cell_bits : {1, 2}
        Cell type without ``slc_rate``.
    adc_bits : int or dict or None
        ADC resolution, one for all crossbars or ``{cell_bits: bits}``; default
        :data:`DEFAULT_ADC_BITS` (limited to the tile's ``adc_bits``).
    scale : float
        Real scale of integer weights.
    out_frac_bits : int or None
        Fractional bits of the outputs; ``None`` picks the largest for which every scale fits
        the scale registers.
    noise : NoiseConfig or dict or None
        Non-idealities of every crossbar, or ``{"slc": NoiseConfig, "mlc": NoiseConfig}``.
    seed : int
        Root seed of the crossbars' random streams (crossbar ``x`` has ``xbar_id = x``).

    Returns
    -------
    TileMapping
    """
    tile = TileConfig() if tile is None else tile
    if not isinstance(tile, TileConfig):
        raise TypeError(f"tile must be a TileConfig, not {tile!r}")
    arr = np.asarray(w)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(f"w must be a non-empty 2-D array, not shape {arr.shape}")
    is_int = arr.dtype.kind in "iu"
    if not is_int and arr.dtype.kind != "f":
        raise TypeError(f"w must be a float or integer array, not {arr.dtype} values")
    seed = check_int("seed", seed, 0)
    k, n = arr.shape
    n_blocks = -(-k // tile.rows)
    if n_blocks > tile.row_blocks:
        raise ValueError(f"w has {k} rows, more than the tile's input buffer holds "
                         f"(row_blocks * rows = {tile.row_blocks * tile.rows})")
    if n > tile.outputs:
        raise ValueError(f"w has {n} columns, more than the tile's outputs ({tile.outputs})")
    if slc_rate is not None:
        slc_rate = check_real("slc_rate", slc_rate, 0, 1)
        if is_int:
            raise ValueError("slc_rate needs float weights (the SVD split is real-valued)")
        w_slc, w_mlc, _ = svd_split(arr.astype(np.float64), slc_rate=slc_rate)
        parts = [(1, w_slc), (2, w_mlc)]
        # A part whose singular components are all on the other side is left out.
        if slc_rate == 1.0:
            parts = [(1, arr.astype(np.float64))]
        elif slc_rate == 0.0:
            parts = [(2, arr.astype(np.float64))]
    else:
        if cell_bits not in (1, 2):
            raise TypeError(f"cell_bits must be 1 (SLC) or 2 (MLC), not {cell_bits!r}")
        parts = [(cell_bits, arr)]

    def bits_for(cb):
        if adc_bits is None:
            b = min(DEFAULT_ADC_BITS[cb], tile.adc_bits)
            if b not in tile.resolutions:
                b = tile.adc_bits
        elif isinstance(adc_bits, dict):
            b = adc_bits.get(cb)
        else:
            b = adc_bits
        if b not in tile.resolutions:
            kind = "SLC" if cb == 1 else "MLC"
            raise TypeError(f"adc_bits must be one of the tile's resolutions {tile.resolutions}, "
                            f"not {b!r}, for the {kind} crossbars (cell_bits={cb})")
        return b

    placed = []        # (cell_bits, w_int tile, scale, in_block, out_base)
    for cb, part in parts:
        n_out = tile.n_out(cb)
        if is_int:
            lim = 1 << (tile.weight_bits - 1)
            w_int = as_int_array("w", part, lo=-lim, hi=lim - 1)
            check_real("scale", scale, 0, lo_open=True)
            scales = np.full((n_blocks, -(-n // n_out)), float(scale))
        else:
            if not np.all(np.isfinite(part)):
                raise ValueError("w must hold finite values")
            w_int, scales = quantize_crossbarwise(part, weight_bits=tile.weight_bits, rows=tile.rows,
                                                  cols_per_xbar=n_out)
        for j in range(scales.shape[1]):
            for i in range(scales.shape[0]):
                blk = w_int[i * tile.rows:(i + 1) * tile.rows, j * n_out:(j + 1) * n_out]
                if not blk.any():
                    continue          # an all-zero tile needs no crossbar
                full = np.zeros((tile.rows, n_out), dtype=np.int64)
                full[:blk.shape[0], :blk.shape[1]] = blk
                placed.append((cb, full, float(scales[i, j]), i, j * n_out))
    if len(placed) > tile.crossbars:
        raise ValueError(f"the matrix needs {len(placed)} crossbars, more than the tile's "
                         f"{tile.crossbars}")

    # Output format: the scale registers hold scale * 2**(out_frac_bits + scale_frac_bits).
    smax = max((abs(p[2]) for p in placed), default=1.0)
    reg_max = (1 << (tile.scale_bits - 1)) - 1
    if out_frac_bits is None:
        out_frac_bits = math.floor(math.log2(reg_max / smax)) - tile.scale_frac_bits if smax > 0 else 0
        while smax * 2.0 ** (out_frac_bits + tile.scale_frac_bits) >= reg_max + 0.5:
            out_frac_bits -= 1
    elif not isinstance(out_frac_bits, int) or isinstance(out_frac_bits, bool):
        raise TypeError(f"out_frac_bits must be an integer, not {out_frac_bits!r}")

    xbars = []
    for idx, (cb, full, sc, i, base) in enumerate(placed):
        bits = bits_for(cb)
        fixed = math.floor(sc * 2.0 ** (out_frac_bits + tile.scale_frac_bits) + 0.5)
        if not -reg_max - 1 <= fixed <= reg_max:
            raise ValueError(f"the scale of crossbar {idx} ({sc:.6g}) times 2**(out_frac_bits + "
                             f"scale_frac_bits) = 2**{out_frac_bits + tile.scale_frac_bits} is {fixed}, "
                             f"out of the {tile.scale_bits}-bit scale register range "
                             f"({-reg_max - 1} to {reg_max}); lower out_frac_bits")
        cfg = CrossbarConfig(rows=tile.rows, cols=tile.cols, cell_bits=cb, weight_bits=tile.weight_bits,
                             input_bits=tile.input_bits, adc_bits=bits, encoding="offset",
                             adc=_adc_kind(_noise_for(noise, cb)), adc_share=tile.columns_per_adc,
                             noise=_noise_for(noise, cb), seed=seed, xbar_id=idx)
        xb = Crossbar(cfg).program(full)
        xbars.append(_Xbar(idx, cb, bits, i, base, sc, xb, fixed))
    w_real = arr.astype(np.float64) * (float(scale) if is_int else 1.0)
    return TileMapping(tile, w_real, xbars, out_frac_bits=out_frac_bits, n_blocks=n_blocks,
                       slc_rate=slc_rate, noise=noise)


def _adc_kind(nz):
    return "sar" if (nz.comp_offset_sigma or nz.comp_noise_sigma or nz.cap_mismatch_sigma) else "ideal"
