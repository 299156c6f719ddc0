"""Bit-true, cycle-true model of the reconfigurable SAR-ADC controller (``hdl/sar_adc.py``).

Three parts, all pure NumPy/Python:

- :func:`conversion_cycles` and :func:`sweep_cycles`: the timing contract.
- :class:`SarAdcControllerModel`: the controller, cycle by cycle (the RTL must match every
  output of it in every cycle), and :class:`AnalogFrontEnd`: the analog half of the ADC
  (sample-and-hold, column mux, capacitor DAC and comparator), which answers each trial code
  with :func:`golden.sar.compare`.
- :func:`expected_words`: the output words of a command sequence straight from
  :func:`golden.sar.sar_convert` (no cycle model), to check both of the above.

Timing contract (``S = settle_cycles``, ``b`` = the command's resolution):

- A command is accepted in cycle 0. Unless it has ``hold`` set, cycle 1 is the sample cycle
  (``sample`` high: the sample-and-hold captures every column). Then each column of the range
  takes ``S`` settle cycles (mux switched, ``trial_en`` low) and ``b`` trial cycles.
- In a trial cycle the controller shows the trial code on ``trial`` (a register) and reads the
  comparator ``decision`` for that code at the rising edge that ends the same cycle: the
  capacitor DAC and the comparator resolve within one cycle. Trial ``k`` (``k = b-1 .. 0``) is
  ``code | 1 << k``, ``code`` holding the bits decided so far.
- The word of a column is valid on the output from the cycle after its last trial, while the
  next column converts (no idle cycle between columns or between commands).
- Backpressure: a finished word waits in the SAR register while the output register is full;
  the controller then shows no trial (``trial_en`` low, the mux stays on that column) and
  resumes when the output register empties. The held sample does not move, so stalling never
  changes a code.
- A command's resolution outside ``resolutions`` (or ``first > last``, or ``last >= columns``)
  is refused: one word with ``error`` set, ``column = first``, ``code = 0``, ``last`` set.

Hence a ``N``-column command costs ``1 + N * (S + b)`` cycles without backpressure
(``N * (S + b)`` with ``hold``), and the next command's sample cycle follows the last trial.
"""

from dataclasses import dataclass

import numpy as np

from ._check import check_int
from .sar import compare, sar_convert

__all__ = ["Command", "conversion_cycles", "sweep_cycles", "check_resolutions", "command_error",
           "SarAdcControllerModel", "AnalogFrontEnd", "expected_words", "IDLE", "SAMPLE",
           "SETTLE", "CONVERT", "WAIT", "ERROR"]

IDLE, SAMPLE, SETTLE, CONVERT, WAIT, ERROR = range(6)


@dataclass(frozen=True)
class Command:
    """One command: convert columns ``first..last`` (or all with ``all``) at ``bits`` bits.

    ``hold`` converts the values already held by the sample-and-hold (no sample cycle).
    """
    bits: int
    first: int = 0
    last: int = 0
    all: bool = False
    hold: bool = False

    def as_dict(self):
        return {"first": self.first, "last": self.last, "all": int(self.all),
                "hold": int(self.hold), "bits": self.bits}


def conversion_cycles(bits, *, settle_cycles=0):
    """Cycles of one column conversion: ``settle_cycles + bits``."""
    return check_int("settle_cycles", settle_cycles, 0) + check_int("bits", bits, 1, 16)


def sweep_cycles(n_columns, bits, *, settle_cycles=0, hold=False):
    """Cycles of an ``n_columns`` command without backpressure, from the cycle after its
    acceptance to its last trial: ``(0 if hold else 1) + n_columns * (settle_cycles + bits)``."""
    n_columns = check_int("n_columns", n_columns, 1)
    return (0 if hold else 1) + n_columns * conversion_cycles(bits, settle_cycles=settle_cycles)


def check_resolutions(max_bits, resolutions):
    """The sorted tuple of selectable resolutions (``()`` means every one from 1 to max_bits)."""
    max_bits = check_int("max_bits", max_bits, 1, 16)
    if not isinstance(resolutions, (tuple, list)):
        raise TypeError(f"resolutions must be a tuple of integers from 1 to 16, "
                        f"not {resolutions!r}")
    for r in resolutions:
        check_int("resolutions", r, 1, 16)
    if len(set(resolutions)) != len(resolutions):
        raise ValueError(f"resolutions must not repeat a value, not {tuple(resolutions)!r}")
    if any(r > max_bits for r in resolutions):
        raise ValueError(f"resolutions must be at most max_bits ({max_bits}), "
                         f"not {tuple(resolutions)!r}")
    return tuple(sorted(resolutions)) if resolutions else tuple(range(1, max_bits + 1))


def command_error(cmd, *, columns, resolutions):
    """True when the controller refuses ``cmd`` (resolution not selectable, bad range)."""
    if cmd.bits not in resolutions:
        return True
    return (not cmd.all) and (cmd.first > cmd.last or cmd.last >= columns)


def _columns_of(cmd, columns):
    return range(columns) if cmd.all else range(cmd.first, cmd.last + 1)


class SarAdcControllerModel:
    """Cycle-true model of :class:`hdl.sar_adc.SarAdcController`.

    Each cycle: :meth:`outputs` gives every output port from the present state (and, for
    ``cmd_ready``, the output stream's ``o_ready``); :meth:`tick` applies the rising edge with
    that cycle's inputs; :meth:`reset` applies a synchronous reset instead.
    """

    def __init__(self, max_bits=8, *, columns=128, settle_cycles=0, resolutions=()):
        self.max_bits = check_int("max_bits", max_bits, 1, 16)
        self.columns = check_int("columns", columns, 1, 4096)
        self.settle_cycles = check_int("settle_cycles", settle_cycles, 0, 255)
        self.resolutions = check_resolutions(max_bits, resolutions)
        self.reset()

    def reset(self):
        self.state = IDLE
        self.bits = self.resolutions[0]
        self.sar = 0
        self.mask = 0
        self.col = 0
        self.last_col = 0
        self.settle = 0
        self.out_valid = False
        self.out = {"column": 0, "code": 0, "error": 0, "last": 0}

    # -- combinational view of the present state ---------------------------------------------

    def _release(self, o_ready):
        out_free = (not self.out_valid) or o_ready
        last = self.col == self.last_col
        finishing = (self.state == CONVERT and self.mask == 1) or self.state == WAIT
        return (self.state == IDLE or (self.state == ERROR and out_free)
                or (finishing and last and out_free))

    def outputs(self, o_ready=True):
        """Output ports in the present cycle, as a dict (``o_payload`` a dict of fields)."""
        return {
            "cmd_ready": bool(self._release(o_ready)),
            "sample": self.state == SAMPLE,
            "trial_en": self.state == CONVERT,
            "trial": self.sar,
            "column": self.col,
            "bits": self.bits,
            "o_valid": self.out_valid,
            "o_payload": dict(self.out),
            "busy": self.state != IDLE,
        }

    # -- rising edge -------------------------------------------------------------------------

    def _start_column(self):
        self.sar = self.mask = 1 << (self.bits - 1)
        if self.settle_cycles:
            self.state, self.settle = SETTLE, self.settle_cycles - 1
        else:
            self.state = CONVERT

    def _accept(self, cmd):
        if command_error(cmd, columns=self.columns, resolutions=self.resolutions):
            self.state = ERROR
            self.col = cmd.first
            return
        self.bits = cmd.bits
        self.col = 0 if cmd.all else cmd.first
        self.last_col = self.columns - 1 if cmd.all else cmd.last
        if cmd.hold:
            self._start_column()
        else:
            self.state = SAMPLE

    def tick(self, *, cmd_valid=False, cmd=None, o_ready=True, decision=False):
        """Rising edge. ``cmd`` is a :class:`Command` (read when ``cmd_valid``)."""
        out_free = (not self.out_valid) or o_ready
        accept = cmd_valid and self._release(o_ready)
        if self.out_valid and o_ready:
            self.out_valid = False
        state = self.state
        finish_code = None
        if state == SAMPLE:
            self._start_column()
        elif state == SETTLE:
            if self.settle == 0:
                self.state = CONVERT
            else:
                self.settle -= 1
        elif state == CONVERT:
            kept = self.sar if decision else self.sar & ~self.mask
            if self.mask == 1:
                if out_free:
                    finish_code = kept
                else:
                    self.sar, self.state = kept, WAIT
            else:
                self.sar, self.mask = kept | (self.mask >> 1), self.mask >> 1
        elif state == WAIT:
            if out_free:
                finish_code = self.sar
        elif state == ERROR:
            if out_free:
                self.out = {"column": self.col, "code": 0, "error": 1, "last": 1}
                self.out_valid = True
                self.state = IDLE
        if finish_code is not None:
            last = self.col == self.last_col
            self.out = {"column": self.col, "code": finish_code, "error": 0, "last": int(last)}
            self.out_valid = True
            if last:
                self.state = IDLE
            else:
                self.col += 1
                self._start_column()
        if accept:
            self._accept(cmd)


class AnalogFrontEnd:
    """The analog half of the ADC: sample-and-hold, column mux, capacitor DAC, comparator.

    Parameters
    ----------
    reads : iterable of array_like
        The column values (cell-current steps) of successive crossbar reads; each ``sample``
        strobe holds the next one.
    lsb : float or dict
        ADC step in cell-current steps, or a dict ``{bits: lsb}`` (the DAC reference switched
        with the resolution).
    comparator, offset : see :func:`golden.sar.compare`.
    noise_sigma : float
        Comparator noise in LSB units; each conversion draws ``rng.standard_normal(bits)``
        at its first trial (the same draws, in the same order, as :func:`expected_words`).
    seed : int
        Seed of the noise generator.
    """

    def __init__(self, reads, *, lsb=1.0, comparator=">=", offset=0.0, noise_sigma=0.0, seed=0):
        self._reads = iter(reads)
        self._lsb = lsb
        self._comparator = comparator
        self._offset = offset
        self._sigma = noise_sigma
        self._rng = np.random.default_rng(seed)
        self._noise = None
        self.held = None
        self.trials = 0

    def sample(self):
        self.held = np.asarray(next(self._reads))

    def lsb(self, bits):
        return self._lsb[bits] if isinstance(self._lsb, dict) else self._lsb

    def decide(self, column, trial, bits):
        """The comparator decision for ``trial`` on the held value of ``column``."""
        k = (trial & -trial).bit_length() - 1          # the step: the trial's lowest set bit
        if k == bits - 1 or self._noise is None:
            self._noise = (self._rng.standard_normal(bits) * self._sigma if self._sigma > 0
                           else np.zeros(bits))
        self.trials += 1
        return bool(compare(self.held[column], trial, lsb=self.lsb(bits),
                            comparator=self._comparator, offset=self._offset,
                            noise=self._noise[bits - 1 - k]))


def expected_words(commands, reads, *, max_bits=8, columns=128, resolutions=(), lsb=1.0,
                   comparator=">=", offset=0.0, noise_sigma=0.0, seed=0):
    """Output words of a command sequence, from :func:`golden.sar.sar_convert`.

    ``reads`` are consumed one per command without ``hold`` (refused commands sample
    nothing). Returns a list of dicts ``{column, code, error, last}``.
    """
    resolutions = check_resolutions(max_bits, resolutions)
    reads = iter(reads)
    rng = np.random.default_rng(seed)
    held = None
    words = []
    for cmd in commands:
        if command_error(cmd, columns=columns, resolutions=resolutions):
            words.append({"column": cmd.first, "code": 0, "error": 1, "last": 1})
            continue
        if not cmd.hold:
            held = np.asarray(next(reads))
        cols = list(_columns_of(cmd, columns))
        noise = np.stack([rng.standard_normal(cmd.bits) * noise_sigma if noise_sigma > 0
                          else np.zeros(cmd.bits) for _ in cols])
        step = lsb[cmd.bits] if isinstance(lsb, dict) else lsb
        codes = sar_convert(held[cols], cmd.bits, lsb=step, comparator=comparator,
                            offset=offset, noise=noise)
        for i, (c, code) in enumerate(zip(cols, codes)):
            words.append({"column": c, "code": int(code), "error": 0,
                          "last": int(i == len(cols) - 1)})
    return words
