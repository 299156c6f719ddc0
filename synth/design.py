"""The design text handed to Yosys: RTLIL straight from Amaranth, or Verilog.

Yosys' Verilog frontend is slow on large flat modules (the top of the 128x32 systolic
array), while ``read_rtlil`` reads the same design at once. :func:`generate_rtlil` therefore
generates a block through :func:`hdl.verilog.generate` with the RTLIL backend (top module plus
each shared cell once). :func:`split_modules` cuts either format into modules and
:func:`synthesis_units` groups them into what Yosys synthesizes one at a time.
"""

import re
import threading

__all__ = ["generate_rtlil", "is_rtlil", "split_modules", "synthesis_units", "children", "stub",
           "has_memory", "register_bits"]

_LOCK = threading.Lock()   # one elaboration at a time (synth generates designs from threads)


def generate_rtlil(component, name):
    """RTLIL text of ``component`` as module ``name``, with each shared cell module once
    (:func:`hdl.verilog.generate` with the RTLIL backend)."""
    from hdl.verilog import generate

    with _LOCK:
        return generate(component, name, backend="rtlil")


def is_rtlil(text):
    return re.search(r"^module \\", text, re.M) is not None


_V_MODULE = re.compile(r"\s*module\s+\\?([^\s(;]+)")
_V_END = re.compile(r"\s*endmodule\b")
_V_INSTANCE = re.compile(r"^\s*\\?([^\s(;#]+)\s+(?:#\s*\(.*?\)\s*)?\\?\S+\s*\(", re.M)
_V_MEMORY = re.compile(r"^\s*reg\s+(?:\[[^\]]*\]\s*)?(?:\\\S+\s|[A-Za-z_$][\w$]*)\s*\[", re.M)
_V_PORT = re.compile(r"^\s*(?:input|output|inout)\b[^;]*;", re.M)
_IL_MODULE = re.compile(r"module \\?(\S+)\s*$")
_IL_INSTANCE = re.compile(r"^\s*cell \\(\S+) ", re.M)
_IL_MEMORY = re.compile(r"^\s*(?:memory\s|cell \$mem)", re.M)
_IL_PORT = re.compile(r"^\s*wire\b[^\n]*\b(?:input|output|inout) \d+\s[^\n]*$", re.M)


def split_modules(text):
    """``{module name: text}`` (attribute lines before ``module`` included), in order."""
    rtlil = is_rtlil(text)
    mods = {}
    pending, current, buf = [], None, []
    for line in text.splitlines(keepends=True):
        if current is None:
            m = _IL_MODULE.match(line) if rtlil else _V_MODULE.match(line)
            if m:
                current, buf, pending = m.group(1), pending + [line], []
            elif line.startswith("attribute") if rtlil else line.lstrip().startswith("(*"):
                pending.append(line)
            else:
                pending = []
        else:
            buf.append(line)
            if (line.rstrip() == "end") if rtlil else _V_END.match(line):
                mods[current] = "".join(buf)
                current = None
    return mods


def children(mods):
    """``{module: [names of the modules it instantiates]}``."""
    names = set(mods)
    out = {}
    for name, text in mods.items():
        regex = _IL_INSTANCE if is_rtlil(text) else _V_INSTANCE
        out[name] = sorted({m.group(1) for m in regex.finditer(text)} & names - {name})
    return out


_IL_DFF_WIDTH = re.compile(r"^\s*cell \$\w*dff\w* [^\n]*\n(?:\s*parameter [^\n]*\n)*?"
                           r"\s*parameter \\WIDTH (\d+)", re.M)
_V_REG = re.compile(r"\breg\s+\[(\d+):(\d+)\]")


def register_bits(text):
    """Flip-flop bits declared in a module (RTLIL ``$dff`` cells; Verilog ``reg`` vectors, an
    upper bound): the size measure that picks the lean script."""
    if is_rtlil(text):
        return sum(int(w) for w in _IL_DFF_WIDTH.findall(text))
    return sum(abs(int(a) - int(b)) + 1 for a, b in _V_REG.findall(text))


def has_memory(text):
    return (_IL_MEMORY if is_rtlil(text) else _V_MEMORY).search(text) is not None


def stub(text):
    """A blackbox with the ports of module ``text`` (read with ``-lib``; a Verilog body can
    take the Verilog frontend a minute even when it is thrown away)."""
    if is_rtlil(text):
        name = next(m.group(1) for m in map(_IL_MODULE.match, text.splitlines()) if m)
        ports = _IL_PORT.findall(text)
        return "attribute \\blackbox 1\nmodule \\" + name + "\n" + "\n".join(ports) + "\nend\n"
    header = re.search(r"^\s*module\b[^;]*;", text, re.M).group(0)
    if re.search(r"\b(?:input|output|inout)\b", header):     # ANSI-style header
        return header + "\nendmodule\n"
    return header + "\n" + "\n".join(_V_PORT.findall(text)) + "\nendmodule\n"


def synthesis_units(mods):
    """``{unit: [its modules, the unit first]}``: the modules Yosys synthesizes together.

    A unit is a module whose name is not under another module's (the design's top, or a
    shared cell module) together with the Amaranth submodules below it (``unit.a``,
    ``unit.a.b``: a block composed of stages), which are flattened into it; so splitting a
    block into stages leaves its synthesis, and its area, as one piece.
    """
    units = {}
    for name in mods:
        root = name.split(".", 1)[0]
        units.setdefault(root if root in mods else name, []).append(name)
    for unit, members in units.items():
        members.sort(key=lambda n: n != unit)
    return units
