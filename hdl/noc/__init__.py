"""Network-on-chip: the credit-based wormhole router, its units, and the networks built from it.

``router.py`` (:class:`NocRouter`) only instantiates and connects its units:
``input_unit.py``, ``vc_allocator.py``, ``switch_allocator.py``, ``crossbar.py``,
``output_unit.py``; ``config.py`` holds its parameters (:class:`RouterConfig`),
``signatures.py`` the flit formats and the bundles between the units, ``network.py`` the
networks (:class:`NocNetwork`), ``network_interface.py`` a node's interface between vector
streams and packets (:class:`NetworkInterface`).
"""

from .config import RouterConfig
from .network import NocNetwork
from .network_interface import NetworkInterface, NiDepacketizer, NiErrorKind, NiPacketizer
from .router import NocRouter
from .signatures import NocLinkSignature, flit_layout, link_flit_layout

__all__ = ["NocRouter", "NocLinkSignature", "NocNetwork", "RouterConfig", "flit_layout",
           "link_flit_layout", "NetworkInterface", "NiPacketizer", "NiDepacketizer", "NiErrorKind"]
