"""Port bundles shared by several blocks.

:class:`AdcPortSignature` is the interface between the digital half of one SAR ADC (the
controller, :class:`hdl.sar_adc.SarAdcController`) and its analog front end (sample-and-hold,
column mux, capacitor DAC and comparator). The controller holds it as ``Out``; a channel that
drives a crossbar's ADCs forwards an array of them; a testbench or a formal harness plays the
front end (it sees the bundle flipped).

Strobes that carry no backpressure are :class:`StrobeSignature` s (:func:`strobe`): ``valid``
is the strobe, ``payload`` what it carries, and there is no ``ready`` -- the members of
``stream.Signature(shape, always_ready=True)`` without its constant ``ready``, which Amaranth
0.5 cannot emit as a Verilog port (``amaranth.back.verilog.convert`` and shared-cell instances
reject a constant port), so a strobe can cross a top or a shared cell's boundary and fan out
to several receivers with one ``wiring.connect`` each.
"""

from amaranth import Shape, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AdcPortSignature", "StrobeSignature", "strobe"]


def _check_int(name, value, lo, hi):
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise TypeError(f"{name} must be an integer from {lo} to {hi}, not {value!r}")
    return value


class StrobeSignature(wiring.Signature):
    """A strobe carrying ``payload_shape``: ``valid`` and ``payload``, driven by the sender.

    Contract: the receiver takes ``payload`` in every cycle in which ``valid`` is high; it
    cannot stall the sender (an always-ready stream).

    Parameters
    ----------
    payload_shape : shape-like

    Members
    -------
    valid : Out(1)
    payload : Out(payload_shape)
    """

    def __init__(self, payload_shape):
        try:
            Shape.cast(payload_shape)
        except TypeError:
            raise TypeError(f"Payload shape must be a shape-like object, not {payload_shape!r}") \
                from None
        self._payload_shape = payload_shape
        super().__init__({"valid": Out(1), "payload": Out(payload_shape)})

    @property
    def payload_shape(self):
        return self._payload_shape

    def __eq__(self, other):
        return type(other) is type(self) and self.payload_shape == other.payload_shape

    def __repr__(self):
        return f"StrobeSignature({self.payload_shape!r})"


def strobe(payload_shape):
    """The signature of a strobe carrying ``payload_shape`` (:class:`StrobeSignature`)."""
    return StrobeSignature(payload_shape)


class AdcPortSignature(wiring.Signature):
    """Controller side of one column-multiplexed SAR ADC's analog front end.

    Contract (one trial per cycle; :mod:`golden.sar_adc` is the cycle-true model): ``sample``
    is high for one cycle to sample every column onto the sample-and-hold; ``column`` selects
    the column the comparator sees; in a cycle with ``trial_en`` high, ``trial`` is the trial
    code, LSB-aligned at resolution ``bits`` (the capacitor DAC's setting), and the front end
    answers on ``decision`` in the same cycle (1: the held value is at or above the trial
    threshold, the trial bit is kept). ``decision`` is ignored in other cycles.

    Parameters
    ----------
    max_bits : int
        Widest resolution and width of ``trial``, 1 to 16.
    columns : int
        Columns behind the column mux, 1 to 4096.

    Members
    -------
    sample : Out(1)
        Sample-and-hold strobe.
    column : Out(unsigned(max(1, ceil(log2(columns)))))
        Column mux select.
    trial : Out(max_bits)
        Trial code, valid with ``trial_en``.
    trial_en : Out(1)
        A trial is shown this cycle.
    bits : Out(max_bits.bit_length())
        Resolution of the conversion in progress.
    decision : In(1)
        Comparator decision for the trial shown this cycle.
    """

    def __init__(self, *, max_bits, columns):
        self._max_bits = _check_int("max_bits", max_bits, 1, 16)
        self._columns = _check_int("columns", columns, 1, 4096)
        super().__init__({
            "sample": Out(1),
            "column": Out(unsigned(max(1, (columns - 1).bit_length()))),
            "trial": Out(max_bits),
            "trial_en": Out(1),
            "bits": Out(max_bits.bit_length()),
            "decision": In(1),
        })

    @property
    def max_bits(self):
        return self._max_bits

    @property
    def columns(self):
        return self._columns

    def __eq__(self, other):
        return (type(other) is type(self) and self.max_bits == other.max_bits
                and self.columns == other.columns)

    def __repr__(self):
        return f"AdcPortSignature(max_bits={self.max_bits}, columns={self.columns})"
