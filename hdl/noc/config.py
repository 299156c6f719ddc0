"""The router's parameters as one frozen configuration, with the widths derived from them."""

from dataclasses import dataclass

from amaranth.lib import data

from golden.noc import CREDIT_ROUND_TRIP

from .signatures import (CrossbarGrantSignature, HeadSignature, NocLinkSignature,
                         OutputVcSignature, PopSignature, RequestSignature, TraversalSignature,
                         dest_bits_for, flit_layout, vc_bits_for)

__all__ = ["RouterConfig", "check_unit", "VCS_ALLOWED", "ROUTINGS"]

VCS_ALLOWED = (1, 2, 4)
ROUTINGS = ("dor", "table")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class RouterConfig:
    """Parameters of one :class:`hdl.noc.NocRouter` (see there for their meaning).

    Validated on construction: ``TypeError`` for a wrong type or an out-of-range value,
    ``ValueError`` for parameters that conflict, each naming the parameter.
    """

    ports: int = 5
    vcs: int = 2
    buffer: int = 8
    payload_width: int = 32
    routing: str = "dor"
    dims: tuple = (4, 4)
    slots: int = 2

    def __post_init__(self):
        ports, vcs, buffer, slots = self.ports, self.vcs, self.buffer, self.slots
        payload_width, routing, dims = self.payload_width, self.routing, self.dims
        if not _is_int(ports) or not 2 <= ports <= 16:
            raise TypeError(f"ports must be an integer from 2 to 16, not {ports!r}")
        if vcs not in VCS_ALLOWED or isinstance(vcs, bool):
            raise TypeError(f"vcs must be one of 1, 2, 4, not {vcs!r}")
        if not _is_int(buffer) or not 1 <= buffer <= 256:
            raise TypeError(f"buffer must be an integer from 1 to 256, not {buffer!r}")
        if buffer < CREDIT_ROUND_TRIP:
            raise ValueError(f"buffer must be at least the credit round trip of "
                             f"{CREDIT_ROUND_TRIP} flits, not {buffer!r}")
        if not _is_int(payload_width) or not 1 <= payload_width <= 1024:
            raise TypeError(f"payload_width must be an integer from 1 to 1024, not {payload_width!r}")
        if routing not in ROUTINGS:
            raise TypeError(f"routing must be one of dor, table, not {routing!r}")
        if not isinstance(dims, tuple) or len(dims) not in (2, 3) or \
                not all(_is_int(d) and 1 <= d <= 64 for d in dims):
            raise TypeError(f"dims must be a tuple of 2 or 3 integers from 1 to 64, not {dims!r}")
        if routing == "dor" and ports != 1 + 2 * len(dims):
            raise ValueError(f"ports must be {1 + 2 * len(dims)} for dimension-order routing "
                             f"on dims {dims!r}, not {ports!r}")
        if not _is_int(slots) or not 1 <= slots <= buffer:
            raise TypeError(f"slots must be an integer from 1 to buffer ({buffer}), not {slots!r}")

    @property
    def n_nodes(self):
        n = 1
        for d in self.dims:
            n *= d
        return n

    @property
    def dest_bits(self):
        return dest_bits_for(self.n_nodes)

    @property
    def port_bits(self):
        return max(1, (self.ports - 1).bit_length())

    @property
    def vc_bits(self):
        return vc_bits_for(self.vcs)

    @property
    def tracked_slots(self):
        """Destination slots per output VC that the hardware keeps (0 with one VC: the
        ordering rule is needed only when a packet can choose between VCs)."""
        return self.slots if self.vcs > 1 else 0

    def output_vcs(self, port):
        """VCs of output ``port``: 1 for the ejection port 0, ``vcs`` for the links."""
        return 1 if port == 0 else self.vcs

    @property
    def flit_layout(self):
        return flit_layout(dest_bits=self.dest_bits, payload_width=self.payload_width)

    @property
    def coord_layout(self):
        dims3 = tuple(self.dims) + (1,) * (3 - len(self.dims))
        return data.StructLayout({a: range(d) for a, d in zip("xyz", dims3)})

    @property
    def routes_layout(self):
        return data.ArrayLayout(self.port_bits, self.n_nodes)

    # The bundles between the router's units (:mod:`hdl.noc.signatures`).
    @property
    def link_signature(self):
        return NocLinkSignature(vcs=self.vcs, dest_bits=self.dest_bits,
                                payload_width=self.payload_width)

    @property
    def head_signature(self):
        return HeadSignature(flit=self.flit_layout, ports=self.ports)

    @property
    def request_signature(self):
        return RequestSignature(ports=self.ports, vcs=self.vcs)

    @property
    def pop_signature(self):
        return PopSignature(vcs=self.vcs)

    @property
    def grant_signature(self):
        return CrossbarGrantSignature(ports=self.ports, vcs=self.vcs)

    @property
    def traversal_signature(self):
        return TraversalSignature(flit=self.flit_layout, vcs=self.vcs)

    def output_vc_signature(self, port):
        """The state of one VC of output ``port`` (no destination slots on the ejection
        port, nor with one VC)."""
        return OutputVcSignature(dest_bits=self.dest_bits,
                                 slots=0 if port == 0 else self.tracked_slots)


def check_unit(config, port=None):
    """Check the arguments of a router unit: a :class:`RouterConfig` and, for a per-port
    unit, a port number (``TypeError`` naming the argument)."""
    if not isinstance(config, RouterConfig):
        raise TypeError(f"Config must be a RouterConfig, not {config!r}")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or
                             not 0 <= port < config.ports):
        raise TypeError(f"Port must be an integer from 0 to {config.ports - 1}, not {port!r}")
