"""The one packing helper for struct/array payloads (Amaranth packs the first field or
element at the LSB). Used by every testbench, Amaranth-sim and cocotb alike.

Each layout is compiled once into a plan (offsets, widths, signedness), and arrays of
8/16/32-bit elements go through NumPy: a testbench packs a 128x32 systolic array's
1281-bit input and unpacks its 4096-bit output every cycle, and walking the Amaranth layout
per element (``Shape.cast`` and a ``Field`` per element) took ~10 ms per vector there.
"""

import functools

import numpy as np
from amaranth.hdl import Shape
from amaranth.lib import data

__all__ = ["pack", "unpack", "pack_many", "pack_many_bytes", "unpack_many", "hex_lines",
           "words_to_bytes", "width"]

_NUMPY_WIDTHS = (8, 16, 32)


def width(layout):
    return Shape.cast(layout).width


@functools.lru_cache(maxsize=None)
def _plan(layout):
    """``("scalar", shape)``, ``("array", element plan, element width, length)`` or
    ``("struct", ((key, offset, plan), ...))``."""
    if isinstance(layout, data.ArrayLayout):
        elem = layout.elem_shape
        return ("array", _plan(elem), Shape.cast(elem).width, layout.length)
    if isinstance(layout, (data.StructLayout, data.UnionLayout)):
        return ("struct", tuple((key, field.offset, _plan(field.shape)) for key, field in layout))
    return ("scalar", Shape.cast(layout))


def _fits(shape):
    lo = -(1 << (shape.width - 1)) if shape.signed else 0
    hi = (1 << (shape.width - (1 if shape.signed else 0))) - 1
    return lo, hi


def _pack(plan, value):
    kind = plan[0]
    if kind == "scalar":
        shape = plan[1]
        value = int(value)
        lo, hi = _fits(shape)
        if not lo <= value <= hi:
            raise ValueError(f"Value {value} does not fit {shape!r}")
        return value & ((1 << shape.width) - 1)
    if kind == "struct":
        word = 0
        fields = {key: (offset, sub) for key, offset, sub in plan[1]}
        for key, item in value.items():
            if key not in fields:
                raise KeyError(f"Layout has no field {key!r}")
            offset, sub = fields[key]
            word |= _pack(sub, item) << offset
        return word
    _, elem, w, length = plan
    if elem[0] == "scalar" and w in _NUMPY_WIDTHS:
        arr = np.asarray(value)
        if arr.ndim == 1 and arr.dtype.kind in "iub" and len(arr) <= length:
            if len(arr) == 0:
                return 0
            lo, hi = _fits(elem[1])
            if arr.min() < lo or arr.max() > hi:
                bad = next(int(v) for v in arr if not lo <= int(v) <= hi)
                raise ValueError(f"Value {bad} does not fit {elem[1]!r}")
            raw = arr.astype(np.int64)
            return int.from_bytes(raw.astype(f"<u{w // 8}").tobytes(), "little")
    if isinstance(value, np.ndarray):
        value = value.tolist()      # Python ints: no float or overflow surprises
    word = 0
    for index, item in enumerate(value):
        if index >= length:
            raise IndexError(f"Index {index} is out of range for array layout of length {length}")
        word |= _pack(elem, item) << (index * w)
    return word


def pack(layout, value):
    """Pack ``value`` (int; dict for a struct; sequence for an array; nested) into an int."""
    return _pack(_plan(layout), value)


def _unpack(plan, word):
    kind = plan[0]
    if kind == "scalar":
        shape = plan[1]
        word &= (1 << shape.width) - 1
        if shape.signed and word >> (shape.width - 1):
            word -= 1 << shape.width
        return word
    if kind == "struct":
        return {key: _unpack(sub, word >> offset) for key, offset, sub in plan[1]}
    _, elem, w, length = plan
    if elem[0] == "scalar" and w in _NUMPY_WIDTHS:
        word &= (1 << (w * length)) - 1
        dtype = f"<{'i' if elem[1].signed else 'u'}{w // 8}"
        return np.frombuffer(word.to_bytes(w * length // 8, "little"), dtype=dtype).tolist()
    return [_unpack(elem, word >> (i * w)) for i in range(length)]


def unpack(layout, word):
    """Inverse of :func:`pack`: dict for a struct, list for an array, int otherwise."""
    return _unpack(_plan(layout), int(word))


def _leaves(plan, offset=0, path=()):
    """``(path, offset, width, signed, count)`` of every scalar or scalar array in a plan."""
    kind = plan[0]
    if kind == "scalar":
        yield path, offset, plan[1].width, plan[1].signed, None
    elif kind == "struct":
        for key, sub_offset, sub in plan[1]:
            yield from _leaves(sub, offset + sub_offset, path + (key,))
    else:
        _, elem, w, length = plan
        if elem[0] != "scalar":
            raise TypeError("pack_many/unpack_many take arrays of scalars only")
        yield path, offset, w, elem[1].signed, length


def _field(values, path):
    for key in path:
        values = values[key]
    return values


def pack_many(layout, values):
    """Pack a batch of values at once (NumPy), one int per item.

    ``values`` has a leading batch axis in every leaf: an array ``(n,)`` for a scalar layout,
    ``(n, length)`` for an array layout, and for a struct a dict (nested for nested structs)
    of such arrays. Returns the list of ``n`` ints that :func:`pack` gives item by item
    (values must fit their fields; ValueError names the first one that does not).
    """
    raw = pack_many_bytes(layout, values)
    return [int.from_bytes(row.tobytes(), "little") for row in raw]


def words_to_bytes(words, width):
    """Packed ints -> their little-endian bytes, a ``(n, ceil(width / 8))`` uint8 array."""
    nbytes = (width + 7) // 8
    return np.frombuffer(b"".join(int(w).to_bytes(nbytes, "little") for w in words),
                         dtype=np.uint8).reshape(len(words), nbytes)


_HEX = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), dtype=np.uint8).reshape(256, 2)


def hex_lines(raw):
    """Rows of little-endian bytes ``(n, nbytes)`` as ``$readmemh`` text: one hexadecimal word
    per line, most significant digit first (NumPy, no Python integer per row)."""
    raw = np.asarray(raw, dtype=np.uint8)
    n = raw.shape[0]
    text = np.empty((n, 2 * raw.shape[1] + 1), dtype=np.uint8)
    text[:, :-1] = _HEX[raw[:, ::-1]].reshape(n, -1)
    text[:, -1] = ord("\n")
    return text.tobytes().decode("ascii")


def pack_many_bytes(layout, values):
    """:func:`pack_many` as little-endian bytes: a ``(n, ceil(width / 8))`` uint8 array."""
    plan = _plan(layout)
    total = Shape.cast(layout).width
    nbytes = (total + 7) // 8
    n = None
    raw = None
    for path, offset, w, signed, count in _leaves(plan):
        arr = np.asarray(_field(values, path), dtype=np.int64)
        arr = arr.reshape(arr.shape[0], -1)
        if count is not None and arr.shape[1] > count:
            raise IndexError(f"Index {count} is out of range for array layout of length {count}")
        if n is None:
            n = arr.shape[0]
            raw = np.zeros((n, nbytes + 8), dtype=np.uint8)    # slack for the last field
        lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if signed else (0, (1 << w) - 1)
        if arr.size and (arr.min() < lo or arr.max() > hi):
            bad = arr[(arr < lo) | (arr > hi)][0]
            raise ValueError(f"Value {int(bad)} does not fit {'signed' if signed else 'unsigned'}"
                             f"({w}) at {'.'.join(map(str, path)) or 'payload'}")
        if offset % 8 == 0 and w in (8, 16, 32, 64):
            # byte-aligned elements: copy their little-endian bytes
            span = arr.shape[1] * w // 8
            raw[:, offset // 8:offset // 8 + span] = \
                np.ascontiguousarray(arr.astype(f"<u{w // 8}" if w < 64 else "<i8")) \
                .view(np.uint8).reshape(n, span)
            continue
        # any other field: OR its bits into place
        values_u = arr & ((1 << w) - 1) if w < 64 else arr
        for e in range(arr.shape[1]):
            for j in range(w):
                pos = offset + e * w + j
                raw[:, pos // 8] |= (((values_u[:, e] >> j) & 1) << (pos % 8)).astype(np.uint8)
    if n is None:
        return np.zeros((0, nbytes), dtype=np.uint8)
    return raw[:, :nbytes]


def unpack_many(layout, words):
    """Inverse of :func:`pack_many`: ints in, a dict (struct) or array with a batch axis out.

    Leaves come back as int64 arrays: ``(n,)`` for a scalar field, ``(n, length)`` for an
    array field.
    """
    plan = _plan(layout)
    total = Shape.cast(layout).width
    nbytes = (total + 7) // 8
    n = len(words)
    raw = np.frombuffer(b"".join(int(w).to_bytes(nbytes, "little") for w in words),
                        dtype=np.uint8).reshape(n, nbytes)
    bits = np.unpackbits(raw, axis=1, bitorder="little").astype(np.int64)
    out = {}
    for path, offset, w, signed, count in _leaves(plan):
        length = 1 if count is None else count
        field_bits = bits[:, offset:offset + length * w].reshape(n, length, w)
        value = field_bits @ (np.int64(1) << np.arange(w, dtype=np.int64))
        if signed:
            value = np.where(value >> (w - 1), value - (np.int64(1) << w), value)
        value = value[:, 0] if count is None else value
        if not path:
            return value
        target = out
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value
    return out
