"""cocotb drivers and monitors for Amaranth ``stream.Signature`` ports, woken by events.

Ports appear in the Verilog as ``<name>__valid``, ``<name>__ready``, ``<name>__payload``.
Drivers insert random idle cycles, monitors random backpressure; both are seeded. Inputs
change at the falling edge; the handshake is sampled in the read-only phase of that same
falling edge, so what is read is exactly what the next rising edge sees (sampling after the
rising edge would read the registers' new state instead). Once a driver raises ``valid`` it
holds the payload until the transfer (the stream rule).

Python work per simulated cycle is what limits a cocotb run, so nothing here runs in a cycle
where nothing can happen:

- a driver whose queue is empty sleeps until :meth:`StreamDriver.send`; one holding a
  payload that the DUT does not accept sleeps until ``ready`` changes;
- a monitor sleeps until ``valid`` rises (without backpressure ``ready`` is raised once and
  stays high; with backpressure, ``ready`` is drawn afresh in each cycle in which ``valid``
  is high, and holds its value while the stream is idle);
- a signal is written only when its value changes (``valid`` stays high across back-to-back
  payloads).

After waking on an edge of ``ready`` or ``valid`` a coroutine samples at the next falling
edge's read-only phase (or the current one, when the edge came in the clock's low phase).
A transfer's cycle number (``cycles``) counts falling edges since the stream started; the
clock period for it is measured over the first two cycles, which are always sampled.

Where every cycle must be sampled anyway (a bench that records every handshake), a
:class:`CycleLoop` runs one coroutine per cycle for any number of drivers, monitors and
recorders: pass ``loop=`` to the streams and :meth:`CycleLoop.on_sample` for the rest.
"""

import random
from collections import deque

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, FallingEdge, ReadOnly, RisingEdge, Timer, First

from .packing import pack, unpack

__all__ = ["StreamDriver", "StreamMonitor", "CycleLoop", "reset_dut"]


async def reset_dut(dut, cycles=2):
    """Hold ``rst`` for ``cycles`` rising edges; returns at a falling edge."""
    dut.rst.value = 1
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


class CycleLoop:
    """One coroutine per clock cycle for every stream and recorder that samples each cycle.

    At each falling edge the loop calls the drive hooks (writes), then at that edge's
    read-only phase the sample hooks (reads, in registration order). ``cycle`` counts the
    falling edges since the loop started (0 at the first).

    Parameters
    ----------
    clk : the clock handle.
    """

    def __init__(self, clk):
        self._clk = clk
        self._drive = []
        self._sample = []
        self.cycle = -1
        self.period = None        # clock period in simulator steps, known after two cycles
        self._task = cocotb.start_soon(self._run())

    def on_drive(self, hook):
        """Call ``hook()`` at every falling edge (before the read-only phase); returns it."""
        self._drive.append(hook)
        return hook

    def on_sample(self, hook):
        """Call ``hook()`` in every falling edge's read-only phase (no writes); returns it."""
        self._sample.append(hook)
        return hook

    def remove(self, hook):
        for hooks in (self._drive, self._sample):
            if hook in hooks:
                hooks.remove(hook)

    def kill(self):
        self._task.cancel()

    async def _run(self):
        falling, read_only = FallingEdge(self._clk), ReadOnly()
        t0 = None
        while True:
            await falling
            self.cycle += 1
            if self.period is None:
                if t0 is None:
                    t0 = get_sim_time()
                else:
                    self.period = get_sim_time() - t0
            for hook in self._drive:
                hook()
            await read_only
            for hook in self._sample:
                hook()


class _Stream:
    """What drivers and monitors share: handles, cycle numbering, the settle step."""

    def __init__(self, dut, name, layout, seed, loop):
        self._clk = dut.clk
        self._valid = getattr(dut, f"{name}__valid")
        self._ready = getattr(dut, f"{name}__ready")
        self._payload = getattr(dut, f"{name}__payload", None)
        self._layout = layout
        self._rng = random.Random(seed)
        self._loop = loop
        self._falling = FallingEdge(self._clk)
        self._read_only = ReadOnly()
        self._t0 = None           # sim time of the first falling edge
        self._period = None       # clock period in simulator steps
        self.cycles = deque()     # cycle of each transfer
        self._task = None

    @property
    def cycle(self):
        """Falling edges since the stream started (0 at the first), or -1 before it."""
        if self._loop is not None:
            return self._loop.cycle
        if self._t0 is None:
            return -1
        if self._period is None:
            return 0
        return (get_sim_time() - self._t0) // self._period

    @property
    def period(self):
        """The clock period in simulator steps (None until two falling edges have passed)."""
        return self._loop.period if self._loop is not None else self._period

    async def _first_edge(self):
        await self._falling
        self._t0 = get_sim_time()

    async def _next_edge(self):
        """The next falling edge; the second one measures the clock period."""
        await self._falling
        if self._period is None:
            self._period = get_sim_time() - self._t0

    async def _settle(self):
        """After an edge of ``valid``/``ready``: reach the falling edge whose read-only phase
        samples it (the next one, or the current cycle when the edge came in the clock's low
        phase: writes there are still allowed)."""
        if self._clk.value:
            await self._falling

    async def _wait_cycles(self, n):
        """Sleep ``n`` cycles from a falling edge to a falling edge, one trigger."""
        if n == 1:
            await self._falling
        else:
            await Timer(n * self._period - 1, unit="step")
            await self._falling


class StreamDriver(_Stream):
    """Sends payloads on a stream input of the DUT, with random idle cycles.

    Parameters
    ----------
    dut : the DUT handle.
    name : the port name (``i`` -> ``i__valid``, ``i__ready``, ``i__payload``).
    layout : the payload's Amaranth shape or layout (payloads are packed with
        :func:`tb.packing.pack`), or None to write integers unchanged.
    idle : probability of an idle cycle before each payload.
    seed : seed of the idle pattern.
    loop : :class:`CycleLoop`, optional
        Run inside that loop (sampled every cycle) instead of a coroutine of its own that
        sleeps while nothing can happen.

    Members
    -------
    sent : payloads transferred.
    cycles : deque of each transfer's cycle.
    valid : the value the driver drives on ``valid`` (no simulator read).
    payload_word : the packed payload last written (it stays on the port after a transfer).
    """

    def __init__(self, dut, name, layout=None, *, idle=0.0, seed=0, loop=None):
        super().__init__(dut, name, layout, seed, loop)
        self.idle_probability = idle
        self._queue = deque()
        self._wake = Event()
        self._valid.value = 0
        self._valid_now = 0
        self._holding = False
        self.payload_word = 0     # the packed payload last written (held after a transfer)
        self.sent = 0
        self._empty = Event()
        self._empty.set()
        if loop is None:
            self._task = cocotb.start_soon(self._run())
        else:
            loop.on_drive(self._drive)
            loop.on_sample(self._sample)

    def send(self, payload):
        """Queue one payload (a value for ``layout``)."""
        self._queue.append(payload)
        self._empty.clear()
        self._wake.set()

    def send_many(self, payloads):
        """Queue several payloads."""
        self._queue.extend(payloads)
        if self._queue:
            self._empty.clear()
            self._wake.set()

    @property
    def pending(self):
        """Payloads queued or held, not yet transferred."""
        return len(self._queue)

    async def wait_sent(self):
        """Return once every queued payload has been transferred."""
        if self._queue:
            await self._empty.wait()

    def kill(self):
        """Stop driving; ``valid`` goes low."""
        if self._task is not None:
            self._task.cancel()
        if self._loop is not None:
            self._loop.remove(self._drive)
            self._loop.remove(self._sample)
        self._valid.value = 0

    @property
    def valid(self):
        return self._valid_now

    def _set_valid(self, value):
        if value != self._valid_now:
            self._valid.value = value
            self._valid_now = value

    def _idle_cycles(self, limit):
        """Idle cycles before the next payload: one draw per cycle, up to ``limit``."""
        n = 0
        while n < limit and self.idle_probability and self._rng.random() < self.idle_probability:
            n += 1
        return n

    def _present(self):
        """At a falling edge: hold the next payload with ``valid`` high."""
        if self._payload is not None:
            item = self._queue[0]
            self.payload_word = pack(self._layout, item) if self._layout is not None else int(item)
            self._payload.value = self.payload_word
        self._set_valid(1)
        self._holding = True
        return True

    def _transferred(self, cycle):
        self._queue.popleft()
        self.sent += 1
        self.cycles.append(cycle)
        self._holding = False
        if not self._queue:
            self._empty.set()

    # loop mode
    def _drive(self):
        if not self._holding:
            if self._queue and not self._idle_cycles(1):
                self._present()
            else:
                self._set_valid(0)

    def _sample(self):
        if self._holding and self._ready.value:
            self._transferred(self._loop.cycle)

    # own coroutine
    async def _run(self):
        await self._first_edge()
        ready_edge = RisingEdge(self._ready)
        while True:                  # at a falling edge: writes allowed
            if not self._queue:
                self._set_valid(0)
                if self._period is None:
                    await self._next_edge()
                    continue
                self._wake.clear()
                await self._wake.wait()
                await self._next_edge()
                continue
            idle = self._idle_cycles(1 if self._period is None else 64)
            if idle:
                self._set_valid(0)
                if idle == 1:
                    await self._next_edge()
                else:
                    await self._wait_cycles(idle)
                if idle == 64 or self._period is None:
                    continue                 # draw again
            self._present()
            await self._read_only
            while not self._ready.value:
                if self._period is None:
                    await self._next_edge()
                else:
                    await ready_edge
                    await self._settle()
                await self._read_only
            self._transferred(self.cycle)
            await self._next_edge()


class StreamMonitor(_Stream):
    """Receives payloads from a stream output of the DUT, with random backpressure.

    Received payloads (unpacked with :func:`tb.packing.unpack` when a layout is given)
    collect in ``received`` with the cycle of the transfer in ``cycles``.

    Parameters
    ----------
    backpressure : probability that ``ready`` is low in a cycle in which ``valid`` is high.
    loop : :class:`CycleLoop`, optional
        Run inside that loop (``ready`` drawn every cycle) instead of a coroutine of its own
        that sleeps until ``valid`` rises.
    """

    def __init__(self, dut, name, layout=None, *, backpressure=0.0, seed=1, loop=None):
        super().__init__(dut, name, layout, seed, loop)
        self.backpressure = backpressure
        self.received = deque()
        self._ready.value = 0
        self._ready_now = 0
        self._count = None
        self._count_event = Event()
        if loop is None:
            self._task = cocotb.start_soon(self._run())
        else:
            loop.on_drive(self._drive)
            loop.on_sample(self._sample)

    def kill(self):
        """Stop receiving (``ready`` keeps its value)."""
        if self._task is not None:
            self._task.cancel()
        if self._loop is not None:
            self._loop.remove(self._drive)
            self._loop.remove(self._sample)

    async def wait_received(self, count, *, timeout=None):
        """Return once ``received`` holds at least ``count`` payloads.

        ``timeout`` in clock cycles; raises AssertionError naming the counts when it passes.
        Sleeps on an event (no coroutine per cycle).
        """
        if len(self.received) >= count:
            return
        self._count = count
        self._count_event.clear()
        if timeout is None:
            await self._count_event.wait()
            return
        while self.period is None:           # the first two cycles
            await self._falling
            timeout -= 1
            if len(self.received) >= count:
                return
        await First(self._count_event.wait(), Timer(max(timeout, 1) * self.period, unit="step"))
        if len(self.received) < count:
            self._count = None
            raise AssertionError(f"{len(self.received)} of {count} payloads received after "
                                 f"{timeout} cycles")

    @property
    def ready(self):
        """The value the monitor drives on ``ready`` (no simulator read)."""
        return self._ready_now

    def _draw_ready(self):
        ready = 1 if not self.backpressure or self._rng.random() >= self.backpressure else 0
        if ready != self._ready_now:
            self._ready.value = ready
            self._ready_now = ready
        return ready

    def _take(self, cycle):
        word = self._payload.value.to_unsigned() if self._payload is not None else 0
        self.received.append(unpack(self._layout, word) if self._layout is not None else word)
        self.cycles.append(cycle)
        if self._count is not None and len(self.received) >= self._count:
            self._count = None
            self._count_event.set()

    # loop mode
    def _drive(self):
        self._draw_ready()

    def _sample(self):
        if self._ready_now and self._valid.value:
            self._take(self._loop.cycle)

    # own coroutine
    async def _run(self):
        await self._first_edge()
        valid_edge = RisingEdge(self._valid)
        while True:                  # at a falling edge, or in the low phase after one
            self._draw_ready()       # writes only when ready changes
            await self._read_only
            if self._valid.value:
                if self._ready_now:
                    self._take(self.cycle)
                await self._next_edge()
                continue
            if self._period is None:
                await self._next_edge()
                continue
            await valid_edge
            await self._settle()
