"""Non-idealities of the analog crossbar and its ADCs, all off by default.

Every random source has its own ``numpy.random.Generator`` made from one
``SeedSequence(seed, spawn_key=(crossbar, source, step))``: the draws of one source never
depend on the others, on the batch split, or on the call order. ``step`` is the program count
for the per-programming sources and the global index of the input vector for the per-MVM
sources (read noise, comparator noise).

Units: conductances are in cell-level steps (level ``L`` of a cell ideally conducts ``L``
steps), comparator offset and noise in ADC LSBs.

Models
------
- Programming noise: ``G = level + N(0, s)`` per cell, with ``s = prog_sigma`` (absolute) or
  ``s = prog_sigma * level`` (proportional); or, with ``prog_ber``, the absolute ``s`` for
  which a cell is read back as a neighbouring level with probability ``prog_ber``
  (:func:`sigma_from_ber`). Conductances are clipped at 0.
- Stuck-at faults: a cell is stuck on (``G = 2**cell_bits - 1``) with probability ``stuck_on``
  and stuck off (``G = 0``) with probability ``stuck_off``; the faulty cells are fixed per
  crossbar (drawn once, step 0), whatever is programmed.
- Drift: ``G(t) = G(t0) * (t / t0) ** -nu`` for ``t >= t0``, ``nu ~ N(drift_nu, drift_nu_sigma)``
  per cell, drawn at programming.
- Read noise: every read of a cell adds ``N(0, read_sigma)`` steps times its DAC level, so a
  column sum gets ``N(0, read_sigma * sqrt(sum of squared DAC levels of the active rows))``,
  drawn per conversion.
- IR drop: first-order model, see :func:`ir_drop_conductance`.
- Comparator: a static offset ``N(0, comp_offset_sigma)`` LSB per ADC and a fresh
  ``N(0, comp_noise_sigma)`` LSB per SAR trial.
- Capacitor-DAC mismatch: the ``2**k``-unit capacitor of each ADC weighs
  ``2**k * (1 + N(0, cap_mismatch_sigma / sqrt(2**k)))`` LSB (unit capacitors independent).
"""

import math
from dataclasses import dataclass, fields

import numpy as np

from ._check import check_choice, check_int, check_real

__all__ = ["NoiseConfig", "SOURCES", "generator", "sigma_from_ber", "ber_from_sigma",
           "ir_drop_conductance", "cap_weights_mismatch"]

#: Source ids of the random streams (part of the seed key: changing them changes every draw).
SOURCES = {"program": 0, "read": 1, "stuck": 2, "drift": 3, "adc_offset": 4, "comparator": 5, "cap": 6}


@dataclass(frozen=True)
class NoiseConfig:
    """Non-ideality parameters of one crossbar (all zero: ideal).

    Parameters
    ----------
    prog_sigma : float
        Programming noise, in level steps (``prog_mode="absolute"``) or relative to the level
        (``"proportional"``).
    prog_mode : {"absolute", "proportional"}
    prog_ber : float
        Cell error rate from 0 to 0.5; when non-zero it sets an absolute programming sigma
        through :func:`sigma_from_ber` (``prog_sigma`` must then be 0).
    read_sigma : float
        Read noise per cell read, level steps.
    stuck_on, stuck_off : float
        Fault probabilities per cell, from 0 to 1 (sum at most 1).
    drift_nu, drift_nu_sigma, drift_t0 : float
        Power-law drift exponent mean and spread; reference time in seconds (> 0).
    ir_wl, ir_bl : float
        Word-line and bit-line wire resistance per cell pitch times the conductance of one
        level step (dimensionless, >= 0).
    comp_offset_sigma, comp_noise_sigma : float
        Comparator static offset per ADC and noise per trial, LSB.
    cap_mismatch_sigma : float
        Relative mismatch of one unit capacitor of the SAR capacitor DAC.
    """

    prog_sigma: float = 0.0
    prog_mode: str = "absolute"
    prog_ber: float = 0.0
    read_sigma: float = 0.0
    stuck_on: float = 0.0
    stuck_off: float = 0.0
    drift_nu: float = 0.0
    drift_nu_sigma: float = 0.0
    drift_t0: float = 1.0
    ir_wl: float = 0.0
    ir_bl: float = 0.0
    comp_offset_sigma: float = 0.0
    comp_noise_sigma: float = 0.0
    cap_mismatch_sigma: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            if f.name == "prog_mode":
                check_choice("prog_mode", self.prog_mode, ("absolute", "proportional"))
            elif f.name == "drift_t0":
                check_real("drift_t0", self.drift_t0, 0, lo_open=True)
            elif f.name in ("stuck_on", "stuck_off"):
                check_real(f.name, getattr(self, f.name), 0, 1)
            elif f.name == "prog_ber":
                check_real("prog_ber", self.prog_ber, 0, 0.5)
            elif f.name == "drift_nu":
                check_real("drift_nu", self.drift_nu)
            else:
                check_real(f.name, getattr(self, f.name), 0)
        if self.stuck_on + self.stuck_off > 1:
            raise ValueError(f"stuck_on + stuck_off must be at most 1, not {self.stuck_on + self.stuck_off}")
        if self.prog_ber > 0 and self.prog_sigma > 0:
            raise ValueError("prog_ber and prog_sigma cannot both be set")

    @property
    def ideal(self):
        """True when every non-ideality is off."""
        return all(getattr(self, f.name) == f.default for f in fields(self)
                   if f.name not in ("prog_mode", "drift_t0"))


def generator(seed, crossbar, source, step):
    """The ``Generator`` of one random stream, keyed by ``(crossbar, source, step)``.

    Parameters
    ----------
    seed : int
        Root entropy (non-negative).
    crossbar : int
        Crossbar id (non-negative).
    source : str or int
        A key of :data:`SOURCES` or its id.
    step : int
        Program count or global input-vector index (non-negative).
    """
    if isinstance(source, str):
        if source not in SOURCES:
            raise TypeError(f"source must be one of {', '.join(map(repr, SOURCES))}, not {source!r}")
        source = SOURCES[source]
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(crossbar), int(source), int(step)))
    return np.random.Generator(np.random.PCG64(ss))


def _q(z):
    """Gaussian tail probability Q(z) = P(N(0, 1) > z)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def ber_from_sigma(sigma, levels):
    """Cell error rate of ``levels`` equally spaced levels (1 step apart) under ``N(0, sigma)``.

    Read-back thresholds sit half a step between levels; the inner levels err on both sides,
    the two outer ones on one side, levels equally likely:
    ``ber = 2 (levels - 1) / levels * Q(0.5 / sigma)``.
    """
    sigma = check_real("sigma", sigma, 0)
    levels = check_int("levels", levels, 2)
    if sigma == 0:
        return 0.0
    return 2.0 * (levels - 1) / levels * _q(0.5 / sigma)


def sigma_from_ber(ber, levels):
    """Absolute programming sigma (level steps) giving the cell error rate ``ber`` (inverse of
    :func:`ber_from_sigma`, solved by bisection to 1e-12 relative)."""
    ber = check_real("ber", ber, 0, 0.5)
    levels = check_int("levels", levels, 2)
    if ber == 0:
        return 0.0
    target = ber * levels / (2.0 * (levels - 1))
    if target >= 0.5:
        raise ValueError(f"ber must be below {(levels - 1) / levels:.3g} for {levels} levels, not {ber}")
    lo, hi = 0.0, 60.0          # z = 0.5 / sigma; Q decreasing in z
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _q(mid) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 / (0.5 * (lo + hi))


def ir_drop_conductance(g, *, r_wl=0.0, r_bl=0.0):
    """First-order IR drop folded into an effective conductance matrix.

    Model: the DAC drives each word line from column 0, the ADC holds each bit line at virtual
    ground below the last row, wire segments of resistance ``r_wl`` (word line, one per cell
    pitch) and ``r_bl`` (bit line), all in units of the inverse of one conductance level step.
    To first order the wire currents are the ideal cell currents ``x_r * g[r, c]``; the word-
    line voltage at column ``c`` sags by ``r_wl * x_r * sum_c' g[r, c'] * (min(c, c') + 1)``
    (segments shared between the paths to ``c`` and ``c'``, counted from the driver), and the
    bit-line node of row ``r`` rises by ``r_bl * sum_r' x_r' g[r', c] * min(R - r, R - r')``.
    Both are linear in the inputs, so the column current ``sum_r g[r, c] (x_r - dV)`` equals
    ``sum_r x_r * g_eff[r, c]`` with

    ``g_eff = g * (1 - r_wl * A) - r_bl * g * B``,
    ``A[r, c] = sum_c' g[r, c'] * (min(c, c') + 1)``,
    ``B[r', c] = sum_r g[r, c] * min(R - r, R - r')``.

    Valid while the drops are small (``r * sum g * size`` well below 1); rows with zero input
    are at 0 V (grounded word lines), so their cells also carry bit-line drop current.

    Parameters
    ----------
    g : numpy.ndarray
        Conductances ``(..., rows, cols)`` in level steps.
    r_wl, r_bl : float
        Normalized wire resistance per segment.

    Returns
    -------
    numpy.ndarray
        Effective conductances, same shape.
    """
    g = np.asarray(g, dtype=np.float64)
    r_wl = check_real("r_wl", r_wl, 0)
    r_bl = check_real("r_bl", r_bl, 0)
    if r_wl == 0 and r_bl == 0:
        return g.copy()
    rows, cols = g.shape[-2:]
    out = g.copy()
    if r_wl:
        c = np.arange(cols)
        n = np.minimum.outer(c, c) + 1.0               # (c', c)
        out -= r_wl * g * (g @ n)
    if r_bl:
        d = rows - np.arange(rows)                     # segments from row r to the bottom
        m = np.minimum.outer(d, d).astype(np.float64)  # (r', r)
        out -= r_bl * g * (m @ g)
    return out


def cap_weights_mismatch(rng, n_adcs, bits, sigma):
    """Capacitor-DAC weights in LSB for ``n_adcs`` ADCs, MSB first, shape ``(n_adcs, bits)``."""
    k = np.arange(bits - 1, -1, -1)
    ideal = 2.0 ** k
    eps = rng.standard_normal((n_adcs, bits)) * (sigma / np.sqrt(ideal))
    return ideal * (1.0 + eps)
