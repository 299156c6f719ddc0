"""Golden model of the output-stationary systolic array (``hdl.systolic.SystolicArray``).

Four parts, all pure NumPy:

- the exact integer result of a GEMM as the array computes it (:func:`gemm`: accumulators
  wrap modulo ``2**acc_width``; :func:`output_stage`: the optional rounding shift and
  saturation);
- the host-side tiler (:func:`tile_gemm`, :func:`fold_inputs`, :func:`fold_outputs`,
  :func:`assemble`): any ``M x K x N`` GEMM as a sequence of folds, one ``rows x cols`` output
  tile each (zero-padded partial folds at the right and bottom edges), K of any length >= 1;
- the array's cycle model, which the RTL matches cycle for cycle: :class:`TimingModel`
  (per cycle, with idle inputs and output backpressure) and :func:`cycle_model` (back-to-back
  folds, closed form);
- the SCALE-Sim figures the issue compares against (:func:`scalesim_v1_cycles`,
  :func:`scalesim_v2_cycles`) and :func:`ideal_cycles`.

Latency contract (``P`` = port width, ``L`` = drain length; ``drain="cols"``: ``P = rows``,
``L = cols``, one result column per output vector; ``drain="rows"``: ``P = cols``,
``L = rows``, one result row per vector; ``"auto"`` drains along the shorter side):

- time counts *advance cycles*: cycles in which the array is not stalled by the output
  (a stall happens only when an output vector is valid and the consumer is not ready);
- the last input vector of a fold accepted at advance cycle ``T`` makes output vector ``m``
  (``m = 0 .. L-1``) valid at advance cycle ``T + P + 1 + m`` (the last one at
  ``T + rows + cols``: the last PE's last MAC is at ``T + rows + cols - 2``, its
  accumulator holds the result one cycle later and the output register one more);
- the last vector of the next fold is accepted no earlier than ``T + L`` (the drain of one
  fold overlaps the whole next fold, so there is no bubble when ``K >= L``); all other input
  vectors are accepted whenever the array is not stalled.

Back-to-back folds ``K_0, K_1, ...`` with no idle cycles and an always-ready consumer thus
take ``K_0 + sum(max(K_f, L) for f >= 1) + P + L`` cycles from the first input to the last
output, both included: ``rows + cols`` more than the folds' inputs, the array's fill plus
the output register.
"""

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from ._check import as_int_array, check_choice, check_int

__all__ = [
    "DRAIN_SIDES", "check_config", "drain_side", "port_width", "drain_length",
    "wrap", "gemm", "output_stage",
    "Fold", "tile_gemm", "fold_inputs", "fold_outputs", "assemble", "run_tiled",
    "TimingModel", "cycle_model", "gemm_fold_ks", "gemm_cycles",
    "ideal_cycles", "scalesim_v1_cycles", "scalesim_v2_cycles",
]

DRAIN_SIDES = ("auto", "cols", "rows")


def check_config(rows=128, cols=32, *, in_width=8, acc_width=32, drain="auto",
                 out_shift=0, out_width=0):
    """Validate the array's parameters (the hardware's own messages); return ``drain`` resolved.

    ``TypeError`` for a wrong type or out-of-range value, ``ValueError`` for conflicting ones.
    """
    check_int("rows", rows, 1)
    check_int("cols", cols, 1)
    check_int("in_width", in_width, 2, 16)
    check_int("acc_width", acc_width, 4, 64)
    if acc_width < 2 * in_width:
        raise ValueError(f"acc_width must be at least 2*in_width = {2 * in_width}, "
                         f"not {acc_width!r}")
    check_choice("drain", drain, DRAIN_SIDES)
    check_int("out_shift", out_shift, 0)
    if out_shift >= acc_width:
        raise ValueError(f"out_shift must be less than acc_width = {acc_width}, not {out_shift!r}")
    check_int("out_width", out_width, 0, 64)
    if out_width == 1 or out_width > acc_width:
        raise ValueError(f"out_width must be 0 (no saturation) or from 2 to acc_width = "
                         f"{acc_width}, not {out_width!r}")
    return drain_side(rows, cols, drain)


def drain_side(rows, cols, drain="auto"):
    """``"cols"`` (one result column per output vector) or ``"rows"``; auto: the shorter side."""
    if drain == "auto":
        return "cols" if cols <= rows else "rows"
    return drain


def port_width(rows, cols, drain="auto"):
    """Elements per output vector: ``rows`` when draining columns, else ``cols``."""
    return rows if drain_side(rows, cols, drain) == "cols" else cols


def drain_length(rows, cols, drain="auto"):
    """Output vectors per fold (cycles of one fold's drain)."""
    return cols if drain_side(rows, cols, drain) == "cols" else rows


def wrap(x, bits):
    """Two's-complement wrap of integers to ``bits`` bits (int64 arrays)."""
    x = np.asarray(x, dtype=np.int64)
    if bits >= 64:
        return x
    half = np.int64(1) << np.int64(bits - 1)
    return ((x + half) & ((np.int64(1) << np.int64(bits)) - 1)) - half


def gemm(a, b, *, acc_width=32):
    """``a @ b`` as the array's accumulators compute it (exact, wrapped to ``acc_width`` bits).

    Parameters
    ----------
    a : array_like of int, shape (M, K)
    b : array_like of int, shape (K, N)

    Returns
    -------
    numpy.ndarray of int64, shape (M, N)
    """
    a = as_int_array("a", a, ndim=2)
    b = as_int_array("b", b, ndim=2)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a and b must agree on K, not {a.shape} and {b.shape}")
    # int8 x int8 x K <= 2**14 * K: exact in int64 for any practical K; object for safety
    # when the operands are wide.
    big = int(np.abs(a).max(initial=0)) * int(np.abs(b).max(initial=0)) * max(a.shape[1], 1)
    if big >= 1 << 62:
        return wrap(np.array((a.astype(object) @ b.astype(object)) % (1 << acc_width),
                             dtype=np.uint64).astype(np.int64), acc_width)
    return wrap(a @ b, acc_width)


def output_stage(x, *, acc_width=32, out_shift=0, out_width=0):
    """The optional output stage: round-half-up right shift, then saturation to ``out_width``.

    ``out_shift == 0`` skips the shift; ``out_width == 0`` skips the saturation (the output
    keeps ``acc_width`` bits).
    """
    x = np.asarray(x, dtype=np.int64)
    if out_shift:
        x = (x + (np.int64(1) << np.int64(out_shift - 1))) >> np.int64(out_shift)
    if out_width and out_width < acc_width:
        lo, hi = -(1 << (out_width - 1)), (1 << (out_width - 1)) - 1
        x = np.clip(x, lo, hi)
    return x


@dataclass(frozen=True)
class Fold:
    """One output tile of a tiled GEMM.

    ``a`` is the ``rows x K`` A tile and ``b`` the ``K x cols`` B tile, zero-padded;
    ``m_size``/``n_size`` are the useful rows/columns (a partial fold has fewer than
    ``rows``/``cols``).
    """
    m0: int
    n0: int
    m_size: int
    n_size: int
    a: np.ndarray
    b: np.ndarray

    @property
    def k(self):
        return self.a.shape[1]


def tile_gemm(a, b, rows, cols):
    """Split ``a @ b`` (``M x K`` by ``K x N``) into folds of a ``rows x cols`` array.

    Folds are ordered row tile by row tile (M outer, N inner); K is never split (a fold takes
    any K >= 1). Edge tiles are zero-padded.
    """
    a = as_int_array("a", a, ndim=2)
    b = as_int_array("b", b, ndim=2)
    rows = check_int("rows", rows, 1)
    cols = check_int("cols", cols, 1)
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise ValueError(f"a and b must agree on K, not {a.shape} and {b.shape}")
    if k < 1 or m < 1 or n < 1:
        raise ValueError(f"M, K and N must be at least 1, not {m}x{k}x{n}")
    folds = []
    for m0 in range(0, m, rows):
        ms = min(rows, m - m0)
        at = np.zeros((rows, k), dtype=np.int64)
        at[:ms] = a[m0:m0 + ms]
        for n0 in range(0, n, cols):
            ns = min(cols, n - n0)
            bt = np.zeros((k, cols), dtype=np.int64)
            bt[:, :ns] = b[:, n0:n0 + ns]
            folds.append(Fold(m0, n0, ms, ns, at, bt))
    return folds


def fold_inputs(fold):
    """The fold's input vectors, one per cycle: ``{"a": column k of A, "b": row k of B, "last"}``."""
    k = fold.k
    return [{"a": [int(v) for v in fold.a[:, t]], "b": [int(v) for v in fold.b[t]],
             "last": int(t == k - 1)} for t in range(k)]


def fold_outputs(fold, *, rows, cols, drain="auto", acc_width=32, out_shift=0, out_width=0):
    """The fold's output vectors in order: ``{"data": [...], "last"}``.

    ``drain="cols"``: vector ``m`` is column ``m`` of the ``rows x cols`` tile; ``"rows"``:
    row ``m``. Padding rows/columns of a partial fold are output too (they hold zeros).
    """
    side = drain_side(rows, cols, drain)
    tile = output_stage(gemm(fold.a, fold.b, acc_width=acc_width), acc_width=acc_width,
                        out_shift=out_shift, out_width=out_width)
    vectors = tile.T if side == "cols" else tile
    n = len(vectors)
    return [{"data": [int(v) for v in vec], "last": int(i == n - 1)}
            for i, vec in enumerate(vectors)]


def assemble(folds, outputs, m, n, *, rows, cols, drain="auto"):
    """Gather the output vectors of every fold (as :func:`fold_outputs` orders them) into ``M x N``."""
    side = drain_side(rows, cols, drain)
    result = np.zeros((m, n), dtype=np.int64)
    for fold, vectors in zip(folds, outputs, strict=True):
        tile = np.array([v["data"] for v in vectors], dtype=np.int64)
        if side == "cols":
            tile = tile.T
        result[fold.m0:fold.m0 + fold.m_size, fold.n0:fold.n0 + fold.n_size] = \
            tile[:fold.m_size, :fold.n_size]
    return result


def run_tiled(a, b, *, rows, cols, drain="auto", acc_width=32, out_shift=0, out_width=0):
    """The whole host flow in software: tile, compute each fold's outputs, assemble."""
    a = np.asarray(a)
    b = np.asarray(b)
    folds = tile_gemm(a, b, rows, cols)
    outs = [fold_outputs(f, rows=rows, cols=cols, drain=drain, acc_width=acc_width,
                         out_shift=out_shift, out_width=out_width) for f in folds]
    return assemble(folds, outs, a.shape[0], b.shape[1], rows=rows, cols=cols, drain=drain)


class TimingModel:
    """Cycle-by-cycle model of the array's handshakes (the RTL matches it exactly).

    Call :meth:`step` once per clock cycle with what the input and output ports see in that
    cycle; it returns what the array drives (``i.ready``, ``o.valid``) and advances.
    Counters ``macs`` and ``busy_cycles`` follow the RTL's counters.
    """

    def __init__(self, rows, cols, drain="auto"):
        self.rows, self.cols = rows, cols
        self.width = port_width(rows, cols, drain)
        self.length = drain_length(rows, cols, drain)
        self.advance = 0            # advance cycles so far
        self.last_accept = None     # advance cycle of the last `last` vector accepted
        self.schedule = deque()     # advance cycles at which an output vector is valid
        self.open = False           # a fold has started and its last vector is not in yet
        self.macs = 0
        self.busy_cycles = 0
        self.cycle = 0

    def out_valid(self):
        return bool(self.schedule) and self.schedule[0] == self.advance

    def step(self, in_valid, in_last, out_ready):
        """One clock cycle; returns ``(in_ready, out_valid)`` as the RTL drives them."""
        out_valid = self.out_valid()
        en = (not out_valid) or bool(out_ready)
        in_ready = en and not (in_last and self.last_accept is not None
                               and self.advance - self.last_accept < self.length)
        accept = bool(in_valid) and in_ready
        if self.open or self.schedule or accept:
            self.busy_cycles += 1
        if accept:
            self.macs += self.width * self.length
            if in_last:
                self.last_accept = self.advance
                first = self.advance + self.width + 1
                self.schedule.extend(range(first, first + self.length))
                self.open = False
            else:
                self.open = True
        if out_valid and out_ready:
            self.schedule.popleft()
        if en:
            self.advance += 1
        self.cycle += 1
        return in_ready, out_valid


def cycle_model(ks, rows, cols, drain="auto"):
    """Back-to-back folds of lengths ``ks``, no idle input, always-ready output.

    Returns
    -------
    dict
        ``last_accept``: cycle of each fold's last input vector; ``out_cycles``: cycle of
        every output vector; ``cycles``: first input to last output, both included.
    """
    length = drain_length(rows, cols, drain)
    last, t = [], -1
    for f, k in enumerate(ks):
        k = check_int("K", k, 1)
        t = k - 1 if f == 0 else t + max(k, length)
        last.append(t)
    width = port_width(rows, cols, drain)
    outs = [t + width + 1 + m for t in last for m in range(length)]
    return {"last_accept": last, "out_cycles": outs, "cycles": outs[-1] + 1 if outs else 0}


def gemm_fold_ks(m, n, k, rows, cols):
    """Fold lengths of an ``M x N x K`` GEMM on a ``rows x cols`` array (K unsplit)."""
    return [k] * (math.ceil(m / rows) * math.ceil(n / cols))


def gemm_cycles(m, n, k, rows, cols, drain="auto"):
    """Cycles of an ``M x N x K`` GEMM (first input to last output) from :func:`cycle_model`."""
    return cycle_model(gemm_fold_ks(m, n, k, rows, cols), rows, cols, drain)["cycles"]


def ideal_cycles(m, n, k, rows, cols):
    """``ceil(M*N*K / (rows*cols))``: every PE busy every cycle."""
    return math.ceil(m * n * k / (rows * cols))


def scalesim_v2_cycles(m, n, k, rows, cols):
    """SCALE-Sim v2's OS charge as the issue states it: ``K + R + C - 2`` per fold, folds serial."""
    folds = math.ceil(m / rows) * math.ceil(n / cols)
    return folds * (k + rows + cols - 2)


def scalesim_v1_cycles(m, n, k, rows, cols):
    """SCALE-Sim v1's OS figure as the issue quotes it (2207 for 1024x32x256 on 128x32):
    the folds' K back to back plus one fill ``R + C - 1``, the drain fully overlapped."""
    folds = math.ceil(m / rows) * math.ceil(n / cols)
    return folds * k + rows + cols - 1
