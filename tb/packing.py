"""The one packing helper for struct/array payloads (Amaranth packs the first field or
element at the LSB). Used by every testbench, Amaranth-sim and cocotb alike."""

from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["pack", "unpack", "width"]


def width(layout):
    return Shape.cast(layout).width


def pack(layout, value):
    """Pack ``value`` (int; dict for a struct; sequence for an array; nested) into an int."""
    if isinstance(layout, (data.StructLayout, data.ArrayLayout, data.UnionLayout)):
        if isinstance(layout, data.ArrayLayout):
            items = enumerate(value)
        else:
            items = value.items()
        word = 0
        for key, item in items:
            field = layout[key]
            word |= pack(field.shape, item) << field.offset
        return word
    shape = Shape.cast(layout)
    value = int(value)
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - (1 if shape.signed else 0))) - 1
    if not lo <= value <= hi:
        raise ValueError(f"Value {value} does not fit {shape!r}")
    return value & ((1 << shape.width) - 1)


def unpack(layout, word):
    """Inverse of :func:`pack`: dict for a struct, list for an array, int otherwise."""
    word = int(word)
    if isinstance(layout, data.ArrayLayout):
        return [unpack(layout[i].shape, word >> layout[i].offset) for i in range(layout.length)]
    if isinstance(layout, (data.StructLayout, data.UnionLayout)):
        return {key: unpack(field.shape, word >> field.offset) for key, field in layout}
    shape = Shape.cast(layout)
    word &= (1 << shape.width) - 1
    if shape.signed and word >> (shape.width - 1):
        word -= 1 << shape.width
    return word
