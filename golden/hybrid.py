"""Large matrices on many crossbars, HyFlexPIM's hybrid SLC/MLC mapping, and the digital LoRA path.

- :class:`MappedMatrix`: a real matrix ``(K, N)`` cut into ``rows x n_out`` tiles, one crossbar
  each, with Atleus's crossbar-wise quantization: each crossbar's integer partial sum is
  dequantized by its fixed-point scale (:func:`golden.quant.dequantize`), then the partial sums
  of the crossbars along K are added (:func:`golden.quant.aggregate`). Outputs are integers
  with ``out_frac_bits`` fractional bits.
- :func:`svd_split` and :class:`HybridMatrix`: HyFlexPIM's split of a weight matrix by SVD into
  the top singular components (by singular value or a caller-supplied importance score) on SLC
  crossbars and the rest on MLC crossbars, for a given SLC rate; each part has its own
  :class:`~golden.crossbar.CrossbarConfig`, hence its own noise.
- :func:`lora_delta`, :func:`lora_forward`: AHWA-LoRA / Atleus ``y = crossbar(W) x + B (A x)``
  with the adapter path exact in digital.

Row-vector convention throughout: inputs ``x`` are ``(batch, K)`` and ``y = x @ W``.
"""

import numpy as np
from dataclasses import replace

from ._check import as_int_array, check_choice, check_int, check_real
from .crossbar import Crossbar, CrossbarConfig
from .quant import (aggregate, dequantize, quantize_crossbarwise, round_shift, scale_to_fixed,
                    ROUNDING_MODES)

__all__ = ["svd_split", "MappedMatrix", "HybridMatrix", "lora_delta", "lora_forward"]


def svd_split(w, *, slc_rate, importance=None):
    """Split ``w`` into its most important singular components and the rest.

    Parameters
    ----------
    w : array_like
        Real matrix ``(K, N)``.
    slc_rate : float
        Fraction of the ``min(K, N)`` singular components placed on SLC, 0 to 1
        (``k = round(slc_rate * min(K, N))``).
    importance : array_like or None
        Score per singular component (in the order of decreasing singular value, as returned
        by ``numpy.linalg.svd``); the ``k`` highest scores go to SLC (ties: lower index first).
        Default: the singular values.

    Returns
    -------
    (w_slc, w_mlc, index)
        ``w_slc = U[:, index] diag(S[index]) Vt[index]``, ``w_mlc = w - w_slc``, and the chosen
        component indices (sorted).
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"w must be a 2-D array, not {w.ndim}-D with shape {w.shape}")
    slc_rate = check_real("slc_rate", slc_rate, 0, 1)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    r = s.shape[0]
    k = int(round(slc_rate * r))
    score = s if importance is None else np.asarray(importance, dtype=np.float64)
    if score.shape != (r,):
        raise ValueError(f"importance must have shape ({r},), not {score.shape}")
    index = np.sort(np.argsort(-score, kind="stable")[:k])
    w_slc = (u[:, index] * s[index]) @ vt[index]
    return w_slc, w - w_slc, index


class MappedMatrix:
    """A real matrix on a grid of crossbars with crossbar-wise quantization.

    Parameters
    ----------
    w_float : array_like
        ``(K, N)`` real weights.
    config : CrossbarConfig
        Configuration of every crossbar; tile ``(i, j)`` gets ``xbar_id = xbar_id0 + i * n_j + j``.
    scale_bits : int
        Width of the signed scale registers.
    scale_frac_bits : int
        Fractional bits of the scale registers (the dequantization right shift).
    out_frac_bits : int
        Fractional bits of the outputs.
    out_bits : int
        Width of each dequantized partial sum (saturating).
    rounding : {"half_up", "half_even", "floor"}
        Rounding of the dequantization shift.
    xbar_id0 : int
        First crossbar id (seed key).

    Members
    -------
    mvm(x, *, step=None, time=None) -> (y, saturated)
        ``y`` int64 ``(batch, N)`` with ``out_frac_bits`` fractional bits.
    """

    def __init__(self, w_float, *, config, scale_bits=16, scale_frac_bits=12, out_frac_bits=8,
                 out_bits=32, rounding="half_up", xbar_id0=0):
        if not isinstance(config, CrossbarConfig):
            raise TypeError(f"config must be a CrossbarConfig, not {config!r}")
        self._scale_frac_bits = check_int("scale_frac_bits", scale_frac_bits, 0, 62)
        self._out_frac_bits = check_int("out_frac_bits", out_frac_bits, 0, 32)
        self._out_bits = check_int("out_bits", out_bits, 2, 64)
        self._rounding = check_choice("rounding", rounding, ROUNDING_MODES)
        w = np.asarray(w_float, dtype=np.float64)
        w_int, scales = quantize_crossbarwise(w, weight_bits=config.weight_bits, rows=config.rows,
                                              cols_per_xbar=config.n_out)
        self._shape = w.shape
        self._w_int = w_int
        self._scales = scales
        self._scale_fixed = scale_to_fixed(scales * 2.0 ** out_frac_bits, scale_bits=scale_bits,
                                           scale_frac_bits=scale_frac_bits)
        ti, tj = scales.shape
        r, n = config.rows, config.n_out
        self._tiles = []
        for i in range(ti):
            row = []
            for j in range(tj):
                tile = np.zeros((r, n), dtype=np.int64)
                blk = w_int[i * r:(i + 1) * r, j * n:(j + 1) * n]
                tile[:blk.shape[0], :blk.shape[1]] = blk
                xb = Crossbar(replace(config, xbar_id=xbar_id0 + i * tj + j)).program(tile)
                row.append(xb)
            self._tiles.append(row)
        self._config = config

    @property
    def w_int(self):
        """Quantized weights ``(K, N)``."""
        return self._w_int

    @property
    def scales(self):
        """Real scale per crossbar ``(ceil(K / rows), ceil(N / n_out))``."""
        return self._scales

    @property
    def scale_fixed(self):
        """Fixed-point scale registers (``scale * 2**out_frac_bits``, ``scale_frac_bits`` fraction)."""
        return self._scale_fixed

    @property
    def out_frac_bits(self):
        return self._out_frac_bits

    @property
    def n_crossbars(self):
        return self._scales.size

    def partials(self, x, *, step=None, time=None):
        """Integer partial sums of every crossbar, ``(ti, tj, batch, n_out)``, before dequantization."""
        c = self._config
        k, n_total = self._shape
        lim = 1 << (c.input_bits - 1)
        x = as_int_array("x", x, lo=-lim, hi=lim - 1, ndim=2)
        if x.shape[1] != k:
            raise ValueError(f"x must have shape (batch, {k}), not {x.shape}")
        ti, tj = self._scales.shape
        xp = np.zeros((x.shape[0], ti * c.rows), dtype=np.int64)
        xp[:, :k] = x
        out = np.empty((ti, tj, x.shape[0], c.n_out), dtype=np.int64)
        for i in range(ti):
            xi = xp[:, i * c.rows:(i + 1) * c.rows]
            for j in range(tj):
                out[i, j] = self._tiles[i][j].mvm(xi, step=step if step is not None else None, time=time)
        return out

    def mvm(self, x, *, step=None, time=None):
        """Dequantized, aggregated outputs ``(batch, N)`` and the saturation mask of the partials."""
        p = self.partials(x, step=step, time=time)
        ti, tj, batch, n = p.shape
        deq, sat = dequantize(p, self._scale_fixed[:, :, None, None], scale_frac_bits=self._scale_frac_bits,
                              out_bits=self._out_bits, rounding=self._rounding)
        y = aggregate(deq)                                   # (tj, batch, n)
        y = np.moveaxis(y, 0, 1).reshape(batch, tj * n)[:, :self._shape[1]]
        sat = np.moveaxis(sat.any(axis=0), 0, 1).reshape(batch, tj * n)[:, :self._shape[1]]
        return y, sat


class HybridMatrix:
    """HyFlexPIM hybrid mapping: top singular components on SLC, the rest on MLC crossbars.

    Parameters
    ----------
    w_float : array_like
        ``(K, N)`` real weights.
    slc_rate : float
        Fraction of the singular components on SLC (see :func:`svd_split`).
    importance : array_like or None
        Score per singular component (default: singular values).
    slc_config, mlc_config : CrossbarConfig
        Crossbar configurations (``cell_bits`` 1 and 2 by default), each with its own noise.
    **kwargs
        Passed to both :class:`MappedMatrix` (scale and output formats).

    Members
    -------
    mvm(x, *, step=None, time=None) -> (y, saturated)
        Sum of the SLC and MLC outputs, ``out_frac_bits`` fractional bits.
    """

    def __init__(self, w_float, *, slc_rate, importance=None, slc_config=None, mlc_config=None, **kwargs):
        slc_config = CrossbarConfig(cell_bits=1, cols=1024) if slc_config is None else slc_config
        mlc_config = CrossbarConfig(cell_bits=2, cols=512) if mlc_config is None else mlc_config
        w_slc, w_mlc, index = svd_split(w_float, slc_rate=slc_rate, importance=importance)
        self._index = index
        self._slc = MappedMatrix(w_slc, config=slc_config, xbar_id0=0, **kwargs)
        self._mlc = MappedMatrix(w_mlc, config=mlc_config, xbar_id0=self._slc.n_crossbars, **kwargs)
        if self._slc.out_frac_bits != self._mlc.out_frac_bits:
            raise ValueError("the SLC and MLC parts must share out_frac_bits")

    @property
    def slc(self):
        """The SLC :class:`MappedMatrix`."""
        return self._slc

    @property
    def mlc(self):
        """The MLC :class:`MappedMatrix`."""
        return self._mlc

    @property
    def slc_components(self):
        """Indices of the singular components on SLC."""
        return self._index

    def mvm(self, x, *, step=None, time=None):
        ys, ss = self._slc.mvm(x, step=step, time=time)
        ym, sm = self._mlc.mvm(x, step=step, time=time)
        return aggregate(np.stack([ys, ym])), ss | sm


def lora_delta(x, a, b, *, mid_shift=0, out_shift=0, rounding="half_up"):
    """Digital LoRA path ``round_shift(round_shift(x @ a, mid_shift) @ b, out_shift)``, exact.

    Parameters
    ----------
    x : array_like of int
        ``(batch, K)``.
    a : array_like of int
        ``(K, r)`` down-projection.
    b : array_like of int
        ``(r, N)`` up-projection.
    mid_shift, out_shift : int
        Rounding right shifts after each product (0: none).
    rounding : {"half_up", "half_even", "floor"}

    Returns
    -------
    numpy.ndarray
        ``(batch, N)`` integers (int64, or Python ints in an object array if int64 would overflow).
    """
    x = as_int_array("x", x, ndim=2)
    a = as_int_array("a", a, ndim=2)
    b = as_int_array("b", b, ndim=2)
    if x.shape[1] != a.shape[0] or a.shape[1] != b.shape[0]:
        raise ValueError(f"x {x.shape}, a {a.shape} and b {b.shape} do not chain as x @ a @ b")

    def mm(p, q):
        bound = int(np.abs(p).max(initial=0)) * int(np.abs(q).max(initial=0)) * max(p.shape[1], 1)
        if p.dtype != object and q.dtype != object and bound < (1 << 62):
            return p @ q
        return p.astype(object) @ q.astype(object)

    h = round_shift(mm(x, a), mid_shift, rounding)
    return round_shift(mm(h, b), out_shift, rounding)


def lora_forward(y_analog, x, a, b, **kwargs):
    """``y_analog + lora_delta(x, a, b, **kwargs)``: the crossbar output plus the exact adapter path."""
    y = as_int_array("y_analog", y_analog)
    d = lora_delta(x, a, b, **kwargs)
    if d.shape != y.shape:
        raise ValueError(f"y_analog must have shape {d.shape}, not {y.shape}")
    return y + d
