"""Output-stationary systolic array (Atleus' 128x32 OS cores)."""

from .array import SystolicArray
from .pe import SystolicPe

__all__ = ["SystolicArray", "SystolicPe"]
