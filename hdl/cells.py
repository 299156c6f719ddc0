"""Repeated cells as one Verilog module each.

Amaranth emits one Verilog module per instance and never merges identical ones, so a 128x32
array of PEs would become 4096 copies of the PE: Verilator and Yosys then take hours. A block
made of many identical cells wraps each cell in :func:`shared_cell`. In the Amaranth hierarchy
(the Amaranth simulator) that returns the cell itself; while :func:`hdl.verilog.generate` runs
it returns an ``Instance`` of one module per distinct cell configuration, whose Verilog is
generated once and appended to the design.
"""

import contextvars
import re

from amaranth.hdl import ClockSignal, Instance, ResetSignal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow

__all__ = ["shared_cell", "CellLibrary"]


_library = contextvars.ContextVar("pimrtl_cell_library", default=None)


def _port_name(path):
    return "__".join(str(part) for part in path)


class CellLibrary:
    """The distinct cell modules of one Verilog design.

    Used as a context manager by :func:`hdl.verilog.generate`; cells register themselves
    through :func:`shared_cell` while the design elaborates.
    """

    def __init__(self):
        self._modules = {}   # key -> (module name, verilog text, uses clk, uses rst)
        self._names = set()
        self._token = None

    def __enter__(self):
        self._token = _library.set(self)
        return self

    def __exit__(self, *exc):
        _library.reset(self._token)

    @property
    def module_names(self):
        return [name for name, *_ in self._modules.values()]

    def verilog(self):
        """The Verilog text of every registered cell module, in registration order."""
        return "".join(text for _, text, *_ in self._modules.values())

    def _register(self, cell, key, name):
        from .verilog import convert_module   # late import: verilog imports this module
        full_key = (type(cell).__module__, type(cell).__qualname__, name, key)
        if full_key not in self._modules:
            module_name, n = name, 1
            while module_name in self._names:
                n += 1
                module_name = f"{name}_{n}"
            self._names.add(module_name)
            # Nested cells inside this cell register in the same library.
            text = convert_module(cell, module_name, top=False)
            header = re.search(r"^module [^(]+\(([^)]*)\);", text, re.MULTILINE).group(1)
            ports = {p.strip() for p in header.split(",")}
            self._modules[full_key] = (module_name, text, "clk" in ports, "rst" in ports)
        return self._modules[full_key]

    def instance(self, cell, key, name):
        module_name, _, uses_clk, uses_rst = self._register(cell, key, name)
        # The shared module stands for this cell: it is used even though never elaborated.
        cell._MustUse__used = True
        kwargs = {}
        if uses_clk:
            kwargs["i_clk"] = ClockSignal()
        if uses_rst:
            kwargs["i_rst"] = ResetSignal()
        for path, member, value in cell.signature.flatten(cell):
            prefix = "i_" if member.flow is Flow.In else "o_"
            kwargs[prefix + _port_name(path)] = Value.cast(value)
        return Instance(module_name, **kwargs)


def shared_cell(cell, *, key, name=None):
    """Use ``cell`` as a submodule, emitted as a shared Verilog module when generating Verilog.

    Parameters
    ----------
    cell : wiring.Component
        The cell. Its ports keep working as usual in the enclosing design: connect to
        ``cell``'s ports, not to the returned object (which may be an ``Instance``).
    key : hashable
        Everything that makes the cell's logic differ from another cell of the same class
        (its parameters). Cells with equal class and key share one Verilog module.
    name : str
        Verilog module name; defaults to the snake_case of the class name.
    """
    if not isinstance(cell, wiring.Component):
        raise TypeError(f"Shared cell must be a wiring.Component, not {cell!r}")
    library = _library.get()
    if library is None:
        return cell
    if name is None:
        name = snake_case(type(cell).__name__)
    return library.instance(cell, key, name)


def snake_case(name):
    """``SystolicArray`` -> ``systolic_array`` (the Verilog module name of a component)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
