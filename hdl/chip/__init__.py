"""The Atleus chip: :class:`AtleusChip` (cores on the NoC, host port at node 0) and the
:class:`CoreNode` shell around each core (network interface, receive demux, command fence,
loopback)."""

from .node import CoreNode
from .top import AtleusChip, chip_ni_config

__all__ = ["AtleusChip", "CoreNode", "chip_ni_config"]
