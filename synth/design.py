"""The design text handed to Yosys: RTLIL straight from Amaranth, or Verilog.

Yosys' Verilog frontend needs about 75 s of CPU for the 0.9 MB flat top of the 128x32
systolic array (the Verilog that ``hdl.verilog.generate`` writes), while ``read_rtlil`` reads
the same design in under a second. :func:`generate_rtlil` therefore elaborates a block like
:func:`hdl.verilog.generate` (top module plus each shared cell once) but keeps every module in
Amaranth's RTLIL. :func:`split_modules` cuts either format into modules.
"""

import re
import threading

__all__ = ["generate_rtlil", "is_rtlil", "split_modules", "children", "stub", "has_memory",
           "register_bits"]

_LOCK = threading.Lock()   # Amaranth elaboration and the cell library are not thread-safe


def _verilog_header(rtlil_text, name):
    """A Verilog module header with the ports of RTLIL module ``name`` (what the cell
    library reads to connect ``clk``/``rst``)."""
    mods = split_modules(rtlil_text)
    ports = re.findall(r"^\s*wire\b[^\n]*\b(?:input|output|inout) \d+\s+\\?(\S+)\s*$",
                       mods[name], re.M)
    return f"module {name}({', '.join(ports)});\nendmodule\n"


def generate_rtlil(component, name):
    """RTLIL text of ``component`` as module ``name``, with each shared cell module once.

    Same elaboration as :func:`hdl.verilog.generate` (its cell library, its module names);
    only the output format differs.
    """
    from amaranth.back import rtlil

    import hdl.verilog as hdl_verilog
    from hdl.cells import CellLibrary

    cells = {}

    def convert_module(cell, module_name, *, top=True):
        text = rtlil.convert(cell, name=module_name, emit_src=False)
        cells[module_name] = text
        return _verilog_header(text, module_name)

    with _LOCK:
        original = hdl_verilog.convert_module
        hdl_verilog.convert_module = convert_module
        try:
            with CellLibrary() as library:
                top = rtlil.convert(component, name=name, emit_src=False)
                if name in library.module_names:
                    raise ValueError(f"Top module name {name!r} collides with a cell module "
                                     f"name")
                names = library.module_names
        finally:
            hdl_verilog.convert_module = original
    return top + "".join(cells[n] for n in names)


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
