"""Output-stationary systolic array (Atleus' 128x32 OS cores)."""

from .array import SystolicArray
from .core import SystolicCore
from .pe import SystolicPe

__all__ = ["SystolicArray", "SystolicCore", "SystolicPe"]
