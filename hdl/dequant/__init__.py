"""Atleus crossbar-wise dequantization periphery: shift-and-add, dequantizer, aggregator."""

from .aggregator import Aggregator
from .dequantizer import Dequantizer
from .shift_add import ShiftAddAccumulator
from .top import ShiftAddDequantizer

__all__ = ["ShiftAddAccumulator", "Dequantizer", "Aggregator", "ShiftAddDequantizer"]
