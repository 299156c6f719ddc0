"""Repeated cells as one Verilog module each.

Amaranth emits one Verilog module per instance and never merges identical ones, so a 128x32
array of PEs would become 4096 copies of the PE: Verilator and Yosys then take hours. A block
made of many identical cells adds each one with :func:`add_cell`. In the Amaranth hierarchy
(the Amaranth simulator) that builds and adds the cell itself; while :func:`hdl.verilog.generate`
runs it adds an ``Instance`` of one module per distinct cell configuration (the cell's class
and constructor arguments), built and converted once, and returns ports of the cell's
signature for the design to connect.
"""

import contextvars
import inspect
import re

from amaranth.hdl import ClockSignal, Fragment, Instance, ResetSignal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import Flow

__all__ = ["add_cell", "shared_cell", "cell_key", "CellLibrary", "snake_case"]


_library = contextvars.ContextVar("pimrtl_cell_library", default=None)


def snake_case(name):
    """``SystolicArray`` -> ``systolic_array`` (the Verilog module name of a component)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _port_name(path):
    return "__".join(str(part) for part in path)


def _freeze(value):
    """A hashable stand-in for a constructor argument (lists and dicts by content)."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    try:
        hash(value)
    except TypeError:
        return ("repr", type(value).__qualname__, repr(value))
    return value


def _bound_arguments(cell_type, args, kwargs):
    try:
        bound = inspect.signature(cell_type).bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"Arguments do not match {cell_type.__qualname__}: {e}") from None
    bound.apply_defaults()
    return tuple((k, _freeze(v)) for k, v in bound.arguments.items())


def cell_key(cell):
    """The configuration of a constructed cell: its class and, for every parameter of its
    constructor, the read-only property of the same name (the house style exposes one per
    parameter). ``TypeError`` naming the parameter when a property is missing."""
    values = []
    for p in inspect.signature(type(cell)).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"Cannot derive the key of {type(cell).__qualname__}: its "
                            f"constructor takes *{p.name}")
        if not isinstance(getattr(type(cell), p.name, None), property):
            raise TypeError(f"Cannot derive the key of {type(cell).__qualname__}: it has no "
                            f"property for its constructor parameter {p.name!r}")
        values.append((p.name, _freeze(getattr(cell, p.name))))
    return tuple(values)


class CellLibrary:
    """The distinct cell modules of one design.

    Used as a context manager by :func:`hdl.verilog.generate`; cells register themselves
    through :func:`add_cell` (or :func:`shared_cell`) while the design elaborates.

    Parameters
    ----------
    convert : callable
        ``convert(cell, module_name) -> (text, domains)``: the module text of a cell (in the
        design's output format; its own nested cells register in this library while it is
        converted) and the names of the clock domains the cell uses.
    """

    def __init__(self, convert):
        self._convert = convert
        self._modules = {}   # full key -> (module name, text, domains, signature)
        self._names = set()
        self._token = None

    def __enter__(self):
        self._token = _library.set(self)
        return self

    def __exit__(self, *exc):
        _library.reset(self._token)

    @property
    def module_names(self):
        return [entry[0] for entry in self._modules.values()]

    def texts(self):
        """``{module name: text}`` of every registered cell module, in registration order."""
        return {entry[0]: entry[1] for entry in self._modules.values()}

    def _register(self, full_key, name, build):
        if full_key not in self._modules:
            module_name, n = name, 1
            while module_name in self._names:
                n += 1
                module_name = f"{name}_{n}"
            self._names.add(module_name)
            cell = build()
            text, domains = self._convert(cell, module_name)
            self._modules[full_key] = (module_name, text, frozenset(domains), cell.signature)
        return self._modules[full_key]

    @staticmethod
    def _instance(module_name, domains, signature, ports):
        kwargs = {}
        for domain in sorted(domains):
            if domain != "sync":
                raise ValueError(f"Cell module {module_name!r} uses clock domain {domain!r}; "
                                 f"shared cells support the sync domain only")
            kwargs["i_clk"] = ClockSignal()
            kwargs["i_rst"] = ResetSignal()
        for path, member, value in signature.flatten(ports):
            prefix = "i_" if member.flow is Flow.In else "o_"
            kwargs[prefix + _port_name(path)] = Value.cast(value)
        return Instance(module_name, **kwargs)


def add_cell(m, name, cell_type, *args, module_name=None, **kwargs):
    """Add the cell ``cell_type(*args, **kwargs)`` to ``m`` as submodule ``name``.

    Outside :func:`hdl.verilog.generate` the cell is built and added as usual, and returned.
    During it, cells of equal class and equal constructor arguments (bound to the
    constructor's signature, defaults applied) share one Verilog module, built once; each
    use adds an ``Instance`` of it and returns a fresh interface of the cell's signature
    (its ports, named ``<name>__<port>``), so nothing is built that is not elaborated.

    Parameters
    ----------
    m : Module
        The module to add the cell to.
    name : str
        Submodule name.
    cell_type : type
        A ``wiring.Component`` subclass.
    *args, **kwargs
        The constructor's arguments; they are the cell's key, so none can be left out.
    module_name : str or None
        Verilog module name; defaults to the snake_case of the class name (a numeric suffix
        keeps distinct configurations apart).

    Returns
    -------
    wiring.Component or interface
        The object whose ports the design connects (only ports: no other attribute of the
        cell is guaranteed to be there).
    """
    if not (isinstance(cell_type, type) and issubclass(cell_type, wiring.Component)):
        raise TypeError(f"Cell type must be a wiring.Component subclass, not {cell_type!r}")
    library = _library.get()
    if library is None:
        m.submodules[name] = cell = cell_type(*args, **kwargs)
        return cell
    key = (cell_type.__module__, cell_type.__qualname__, module_name,
           _bound_arguments(cell_type, args, kwargs))
    module, _, domains, signature = library._register(
        key, module_name or snake_case(cell_type.__name__),
        lambda: cell_type(*args, **kwargs))
    ports = signature.create(path=(name,))
    m.submodules[name] = library._instance(module, domains, signature, ports)
    return ports


def shared_cell(cell, *, key=None, name=None):
    """Use the constructed ``cell`` as a submodule, emitted as a shared Verilog module when
    generating Verilog (the form before :func:`add_cell`, which builds only what it uses).

    Parameters
    ----------
    cell : wiring.Component
        The cell. Connect to ``cell``'s ports, not to the returned object (which may be an
        ``Instance``). A cell that an ``Instance`` stands for is still elaborated once, so
        that it is used.
    key : hashable or None
        Extra configuration beyond :func:`cell_key` (the class and every constructor
        parameter, read back through the properties of the same names), which is always part
        of the key. Cells with equal keys share one Verilog module.
    name : str
        Verilog module name; defaults to the snake_case of the class name.
    """
    if not isinstance(cell, wiring.Component):
        raise TypeError(f"Shared cell must be a wiring.Component, not {cell!r}")
    library = _library.get()
    if library is None:
        return cell
    try:
        derived = cell_key(cell)
    except TypeError:
        if key is None:
            raise
        derived = None
    if name is None:
        name = snake_case(type(cell).__name__)
    full_key = (type(cell).__module__, type(cell).__qualname__, name, derived, key)
    first = []
    module, _, domains, signature = library._register(
        full_key, name, lambda: first.append(cell) or cell)
    if not first:
        Fragment.get(cell, None)       # stands for an instance: elaborate it so it is used
    return library._instance(module, domains, signature, cell)
