"""A small Liberty reader: cell areas, sequential cells, pin directions and nominal delays.

Only what the area flow needs is kept. Yosys reads the Liberty for mapping (``dfflibmap``,
``abc -liberty``, ``stat -liberty``); this module validates the file first (so a missing or
broken Liberty is a one-line error, not a Yosys traceback) and supplies per-arc delays for the
critical-path estimate of :mod:`synth.depth`.

Delay model: each timing arc's ``cell_rise``/``cell_fall`` table is interpolated at a nominal
input transition of 0.1 ns and a load of 10 fF (about a fan-out of four gates in a 130 nm
library); the arc delay is the larger of rise and fall. There is no wire load and no slew
propagation: the result is an estimate to compare designs, not sign-off timing.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LibertyError", "Liberty", "LibertyCell", "load_liberty", "DEFAULT_LIBERTY"]

# The default library ships with the project (synth/pdk/README.md): IHP SG13G2 130 nm, typical
# corner, Apache-2.0. Its SRAM macros lie beside it.
DEFAULT_LIBERTY = Path(__file__).resolve().parent / "pdk" / "ihp-sg13g2" / "sg13g2_stdcell_typ_1p20V_25C.lib"

NOMINAL_SLEW_NS = 0.1
NOMINAL_LOAD_PF = 0.010


class LibertyError(Exception):
    """The Liberty file is missing, unreadable or not a Liberty library."""


@dataclass
class LibertyCell:
    name: str
    area: float
    sequential: bool = False
    pins: dict = field(default_factory=dict)      # pin -> "input" | "output" | "inout"
    arcs: dict = field(default_factory=dict)      # (from pin, to pin) -> delay in ns
    clock_pins: set = field(default_factory=set)
    memory: tuple = None                          # (words, bits) of an SRAM macro


@dataclass
class Liberty:
    path: str
    name: str
    cells: dict

    def area(self, cell_type):
        cell = self.cells.get(cell_type)
        return None if cell is None else cell.area


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|/\*.*?\*/|//[^\n]*|\\\n|[(){};:,]|[^\s(){};:,"]+',
                    re.DOTALL)


def _tokens(text):
    for m in _TOKEN.finditer(text):
        tok = m.group()
        if tok.startswith("/*") or tok.startswith("//") or tok == "\\\n":
            continue
        yield tok


class _Group:
    __slots__ = ("kind", "args", "attrs", "groups")

    def __init__(self, kind, args):
        self.kind, self.args, self.attrs, self.groups = kind, args, {}, []

    def find(self, kind):
        return [g for g in self.groups if g.kind == kind]


def _parse(text):
    """Parse Liberty text into nested groups (a minimal, permissive parser)."""
    toks = list(_tokens(text))
    root = _Group("root", [])
    stack = [root]
    i, n = 0, len(toks)
    while i < n:
        tok = toks[i]
        if tok == "}":
            if len(stack) == 1:
                raise LibertyError("unbalanced '}'")
            stack.pop()
            i += 1
            if i < n and toks[i] == ";":
                i += 1
            continue
        if tok == ";":
            i += 1
            continue
        name = tok
        if i + 1 < n and toks[i + 1] == ":":          # simple attribute
            j = i + 2
            value = []
            while j < n and toks[j] not in (";", "}") and not (
                    j + 1 < n and toks[j + 1] in (":", "(") and value):
                value.append(toks[j])
                j += 1
            stack[-1].attrs[name] = " ".join(value).strip('"')
            i = j + 1 if j < n and toks[j] == ";" else j
            continue
        if i + 1 < n and toks[i + 1] == "(":           # group or complex attribute
            j = i + 2
            args = []
            while j < n and toks[j] != ")":
                if toks[j] != ",":
                    args.append(toks[j].strip('"'))
                j += 1
            j += 1
            if j < n and toks[j] == "{":
                group = _Group(name, args)
                stack[-1].groups.append(group)
                stack.append(group)
                i = j + 1
            else:
                stack[-1].attrs.setdefault(name, args)
                i = j + 1 if j < n and toks[j] == ";" else j
            continue
        i += 1
    if len(stack) != 1:
        raise LibertyError("unbalanced '{'")
    return root


def _floats(args):
    out = []
    for a in args:
        out.extend(float(x) for x in a.replace("\\", " ").replace(",", " ").split())
    return out


def _interp(xs, x):
    """Index and weight of ``x`` between the breakpoints ``xs`` (clamped)."""
    if len(xs) == 1 or x <= xs[0]:
        return 0, 0.0
    for k in range(len(xs) - 1):
        if x <= xs[k + 1]:
            return k, (x - xs[k]) / (xs[k + 1] - xs[k])
    return len(xs) - 2, 1.0


def _table_value(table, templates, slew, load):
    values = _floats(table.attrs.get("values", []))
    if not values:
        return None
    template = templates.get(table.args[0] if table.args else "", {})
    idx1 = _floats(table.attrs["index_1"]) if "index_1" in table.attrs else template.get("index_1", [])
    idx2 = _floats(table.attrs["index_2"]) if "index_2" in table.attrs else template.get("index_2", [])
    var1 = template.get("variable_1", "input_net_transition")
    x1 = load if "capacitance" in var1 else slew
    x2 = slew if "capacitance" in var1 else load
    if not idx1:
        return values[0]
    k1, w1 = _interp(idx1, x1)
    if not idx2 or len(values) == len(idx1):
        a = values[k1]
        b = values[min(k1 + 1, len(values) - 1)]
        return a + (b - a) * w1
    k2, w2 = _interp(idx2, x2)
    cols = len(idx2)

    def v(r, c):
        return values[min(r, len(idx1) - 1) * cols + min(c, cols - 1)]
    top = v(k1, k2) + (v(k1, k2 + 1) - v(k1, k2)) * w2
    bottom = v(k1 + 1, k2) + (v(k1 + 1, k2 + 1) - v(k1 + 1, k2)) * w2
    return top + (bottom - top) * w1


def _unit_scale(text, units):
    m = re.match(r"\s*([0-9.eE+-]*)\s*([a-zA-Z]+)", text or "")
    if not m:
        return 1.0
    mult = float(m.group(1)) if m.group(1) else 1.0
    return mult * units.get(m.group(2).lower(), 1.0)


_cache = {}


def load_liberty(path):
    """Read and check a Liberty file; raises :class:`LibertyError` with a one-line message."""
    path = Path(path)
    if not path.exists():
        raise LibertyError(f"Liberty file {str(path)!r} does not exist")
    if not path.is_file():
        raise LibertyError(f"Liberty file {str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise LibertyError(f"Liberty file {str(path)!r} is not readable")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _cache:
        return _cache[key]
    try:
        text = path.read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as e:
        raise LibertyError(f"Liberty file {str(path)!r} is not readable: {e}") from None
    try:
        root = _parse(text)
    except LibertyError as e:
        raise LibertyError(f"Liberty file {str(path)!r} is not a Liberty library: {e}") from None
    libs = root.find("library")
    if not libs:
        raise LibertyError(f"Liberty file {str(path)!r} is not a Liberty library "
                           f"(no library group)")
    lib = libs[0]
    time_ns = _unit_scale(lib.attrs.get("time_unit", "1ns"), {"ns": 1.0, "ps": 1e-3, "us": 1e3})
    cap = lib.attrs.get("capacitive_load_unit", ["1", "pf"])
    cap_pf = (float(cap[0]) if cap and cap[0] else 1.0) * {"pf": 1.0, "ff": 1e-3}.get(
        (cap[1] if len(cap) > 1 else "pf").lower(), 1.0)
    slew = NOMINAL_SLEW_NS / time_ns
    load = NOMINAL_LOAD_PF / cap_pf
    templates = {}
    for t in lib.find("lu_table_template"):
        templates[t.args[0] if t.args else ""] = {
            "variable_1": t.attrs.get("variable_1", ""),
            "index_1": _floats(t.attrs.get("index_1", [])),
            "index_2": _floats(t.attrs.get("index_2", [])),
        }
    cells = {}
    for c in lib.find("cell"):
        if not c.args:
            continue
        try:
            area = float(c.attrs.get("area", "nan"))
        except ValueError:
            area = float("nan")
        cell = LibertyCell(c.args[0], area,
                           sequential=bool(c.find("ff") or c.find("latch") or c.find("statetable")))
        for mem in c.find("memory"):
            try:
                cell.memory = (2 ** int(mem.attrs["address_width"]), int(mem.attrs["word_width"]))
            except (KeyError, ValueError):
                pass
        for p in c.find("pin") + [pp for b in c.find("bus") for pp in b.find("pin")]:
            for pname in p.args:
                cell.pins[pname] = p.attrs.get("direction", "input")
                if p.attrs.get("clock", "false") == "true":
                    cell.clock_pins.add(pname)
                for t in p.find("timing"):
                    ttype = t.attrs.get("timing_type", "combinational")
                    if ttype not in ("combinational", "combinational_rise", "combinational_fall",
                                     "rising_edge", "falling_edge", ""):
                        continue
                    delays = [d for kind in ("cell_rise", "cell_fall") for tab in t.find(kind)
                              if (d := _table_value(tab, templates, slew, load)) is not None]
                    if not delays:
                        continue
                    for related in t.attrs.get("related_pin", "").split():
                        arc = (related, pname)
                        cell.arcs[arc] = max(cell.arcs.get(arc, 0.0), max(delays) * time_ns)
        cells[cell.name] = cell
    if not any(cell.area == cell.area for cell in cells.values()):
        raise LibertyError(f"Liberty file {str(path)!r} has no cells with an area")
    result = Liberty(str(path), lib.args[0] if lib.args else path.stem, cells)
    _cache[key] = result
    return result
