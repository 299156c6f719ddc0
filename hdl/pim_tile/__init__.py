"""The ReRAM PIM tile (:class:`PimTile`) and its stages.

- :mod:`.sequencer`: :class:`PlaneSequencer` (configuration port, input double buffer, plane
  broadcast, lockstep plane commands) and :class:`ConfigDecoder` (per-crossbar and per-group
  register strobes);
- :mod:`.channel`: :class:`PimChannel`, one per crossbar (row drive, SAR-ADC controllers, code
  tags);
- :mod:`.group`: :class:`TileGroup`, one per group of crossbars (shift-and-add, dequantizer);
- :mod:`.accumulator`: :class:`OutputAccumulator` (partial sums into the output vector);
- :mod:`.layouts`: payload layouts and the hardware view of the register map of
  :mod:`golden.pim_tile`;
- :mod:`.tile`: :class:`PimTile`, which only instantiates and connects the stages;
- :mod:`.core`: :class:`PimCore`, tiles, a local memory and the command sequencer of a ReRAM
  core of the chip.
"""

from .accumulator import OutputAccumulator
from .channel import PimChannel
from .group import TileGroup
from .layouts import (CfgField, beat_layout, bus_layout, cfg_layout, input_layout, mode_layout,
                      output_layout, xbar_cfg_layout)
from .sequencer import ConfigDecoder, PlaneSequencer
from .tile import PimTile
from .core import PimCore

__all__ = ["PimTile", "PimCore", "PlaneSequencer", "ConfigDecoder", "PimChannel", "TileGroup",
           "OutputAccumulator", "CfgField", "cfg_layout", "xbar_cfg_layout", "mode_layout",
           "input_layout", "output_layout", "beat_layout", "bus_layout"]
