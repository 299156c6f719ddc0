"""Payload layouts and the register map of the PIM tile's ports and stages.

The register map (fields, codes, the MODE word) is described once, in :mod:`golden.pim_tile`;
these are its hardware views.
"""

from amaranth import signed, unsigned
from amaranth.lib import data, enum

from golden.pim_tile import CFG_FIELD_BITS, CFG_VALUE_BITS
from golden.pim_tile import CfgField as _Field
from golden.pim_tile import cfg_write_fields, mode_fields

__all__ = ["CfgField", "cfg_layout", "xbar_cfg_layout", "mode_layout", "input_layout",
           "output_layout", "beat_layout", "bus_layout", "plane_shape", "ubits"]


def ubits(n):
    """Unsigned width holding ``0 .. n - 1`` (at least 1 bit)."""
    return max(1, (n - 1).bit_length())


class CfgField(enum.Enum, shape=CFG_FIELD_BITS):
    """Register of a configuration write (:class:`golden.pim_tile.CfgField`)."""
    MODE = _Field.MODE.value
    IN_BLOCK = _Field.IN_BLOCK.value
    OUT_BASE = _Field.OUT_BASE.value
    SCALE = _Field.SCALE.value
    N_OUTPUTS = _Field.N_OUTPUTS.value
    N_BLOCKS = _Field.N_BLOCKS.value


def cfg_layout(crossbars):
    """Configuration write: ``{xbar, field, value}`` (:func:`golden.pim_tile.cfg_write_fields`)."""
    w = cfg_write_fields(crossbars)
    return data.StructLayout({"xbar": unsigned(w["xbar"]), "field": CfgField,
                              "value": unsigned(w["value"])})


def xbar_cfg_layout():
    """A configuration write addressed to one crossbar: ``{field, value}``."""
    return data.StructLayout({"field": CfgField, "value": unsigned(CFG_VALUE_BITS)})


def mode_layout(adc_bits):
    """A crossbar's MODE register ``{enable, slc, adc_bits}`` (:func:`golden.pim_tile.mode_fields`)."""
    return data.StructLayout({k: unsigned(w) for k, w in mode_fields(adc_bits).items()})


def input_layout(rows, input_bits):
    """One input beat: the ``rows`` activations of one row block, element 0 at the LSB."""
    return data.ArrayLayout(signed(input_bits), rows)


def output_layout(outputs, out_width):
    """One output: ``{value, saturated, index, last}`` (``last``: last output of a vector)."""
    return data.StructLayout({"value": signed(out_width), "saturated": 1,
                              "index": unsigned(ubits(outputs)), "last": 1})


def beat_layout(*, adc_bits, input_bits, weight_bits, max_n_out, rows):
    """One ADC code of a crossbar, tagged for the shift-and-add unit."""
    return data.StructLayout({
        "code": unsigned(adc_bits), "plane": unsigned(ubits(input_bits)),
        "slice": unsigned(ubits(weight_bits)), "column": unsigned(ubits(max_n_out)),
        "first": 1, "last": 1, "ones": unsigned(rows.bit_length()),
    })


def bus_layout(rows, row_blocks):
    """One plane of one row block on the broadcast bus: ``{block, bits}`` (bit ``r``: row ``r``)."""
    return data.StructLayout({"block": range(row_blocks), "bits": unsigned(rows)})


def plane_shape(input_bits):
    """An input bit-plane index."""
    return unsigned(ubits(input_bits))
