"""cocotb drivers and monitors for Amaranth ``stream.Signature`` ports.

Ports appear in the Verilog as ``<name>__valid``, ``<name>__ready``, ``<name>__payload``.
Drivers insert random idle cycles, monitors random backpressure; both are seeded. Inputs
change at the falling edge; the handshake is sampled in the read-only phase of that same
falling edge, so what is read is exactly what the next rising edge sees (sampling after the
rising edge would read the registers' new state instead). Once a driver raises ``valid`` it
holds the payload until the transfer (the stream rule).
"""

import random
from collections import deque

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from .packing import pack, unpack

__all__ = ["StreamDriver", "StreamMonitor", "reset_dut"]


async def reset_dut(dut, cycles=2):
    """Hold ``rst`` for ``cycles`` rising edges; returns at a falling edge."""
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


class StreamDriver:
    """Sends payloads on a stream input of the DUT, with random idle cycles.

    Parameters
    ----------
    dut : the DUT handle.
    name : the port name (``i`` -> ``i__valid``, ``i__ready``, ``i__payload``).
    layout : the payload's Amaranth shape or layout (payloads are packed with
        :func:`tb.packing.pack`), or None to write integers unchanged.
    idle : probability of an idle cycle before each payload.
    seed : seed of the idle pattern.
    """

    def __init__(self, dut, name, layout=None, *, idle=0.0, seed=0):
        self._clk = dut.clk
        self._valid = getattr(dut, f"{name}__valid")
        self._ready = getattr(dut, f"{name}__ready")
        self._payload = getattr(dut, f"{name}__payload", None)
        self._layout = layout
        self.idle_probability = idle
        self._rng = random.Random(seed)
        self._queue = deque()
        self._valid.value = 0
        self.sent = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, payload):
        self._queue.append(payload)

    @property
    def pending(self):
        return len(self._queue)

    def kill(self):
        self._task.cancel()
        self._valid.value = 0

    async def _run(self):
        await FallingEdge(self._clk)
        holding = False
        while True:
            if not holding and self._queue and self._rng.random() >= self.idle_probability:
                item = self._queue[0]
                if self._payload is not None:
                    self._payload.value = (pack(self._layout, item) if self._layout is not None
                                           else int(item))
                holding = True
            self._valid.value = int(holding)
            await ReadOnly()
            if holding and self._ready.value:
                self._queue.popleft()
                self.sent += 1
                holding = False
            await RisingEdge(self._clk)
            await FallingEdge(self._clk)


class StreamMonitor:
    """Receives payloads from a stream output of the DUT, with random backpressure.

    Received payloads (unpacked with :func:`tb.packing.unpack` when a layout is given)
    collect in ``received`` with the cycle of the transfer in ``cycles``.

    Parameters
    ----------
    backpressure : probability that ``ready`` is low in a cycle.
    """

    def __init__(self, dut, name, layout=None, *, backpressure=0.0, seed=1):
        self._clk = dut.clk
        self._valid = getattr(dut, f"{name}__valid")
        self._ready = getattr(dut, f"{name}__ready")
        self._payload = getattr(dut, f"{name}__payload", None)
        self._layout = layout
        self.backpressure = backpressure
        self._rng = random.Random(seed)
        self.received = deque()
        self.cycles = deque()
        self.cycle = 0
        self._ready.value = 0
        self._task = cocotb.start_soon(self._run())

    def kill(self):
        self._task.cancel()

    async def _run(self):
        await FallingEdge(self._clk)
        while True:
            ready = self._rng.random() >= self.backpressure
            self._ready.value = int(ready)
            await ReadOnly()
            if ready and self._valid.value:
                word = self._payload.value.to_unsigned() if self._payload is not None else 0
                self.received.append(unpack(self._layout, word) if self._layout is not None
                                     else word)
                self.cycles.append(self.cycle)
            await RisingEdge(self._clk)
            self.cycle += 1
            await FallingEdge(self._clk)
