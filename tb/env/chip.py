"""Chip test environment: the host side of :class:`hdl.chip.AtleusChip` (command vectors,
matrices in core memory, the host port's cocotb driver and monitor: :class:`ChipBench`), and
the test fixture :class:`PlaceholderChip` (the chip with trivial memory cores,
:class:`MemCore`, that prove the shell, fence, loopback and host port through the real NoC).

``MemCore`` and ``PlaceholderChip`` are test fixtures only: never registered as blocks, never
used by the chip itself.
"""

import math
import os

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from golden.chip import REGRESSION_CHIP
from hdl.chip.node import (ELEM_WIDTH, HOST_FIRST, WAIT_BITS, addr_bits, command_port,
                           vector_layout, write_layout)
from hdl.chip.top import AtleusChip, chip_ni_config
from hdl.noc.network_interface import receive_layout, send_layout

__all__ = ["MemCore", "PlaceholderChip", "mem_command", "command_vector", "matrix_words",
           "words_to_matrix", "ChipBench", "PLACEHOLDER_PIM_WORDS", "chip_verilog",
           "build_chip", "HIER_BLOCKS", "TOP"]

#: The chip's top module name.
TOP = "atleus_chip"
#: Shared cell modules verilated as hierarchical blocks when the chip is built hierarchically
#: (:func:`tb.runner.choose_hier_blocks`): the tiles, the systolic rows and the routers. The
#: cores stay in the flat part, so the analog macros' public signals (beside the tiles in
#: each PimCore) remain reachable.
HIER_BLOCKS = ("pim_tile", "systolic_row", "noc_router")

MASK = (1 << ELEM_WIDTH) - 1
#: Memory words of the placeholder cores on ReRAM tiers.
PLACEHOLDER_PIM_WORDS = 64


# --------------------------------------------------------------------------------------------
# Host-side formats (shared by every core class)

def command_vector(L, wait, command):
    """The lanes (unsigned 16-bit) of a command vector: ``wait`` in lane 0, the command's
    bits (an int, as the core's ``encode_command`` gives it) from bit 16 up."""
    if not 0 <= wait < (1 << WAIT_BITS):
        raise ValueError(f"Wait must be from 0 to {(1 << WAIT_BITS) - 1}, not {wait!r}")
    if command < 0 or command.bit_length() > L * ELEM_WIDTH - WAIT_BITS:
        raise ValueError(f"Command must be a non-negative int of at most "
                         f"{L * ELEM_WIDTH - WAIT_BITS} bits")
    word = wait | command << WAIT_BITS
    return [(word >> (ELEM_WIDTH * k)) & MASK for k in range(L)]


def matrix_words(matrix, L):
    """The memory words of an ``R x C`` integer matrix (the chip's one convention: row-major,
    ``ceil(C / L)`` words per row, element (r, c) in word ``r * ceil(C / L) + c // L``, lane
    ``c % L``, zero lanes above C), as lists of unsigned 16-bit lanes."""
    rows = [list(r) for r in matrix]
    C = len(rows[0]) if rows else 0
    per_row = -(-C // L)
    out = []
    for r in rows:
        padded = [int(v) & MASK for v in r] + [0] * (per_row * L - C)
        out += [padded[k * L:(k + 1) * L] for k in range(per_row)]
    return out


def words_to_matrix(words, R, C, L):
    """Inverse of :func:`matrix_words`: signed ``R x C`` nested lists from the words."""
    per_row = -(-C // L)
    out = []
    for r in range(R):
        lanes = [v for k in range(per_row) for v in words[r * per_row + k]]
        out.append([v - (1 << ELEM_WIDTH) if v >> (ELEM_WIDTH - 1) else v for v in lanes[:C]])
    return out


# --------------------------------------------------------------------------------------------
# Test fixture: a trivial memory core with the chip's core interface

class MemCore(wiring.Component):
    """TEST FIXTURE (not a block): a memory with the chip's core interface.

    ``wr`` writes one word (always ready). A command ``{count, src, dest, dest_addr}`` sends
    words ``src .. src + count - 1`` on ``o`` to node ``dest`` with tag offsets
    ``dest_addr ..`` (layer 0, stage 0), one per cycle while ``o`` is ready. A command with
    ``count`` 0 or reading past ``mem_words`` is refused: sticky ``error``, nothing sent.
    """

    @staticmethod
    def command_layout(ni, mem_words):
        return data.StructLayout({"count": 16, "src": 16, "dest": ni.dest_bits,
                                  "dest_addr": ni.offset_bits})

    def __init__(self, *, ni, mem_words):
        self._ni, self._mem_words = ni, mem_words
        super().__init__({
            "cmd": In(stream.Signature(self.command_layout(ni, mem_words))),
            "wr": In(stream.Signature(write_layout(ni, mem_words))),
            "o": Out(stream.Signature(send_layout(ni))),
            "busy": Out(1),
            "error": Out(1),
        })

    ni = property(lambda self: self._ni)
    mem_words = property(lambda self: self._mem_words)

    def elaborate(self, platform):
        m = Module()
        ni, W = self._ni, self._mem_words
        m.submodules.mem = mem = Memory(shape=vector_layout(ni), depth=W, init=[])
        wp = mem.write_port()
        rp = mem.read_port(domain="comb")
        m.d.comb += [wp.addr.eq(self.wr.payload.addr), wp.data.eq(self.wr.payload.data),
                     wp.en.eq(self.wr.valid), self.wr.ready.eq(1)]
        count = Signal(17)
        src = Signal(addr_bits(W) + 1)
        dest = Signal(ni.dest_bits)
        dest_addr = Signal(ni.offset_bits)
        error = Signal()
        m.d.comb += [
            rp.addr.eq(src),
            self.o.valid.eq(count != 0),
            self.o.payload.data.eq(rp.data),
            self.o.payload.dest.eq(dest),
            self.o.payload.tag.offset.eq(dest_addr),
            self.cmd.ready.eq(count == 0),
            self.busy.eq(count != 0),
            self.error.eq(error),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [count.eq(count - 1), src.eq(src + 1), dest_addr.eq(dest_addr + 1)]
        p = self.cmd.payload
        with m.If(self.cmd.valid & self.cmd.ready):
            with m.If((p.count == 0) | (p.src + p.count > W)):
                m.d.sync += error.eq(1)
            with m.Else():
                m.d.sync += [count.eq(p.count), src.eq(p.src), dest.eq(p.dest),
                             dest_addr.eq(p.dest_addr)]
        return m


def mem_command(ni, count, src, dest, dest_addr):
    """The command bits of a :class:`MemCore` SEND (``count`` words from ``src`` to
    ``dest``/``dest_addr``)."""
    from tb.packing import pack
    return pack(MemCore.command_layout(ni, 1), {"count": count, "src": src, "dest": dest,
                                                "dest_addr": dest_addr})


class PlaceholderChip(AtleusChip):
    """TEST FIXTURE (not a block): :class:`hdl.chip.AtleusChip` with :class:`MemCore` s on
    every node (tier 0: ``systolic_mem_words`` words, ReRAM tiers ``PLACEHOLDER_PIM_WORDS``)."""

    def core_spec(self, tier):
        return MemCore, self.systolic_mem_words if tier == 0 else PLACEHOLDER_PIM_WORDS, ()


# --------------------------------------------------------------------------------------------
# The Verilated chip

def chip_verilog(config=REGRESSION_CHIP, *, chip=None):
    """The Verilog of ``AtleusChip(config)`` (or of ``chip``) with the behavioural model of
    its tiles' analog crossbar macro (:func:`tb.env.pim_core.crossbar_macro_verilog`: the code
    store a :class:`tb.env.pim_core.MacroServer` answers from the golden crossbars)."""
    from hdl.verilog import generate
    from tb.env.pim_core import crossbar_macro_verilog
    chip = AtleusChip(config) if chip is None else chip
    text = generate(chip, TOP)
    if "reram_crossbars_" in text:
        text += crossbar_macro_verilog(config.tile)
    return text


def build_chip(config=REGRESSION_CHIP, *, name="chip_regression", verilog=None):
    """Build (cached) the Verilator model of the chip: top ports public (and the macros'
    code stores), hierarchical by :func:`tb.runner.choose_hier_blocks` with
    :data:`HIER_BLOCKS`. Returns ``(build folder, verilog, hier_blocks)``."""
    from tb import runner
    verilog = chip_verilog(config) if verilog is None else verilog
    hier = runner.choose_hier_blocks(verilog, TOP, HIER_BLOCKS)
    return runner.build(verilog, TOP, name=name, top_only=True, hier_blocks=hier), verilog, hier


# --------------------------------------------------------------------------------------------
# cocotb bench of the host port

class ChipBench:
    """cocotb bench of an :class:`hdl.chip.AtleusChip` top (``host_i``, ``host_o``,
    ``error``, ``busy``): clock, reset, a driver on ``host_i`` and a monitor on ``host_o``.

    The host keeps, per node, the number of memory writes it has caused (its own vectors
    and, through :meth:`expect_writes`, those of core commands it issued), which is what a
    command's ``wait`` fence needs (:meth:`command` with ``wait=None`` uses that count).

    Parameters
    ----------
    dut : the cocotb handle of the chip top.
    config : golden.chip.ChipConfig
    idle, backpressure : float
        Random idle cycles on ``host_i`` and backpressure on ``host_o``.
    seed : int
    """

    def __init__(self, dut, config=REGRESSION_CHIP, *, idle=0.0, backpressure=0.0, seed=0):
        self.dut = dut
        self.config = config
        self.ni = chip_ni_config(config)
        self.L = self.ni.length
        self.nodes = self.ni.nodes
        self.idle, self.backpressure, self.seed = idle, backpressure, seed
        self.send_layout = send_layout(self.ni)
        self.receive_layout = receive_layout(self.ni)
        self.writes = [0] * self.nodes
        self.cycle = 0

    async def start(self):
        """Start the clock, the driver and the monitor; reset."""
        import cocotb
        from cocotb.clock import Clock
        from tb.cocotb_streams import StreamDriver, StreamMonitor, reset_dut
        dut = self.dut
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        self.driver = StreamDriver(dut, "host_i", self.send_layout, idle=self.idle,
                                   seed=self.seed)
        self.monitor = StreamMonitor(dut, "host_o", self.receive_layout,
                                     backpressure=self.backpressure, seed=self.seed + 1)
        await reset_dut(dut, cycles=3)

    def send_vector(self, dest, offset, lanes, *, layer=0, stage=0):
        """Queue one vector (unsigned 16-bit ``lanes``) to node ``dest`` at tag ``offset``."""
        self.driver.send({"data": [int(v) & MASK for v in lanes], "dest": dest,
                          "tag": {"layer": layer, "stage": stage, "offset": offset}})

    def write_words(self, node, addr, words):
        """Queue memory writes of ``words`` (lists of lanes) to ``node`` from ``addr`` on."""
        for k, w in enumerate(words):
            self.send_vector(node, addr + k, w)
        self.writes[node] += len(words)

    def write_matrix(self, node, base, matrix):
        """Queue the words of an integer matrix (:func:`matrix_words`) into ``node``'s
        memory at word ``base``; returns the number of words."""
        words = matrix_words(matrix, self.L)
        self.write_words(node, base, words)
        return len(words)

    def expect_writes(self, node, count):
        """Account ``count`` writes into ``node``'s memory caused by a core's command."""
        self.writes[node] += count

    def command(self, node, command, *, wait=None):
        """Queue a command (the core's command bits, an int) to ``node``, fenced on ``wait``
        writes (default: every write the host knows of so far)."""
        wait = self.writes[node] if wait is None else wait
        self.send_vector(node, command_port(self.ni), command_vector(self.L, wait % (1 << 16),
                                                                     command))

    def core(self, node):
        """The Python object of ``node``'s core (its class and parameters as in the chip, not
        elaborated): ``.config`` is the golden configuration its ``encode_command`` takes
        (:class:`golden.systolic_core.CoreConfig` with ``node`` = this node, or
        :class:`golden.pim_core.CoreConfig`)."""
        X, Y, _ = self.config.dims
        chip = self.chip
        cls, mem_words, args = chip.core_spec(0 if node < X * Y else 1)
        kwargs = dict(args)
        if cls.__name__ == "SystolicCore":
            kwargs["node"] = node
        return cls(ni=self.ni, mem_words=mem_words, **kwargs)

    @property
    def chip(self):
        """The :class:`hdl.chip.AtleusChip` of the bench's configuration (not elaborated)."""
        if getattr(self, "_chip", None) is None:
            self._chip = AtleusChip(self.config)
        return self._chip

    def start_macros(self):
        """One :class:`tb.env.pim_core.MacroServer` per tile of every ReRAM core (the golden
        crossbars answering each tile's analog macro): ``{(node, tile): server}``; program a
        tile's crossbars with ``servers[(node, k)].analog.program(mapping)``."""
        from tb.env.pim_core import MacroServer
        X, Y, Z = self.config.dims
        self.servers = {}
        for z in range(1, Z):
            for y in range(Y):
                for x in range(X):
                    node = self.config.node(x, y, z)
                    core = getattr(self.dut, f"node_{x}_{y}_{z}").core
                    for k in range(self.config.tiles_per_core):
                        self.servers[(node, k)] = MacroServer(
                            getattr(core, f"xbars{k}"), self.dut.clk, self.config.tile,
                            name=f"node {node} tile {k}")
        return self.servers

    def sim_cycles(self):
        """Clock cycles since the bench started (cocotb simulation time / period)."""
        from cocotb.utils import get_sim_time
        return int(get_sim_time(unit="ns") // 10)

    async def receive(self, count, *, timeout=100000):
        """Wait for ``count`` vectors on ``host_o`` and return them (popped) as
        ``[(offset, lanes)]``."""
        await self.monitor.wait_received(count, timeout=timeout)
        out = []
        for _ in range(count):
            item = self.monitor.received.popleft()
            out.append((item["tag"]["offset"], list(item["data"])))
        return out

    async def read_matrix(self, R, C, *, base=HOST_FIRST, timeout=100000):
        """Receive the ``R x C`` matrix a core sends to the host window at ``base`` (words in
        any order, placed by their offsets) as signed nested lists."""
        per_row = -(-C // self.L)
        got = await self.receive(R * per_row, timeout=timeout)
        words = [None] * (R * per_row)
        for offset, lanes in got:
            k = offset - base
            assert 0 <= k < len(words) and words[k] is None, f"unexpected offset {offset:#x}"
            words[k] = lanes
        return words_to_matrix(words, R, C, self.L)

    async def idle_until_quiet(self, *, timeout=100000):
        """Wait until every queued host vector has gone and no core is busy."""
        from cocotb.triggers import ClockCycles
        await self.driver.wait_sent()
        for _ in range(timeout // 10):
            await ClockCycles(self.dut.clk, 10)
            if not self.dut.busy.value.to_unsigned():
                return
        raise AssertionError(f"cores still busy after {timeout} cycles")

    def errors(self):
        """The ``error`` bits as an int."""
        return self.dut.error.value.to_unsigned()


def env_int(name, default):
    return int(os.environ.get(name, default))
