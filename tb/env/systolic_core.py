"""SystolicCore test environment: load a memory image through ``wr``, run a program from
``cmd``, collect ``o``, with random idle cycles and backpressure, against the golden execution
model of :mod:`golden.systolic_core`. :func:`run_sim` runs the Amaranth simulator
(``tb/test_systolic_core_sim.py``), :class:`CoreBench` a cocotb top level
(``tb/test_systolic_core_verilator.py``).

The core's memory is observed through its own interface: a program ends with ``SEND``
commands of the words to check (:func:`dump`).
"""

import random

import numpy as np
from amaranth import Module, ResetInserter, Signal
from amaranth.sim import Simulator

from golden import systolic_core as gsc
from hdl.systolic.core import SystolicCore
from tb.packing import pack, unpack
from tb.sim_streams import check_stream_rule, stream_get, stream_put

__all__ = ["run_sim", "dump", "random_memory", "compare_sent", "CoreBench", "DUMP_NODE"]

#: The node a test's memory dump is sent to (any node other than the core's).
DUMP_NODE = 3


def dump(cfg, first=0, count=None, *, dest_addr=0x8000):
    """A ``SEND`` of memory words ``first .. first + count - 1`` to :data:`DUMP_NODE`."""
    count = cfg.mem_words - first if count is None else count
    return gsc.encode_command(cfg, "SEND", dest=DUMP_NODE, dest_addr=dest_addr, src=first,
                              count=count)


def random_memory(cfg, rng, *, bits=8):
    """A memory image of ``bits``-bit signed values (sign-extended to 16)."""
    return rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), (cfg.mem_words, cfg.length))


def _draw(r, p):
    k = 0
    while p and r.random() < p and k < 20:
        k += 1
    return k


def run_sim(params, program, memory, *, seed=0, idle=0.0, backpressure=0.0, writes=(),
            load=True, prelude=None, node_id=None, max_cycles=200_000):
    """Run ``program`` (encoded commands) on a :class:`SystolicCore(**params)` whose memory
    is first loaded with ``memory`` through ``wr`` (``load``).

    ``writes``: ``(addr, data)`` written through ``wr`` while the program runs (random
    idle cycles between them), all before the program's last command is offered.
    ``node_id`` drives the core's ``node_id`` port (``node=-1``; the golden model then runs
    as node ``node_id``). ``prelude(ctx, dut, rst)`` runs after the load and before the program (may pulse
    ``rst``, the core's synchronous reset). Commands get ``idle``-distributed idle cycles,
    ``o`` ``backpressure``-distributed stalls.

    Returns ``{"sent": [(dest, layer, offset, data)], "cmd_cycles": [cycle each command was
    accepted, counted from the first command's], "error": [error flag at each acceptance and
    at the end], "rule_checks": stalled cycles in which the stream rule was checked}``.
    """
    dut = SystolicCore(**params)
    cfg = dut.config
    if node_id is not None:
        cfg = gsc.CoreConfig(**{**cfg.__dict__, "node": node_id})
    rst = Signal()
    count = Signal(32)
    m = Module()
    m.submodules.dut = ResetInserter(rst)(dut)
    m.d.sync += count.eq(count + 1)
    wl, ol = dut.wr.payload.shape(), dut.o.payload.shape()
    rng = random.Random(seed)
    r_cmd, r_o, r_wr = (random.Random(rng.random()) for _ in range(3))
    n_sent = len(gsc.run(cfg, program, memory if load else None)[1])
    st = {"loaded": not load and prelude is None, "done": False, "writes_done": not writes}
    out = {"sent": [], "cmd_cycles": [], "error": [], "rule_checks": 0}

    async def wait(ctx, key):
        while not st[key]:
            await ctx.tick()

    async def loader(ctx):
        if node_id is not None:
            ctx.set(dut.node_id, node_id)
        if load:
            for a in range(cfg.mem_words):
                await stream_put(ctx, dut.wr, pack(wl, {"addr": a, "data": memory[a]}))
        if prelude is not None:
            await prelude(ctx, dut, rst)
        st["loaded"] = True
        await ctx.tick()
        for a, d in writes:
            await stream_put(ctx, dut.wr, pack(wl, {"addr": a, "data": d}),
                             idle=_draw(r_wr, 0.5))
        st["writes_done"] = True

    async def commands(ctx):
        await wait(ctx, "loaded")
        t0 = None
        for n, word in enumerate(program):
            if n == len(program) - 1:
                await wait(ctx, "writes_done")
            await stream_put(ctx, dut.cmd, word, idle=_draw(r_cmd, idle))
            now = ctx.get(count) - 1
            t0 = now if t0 is None else t0
            out["cmd_cycles"].append(now - t0)
            out["error"].append(ctx.get(dut.error))
        while ctx.get(dut.busy):
            await ctx.tick()
        out["error"].append(ctx.get(dut.error))
        out["end_cycle"] = ctx.get(count) - t0
        if not n_sent:
            st["done"] = True

    async def receiver(ctx):
        for _ in range(n_sent):
            v = await stream_get(ctx, dut.o, stall=_draw(r_o, backpressure))
            d = unpack(ol, v.as_value().value)
            data = np.array(d["data"], dtype=np.int64)
            data = np.where(data >= 1 << 15, data - (1 << 16), data)
            out["sent"].append((d["dest"], d["tag"]["layer"], d["tag"]["offset"], data))
            assert d["tag"]["stage"] == 0
        st["done"] = True

    async def stream_rule(ctx):
        """``o`` keeps ``valid`` and its payload until the transfer (except across reset)."""
        await check_stream_rule(ctx, dut.o, rst, lambda: st["done"], out)

    async def watchdog(ctx):
        for _ in range(max_cycles):
            if st["done"]:
                return
            await ctx.tick()
        raise AssertionError(f"{len(out['sent'])} of {n_sent} vectors after {max_cycles} "
                             f"cycles")

    sim = Simulator(m)
    sim.add_clock(1e-8)
    for bench in (loader, commands, receiver, stream_rule, watchdog):
        sim.add_testbench(bench)
    sim.run()
    return out


def compare_sent(got, expected):
    """Assert two lists of sent vectors are equal, naming the first difference."""
    assert len(got) == len(expected), f"{len(got)} vectors sent, expected {len(expected)}"
    for n, (g, e) in enumerate(zip(got, expected)):
        assert g[:3] == tuple(int(v) for v in e[:3]) and np.array_equal(g[3], e[3]), \
            f"vector {n}: got {g}, expected {e}"


# -- cocotb -----------------------------------------------------------------------------------

class CoreBench:
    """cocotb bench of one ``systolic_core`` top level: clock, reset, the ``cmd`` and ``wr``
    drivers, the ``o`` monitor and a scoreboard against :mod:`golden.systolic_core`.

    Parameters
    ----------
    dut : the cocotb handle.
    params : dict
        The core's parameters (:class:`hdl.systolic.core.SystolicCore`).
    seed : int
    idle, backpressure : float
        Probability of an idle cycle before each command and write; of ``o.ready`` low.
    node_id : int or None
        Driven on the ``node_id`` port (a core built with ``node=-1``); the golden model runs
        as that node.
    """

    def __init__(self, dut, params, *, seed=0, idle=0.0, backpressure=0.0, node_id=None):
        import cocotb
        from cocotb.clock import Clock
        self.dut = dut
        self.core = SystolicCore(**params)
        self.cfg = self.core.config
        if node_id is not None:
            self.cfg = gsc.CoreConfig(**{**self.cfg.__dict__, "node": node_id})
            dut.node_id.value = node_id
        self.gold = gsc.Core(self.cfg)
        self.seed, self.idle, self.backpressure = seed, idle, backpressure
        for name in ("cmd", "wr"):
            getattr(dut, f"{name}__valid").value = 0
        dut.o__ready.value = 0
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def start(self):
        """Reset, then start the drivers and the monitor."""
        from tb.cocotb_streams import StreamDriver, StreamMonitor, reset_dut
        await reset_dut(self.dut)
        s = self.seed
        self.cmd = StreamDriver(self.dut, "cmd", None, idle=self.idle, seed=s)
        self.wr = StreamDriver(self.dut, "wr", self.core.wr.payload.shape(), idle=self.idle,
                               seed=s + 1)
        self.monitor = StreamMonitor(self.dut, "o", self.core.o.payload.shape(),
                                     backpressure=self.backpressure, seed=s + 2)
        self.expected = []

    def write(self, addr, words):
        """Queue memory writes of ``words`` (rows of ``L`` values) from ``addr`` (the golden
        memory takes them at once: the program's commands must come after them; the shell's
        fence does that in the chip)."""
        for j, w in enumerate(np.asarray(words, dtype=np.int64)):
            self.wr.send({"addr": addr + j, "data": w})
            self.gold.memory[addr + j] = w

    def command(self, word):
        """Queue one command and its expected vectors."""
        n = len(self.gold.sent)
        self.gold.execute(word)
        self.expected.extend(self.gold.sent[n:])
        self.cmd.send(word)

    async def drain(self, timeout=500_000):
        """Wait for every expected vector, then compare them in order."""
        await self.monitor.wait_received(len(self.expected), timeout=timeout)
        got = []
        for d in self.monitor.received:
            data = np.array(d["data"], dtype=np.int64)
            got.append((d["dest"], d["tag"]["layer"], d["tag"]["offset"],
                        np.where(data >= 1 << 15, data - (1 << 16), data)))
            assert d["tag"]["stage"] == 0
        compare_sent(got, self.expected)
        assert int(self.dut.error.value) == int(self.gold.error)
        return got
