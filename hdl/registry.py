"""Registry of the blocks that ``python -m hdl`` and ``make verilog`` know.

A block registers itself with the :func:`block` class decorator in its own module; every
module of the :mod:`hdl` package is imported by :func:`blocks`, so adding a block needs no
edit anywhere else. The parameters and their defaults (the papers' sizes) come from the
constructor's signature; validation is the constructor's own (``TypeError``/``ValueError``
naming the parameter and its allowed range).
"""

import enum
import importlib
import inspect
import pkgutil
from dataclasses import dataclass

__all__ = ["block", "blocks", "Block", "Parameter"]


@dataclass(frozen=True)
class Parameter:
    name: str
    default: object
    kind: type
    help: str = ""

    def parse(self, text):
        """Convert a command-line string to the parameter's type (``ValueError`` if it fails)."""
        if self.kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{self.name} must be a boolean (true/false), not {text!r}")
        if self.kind is int:
            try:
                return int(text, 0)
            except ValueError:
                raise ValueError(f"{self.name} must be an integer, not {text!r}") from None
        if self.kind is float:
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{self.name} must be a number, not {text!r}") from None
        if isinstance(self.kind, type) and issubclass(self.kind, enum.Enum):
            for member in self.kind:
                if text in (member.name, member.name.lower(), str(member.value)):
                    return member
            choices = ", ".join(m.name.lower() for m in self.kind)
            raise ValueError(f"{self.name} must be one of {choices}, not {text!r}")
        if self.kind is tuple:
            try:
                return tuple(int(part, 0) for part in text.split(","))
            except ValueError:
                raise ValueError(f"{self.name} must be comma-separated integers, "
                                 f"not {text!r}") from None
        return text


@dataclass(frozen=True)
class Block:
    name: str
    cls: type
    params: tuple
    description: str

    def build(self, **kwargs):
        return self.cls(**kwargs)

    @property
    def module_name(self):
        from .cells import snake_case
        return snake_case(self.cls.__name__)


_blocks = {}


def block(name, **help):
    """Class decorator: register a ``wiring.Component`` as a block called ``name``.

    Keyword arguments give one-line help texts for parameters.
    """
    def register(cls):
        params = []
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.default is inspect.Parameter.empty:
                raise TypeError(f"Block {name!r} parameter {p.name!r} needs a default")
            kind = type(p.default) if p.default is not None else str
            params.append(Parameter(p.name, p.default, kind, help.get(p.name, "")))
        doc = (inspect.getdoc(cls) or "").strip().splitlines()
        _blocks[name] = Block(name, cls, tuple(params), doc[0] if doc else "")
        return cls
    return register


def blocks(*, on_error=None):
    """All registered blocks, by name (imports every module of the ``hdl`` package).

    Parameters
    ----------
    on_error : callable or None
        ``on_error(module_name, exception)`` for a module that fails to import (a block under
        construction), whose blocks are then left out; None: the exception propagates.
    """
    from . import __path__ as hdl_path
    for info in pkgutil.walk_packages(hdl_path, prefix=__package__ + ".",
                                      onerror=(lambda name: None) if on_error else None):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as e:
            if on_error is None:
                raise
            on_error(info.name, e)
    return dict(sorted(_blocks.items()))
