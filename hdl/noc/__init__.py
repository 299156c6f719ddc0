"""Network-on-chip: the credit-based wormhole router and the networks built from it."""

from .router import NocRouter, NocLinkSignature, flit_layout, link_flit_layout
from .network import NocNetwork

__all__ = ["NocRouter", "NocLinkSignature", "NocNetwork", "flit_layout", "link_flit_layout"]
