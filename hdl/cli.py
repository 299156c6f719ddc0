"""Command-line options for block parameters, shared by ``python -m hdl`` and ``python -m synth``.

Every parameter of a registered block (:mod:`hdl.registry`) is an option ``--<name>`` (``_``
written ``-``) that takes the parameter's text form (:meth:`hdl.registry.Parameter.parse`). A
sweep takes a list: values separated by ``,``, or by ``/`` for a tuple parameter whose own
items are separated by ``,`` (``--resolutions 6,7/6/7``; an empty item is the empty tuple).
"""

__all__ = ["add_parameter_options", "parse_parameters"]


def add_parameter_options(parser, block, *, sweep=False):
    """Add an option per parameter of ``block`` to the ``argparse`` ``parser`` (default None:
    the parameter keeps its default)."""
    for p in block.params:
        default = p.default.name.lower() if hasattr(p.default, "name") else \
            ",".join(map(str, p.default)) if isinstance(p.default, tuple) else p.default
        help_text = p.help or ""
        help_text += f"{' ' if help_text else ''}(default {default})"
        if sweep:
            help_text += "; several values: v1,v2,..." + (" (tuples: a/b)" if p.kind is tuple
                                                          else "")
        parser.add_argument(f"--{p.name.replace('_', '-')}", dest=p.name, default=None,
                            metavar=type(p.default).__name__.upper(), help=help_text)


def _values(param, text):
    sep = "/" if param.kind is tuple else ","
    out = []
    for part in text.split(sep):
        if param.kind is tuple and part.strip() == "":
            out.append(())
        else:
            out.append(param.parse(part.strip()))
    return out


def parse_parameters(block, args, *, sweep=False):
    """The parameters given in the parsed ``args``: ``{name: value}``, or with ``sweep``
    ``{name: [values]}``, in the block's parameter order (unset ones left out).

    Raises
    ------
    ValueError
        A value that does not parse, naming the parameter.
    """
    out = {}
    for p in block.params:
        text = getattr(args, p.name, None)
        if text is not None:
            out[p.name] = _values(p, text) if sweep else p.parse(text)
    return out
