"""NonlinearUnit test environment: jobs (a command, its input rows and the words the golden
kernels of :mod:`golden.nonlinear` give), random and extreme job generators, and the two
benches built on them: :func:`run_sim` (Amaranth simulator) and :class:`NonlinearBench` (cocotb).

Used by ``tb/test_nonlinear_sim.py`` and ``tb/test_nonlinear_verilator.py``. Every expected
word comes from a golden call with the golden parameters (``i_softmax(row, scale, ...)``,
``i_layernorm(row, gamma_q, beta_q, ...)``, ``i_gelu(row, **gelu_constants(...))``, the
transformer's residual add); the command is built from the same parameters by the unit's
command builders.
"""

import random
from dataclasses import dataclass, field

import numpy as np
from amaranth import Module, ResetInserter, Signal, signed
from amaranth.sim import Simulator

from golden import nonlinear as nl
from hdl.nonlinear import NonlinearUnit
from tb.packing import pack, unpack
from tb.sim_streams import check_stream_rule, stream_get, stream_put

__all__ = ["Job", "GoldenUnit", "random_jobs", "extreme_jobs", "bad_jobs", "run_sim",
           "NonlinearBench"]


@dataclass
class Job:
    """One command: its payload (a dict for :func:`tb.packing.pack`), the elements it takes on
    ``i`` and ``res``, and the words it must give (``{data, last, error}`` dicts)."""
    cmd: dict
    i: list = field(default_factory=list)
    res: list = field(default_factory=list)
    words: list = field(default_factory=list)
    kind: str = ""


def _row_words(values):
    values = [int(v) for v in values]
    return [{"data": v, "last": int(j == len(values) - 1), "error": 0}
            for j, v in enumerate(values)]


ERROR_WORD = {"data": 0, "last": 1, "error": 1}
ACK_WORD = {"data": 0, "last": 1, "error": 0}


class GoldenUnit:
    """Builds jobs from golden calls and tracks the ``gamma_q`` / ``beta_q`` buffers."""

    def __init__(self, unit):
        self.unit = unit
        self.gamma = np.zeros(unit.max_len, dtype=np.int64)
        self.beta = np.zeros(unit.max_len, dtype=np.int64)

    def softmax(self, row, scale, *, out_bits=8, recip_bits=32):
        row = np.asarray(row, dtype=np.int64)
        p = nl.i_softmax(row[None], scale, out_bits=out_bits, recip_bits=recip_bits)[0]
        return Job(self.unit.softmax_command(len(row), scale, out_bits=out_bits,
                                             recip_bits=recip_bits),
                   i=row.tolist(), words=_row_words(p), kind="softmax")

    def load(self, values, which):
        values = np.asarray(values, dtype=np.int64)
        lo, hi = _full(self.unit.width)
        if values.min() < lo or values.max() > hi:
            raise ValueError(f"{which}_q must fit {self.unit.width} signed bits ({lo} to {hi})")
        getattr(self, which)[:len(values)] = values
        return Job(self.unit.load_command(len(values), which), i=values.tolist(),
                   words=[dict(ACK_WORD)], kind=f"load_{which}")

    def layernorm(self, row, **kw):
        row = np.asarray(row, dtype=np.int64)
        n = len(row)
        y = nl.i_layernorm(row[None], self.gamma[:n], self.beta[:n], **kw)[0]
        return Job(self.unit.layernorm_command(n, **kw), i=row.tolist(), words=_row_words(y),
                   kind="layernorm")

    def gelu(self, row, scale, out_scale, *, out_bits=8, mult_bits=16):
        row = np.asarray(row, dtype=np.int64)
        c = nl.gelu_constants(scale, out_scale, mult_bits=mult_bits)
        g = nl.i_gelu(row, **c, out_bits=out_bits)
        return Job(self.unit.gelu_command(len(row), **c, out_bits=out_bits), i=row.tolist(),
                   words=_row_words(g), kind="gelu")

    def add(self, o, x, *, shift, out_bits):
        o = np.asarray(o, dtype=np.int64)
        x = np.asarray(x, dtype=np.int64)
        r = nl.saturate(o + nl.rshift_round(x, shift), out_bits)    # golden.transformer's r1, r2
        return Job(self.unit.add_command(len(o), shift=shift, out_bits=out_bits), i=o.tolist(),
                   res=x.tolist(), words=_row_words(r), kind="add")


def _full(w):
    return -(1 << (w - 1)), (1 << (w - 1)) - 1


def _random_row(rng, n, w):
    lo, hi = _full(w)
    kind = rng.integers(4)
    if kind == 0:
        return rng.integers(lo, hi + 1, n)
    spread = 1 << int(rng.integers(1, w - 1))
    centre = int(rng.integers(lo // 2, hi // 2 + 1))
    return np.clip(centre + rng.integers(-spread, spread + 1, n), lo, hi)


def random_jobs(gold, rng, count):
    """``count`` random jobs of every function (LayerNorm rows after random gamma/beta loads),
    random lengths up to ``max_len``; golden-valid parameters only."""
    u = gold.unit
    w, lo_w = u.width, None
    jobs = []
    while len(jobs) < count:
        n = int(rng.integers(1, u.max_len + 1))
        kind = rng.choice(["softmax", "layernorm", "gelu", "add"])
        ob = int(rng.integers(2, min(u.out_width, 16) + 1))
        try:
            if kind == "softmax":
                scale = 2.0 ** -float(rng.uniform(3, w - 4))
                jobs.append(gold.softmax(_random_row(rng, n, w), scale, out_bits=ob,
                                         recip_bits=int(rng.integers(ob, 49))))
            elif kind == "layernorm":
                if rng.random() < 0.5 or not jobs:
                    gamma = rng.uniform(-1.5, 2.0, u.max_len)
                    lc = nl.layernorm_constants(gamma, rng.normal(0, 0.5, u.max_len), 2.0 ** -6,
                                                gamma_bits=w - 1)
                    jobs.append(gold.load(lc["gamma_q"], "gamma"))
                    jobs.append(gold.load(np.clip(lc["beta_q"], *_full(w)), "beta"))
                jobs.append(gold.layernorm(_random_row(rng, n, w),
                                           gamma_frac=int(rng.integers(1, w)),
                                           out_scale_log2=-int(rng.integers(0, 10)),
                                           norm_frac=int(rng.integers(6, 16)),
                                           recip_bits=int(rng.integers(16, 49)), out_bits=ob))
            elif kind == "gelu":
                s = 2.0 ** -float(rng.uniform(2, w - 2))
                so = 2.0 ** -float(rng.uniform(2, w - 4))
                jobs.append(gold.gelu(_random_row(rng, n, w), s, so, out_bits=ob))
            else:
                jobs.append(gold.add(_random_row(rng, n, w), _random_row(rng, n, w),
                                     shift=int(rng.integers(-4, 9)), out_bits=ob))
        except ValueError as e:     # a golden overflow bound (too fine a scale): draw again
            if "overflow" not in str(e) and "beyond the 63-bit product" not in str(e):
                raise
            continue
    return jobs


def extreme_jobs(gold):
    """Saturating softmax inputs, all-equal rows, zero variance, the extreme input values."""
    u = gold.unit
    n, w = u.max_len, u.width
    lo, hi = _full(w)
    jobs = []
    spike = np.full(n, lo)
    spike[n // 2] = hi
    for row in (spike, np.full(n, lo), np.full(n, hi), np.full(n, 7),
                np.resize([lo, hi], n), np.clip(np.arange(n) * 97 % 3001 - 1500, lo, hi)):
        jobs.append(gold.softmax(row, 2.0 ** -(w - 6) / np.sqrt(8), out_bits=8, recip_bits=32))
        jobs.append(gold.softmax(row, 2.0 ** -3, out_bits=u.out_width, recip_bits=48))
    # one element: 1.0 saturates
    jobs.append(gold.softmax([hi], 2.0 ** -8, out_bits=8, recip_bits=8))
    jobs.append(gold.load(np.full(n, hi), "gamma"))
    jobs.append(gold.load(np.full(n, lo), "beta"))
    for row in (np.full(n, lo), np.full(n, hi), np.full(n, -3), np.resize([lo, hi], n), spike):
        jobs.append(gold.layernorm(row, gamma_frac=w - 2, out_scale_log2=-4, out_bits=u.out_width))
        jobs.append(gold.layernorm(row, gamma_frac=0, out_scale_log2=-20, norm_frac=0,
                                   recip_bits=48, out_bits=2))      # left shifts
    ext = np.resize([lo, hi, 0, -1, 1, lo + 1, hi - 1], n)
    jobs.append(gold.gelu(ext, 2.0 ** -(w - 6), 2.0 ** -(w - 6), out_bits=u.out_width))
    jobs.append(gold.gelu(ext, 2.0 ** -2, 2.0 ** -(w - 4), out_bits=8))  # saturating outputs
    jobs.append(gold.gelu(ext, 2.0 ** -(w - 2), 2.0 ** 0, out_bits=4))
    jobs.append(gold.add(ext, ext[::-1], shift=-3, out_bits=u.out_width))
    jobs.append(gold.add(ext, ext, shift=0, out_bits=u.out_width))
    jobs.append(gold.add(ext, ext, shift=70, out_bits=8))               # shift > 62: the sign
    return jobs


def bad_jobs(gold):
    """Refused commands (each gives one error word and takes no element)."""
    u = gold.unit
    good = u.softmax_command(1, 2.0 ** -8)
    too_long = (1 << u.max_len.bit_length()) - 1        # the largest length field
    out = []
    changes = [{"length": 0}, {"fn": 6}, {"fn": 7}, {"out_bits": 1}, {"out_bits": u.out_width + 1},
               {"params": {"softmax": {"q_ln2": 0, "q_b": 1, "q_c": 1, "recip_bits": 32}}},
               {"params": {"softmax": {"q_ln2": 5, "q_b": 1, "q_c": 1, "recip_bits": 49}}},
               {"params": {"softmax": {"q_ln2": 5, "q_b": 1, "q_c": 1, "recip_bits": 4}}}]
    changes += [{"length": n} for n in sorted({u.max_len + 1, too_long})
                if u.max_len < n <= too_long]
    for change in changes:
        cmd = dict(good)
        cmd.update(change)
        out.append(Job(cmd, words=[dict(ERROR_WORD)], kind="bad"))
    ln = u.layernorm_command(2, gamma_frac=0, out_scale_log2=0)
    ln["params"]["layernorm"].update(gamma_frac=-128, out_scale_log2=-128, norm_frac=0)
    out.append(Job(ln, words=[dict(ERROR_WORD)], kind="bad"))
    ad = u.add_command(2, shift=0, out_bits=8)
    ad["params"]["add"]["shift"] = -64
    out.append(Job(ad, words=[dict(ERROR_WORD)], kind="bad"))
    ge = u.gelu_command(2, q_clip=1, q_b=0, q_c=0, q_one=0, m=1, r=0)
    ge["params"]["gelu"]["r"] = -100
    out.append(Job(ge, words=[dict(ERROR_WORD)], kind="bad"))
    return out


# -- Amaranth simulator -----------------------------------------------------------------------

def _stream_items(jobs, key):
    return [x for job in jobs for x in getattr(job, key)]


def run_sim(params, jobs, *, seed=0, idle=0.3, backpressure=0.3, prelude=None,
            max_cycles=500_000):
    """Run ``jobs`` through a :class:`NonlinearUnit` in the Amaranth simulator.

    Commands, elements and residuals come from three producer testbenches (random idle
    cycles), words go to a consumer testbench (random backpressure); a checker asserts the
    stream rule on ``o`` in every cycle. ``prelude(ctx, dut,
    rst, cycle)``, if given, runs first alone (the others wait for it) and may pulse ``rst``.

    Returns ``{"words", "cycles", "cmd_cycles", "i_cycles", "rule_checks"}``: received words
    (dicts), the cycle of each transfer (cycle 0 is the first after the prelude) and the
    number of stalled cycles in which the stream rule was checked.
    """
    dut = NonlinearUnit(**params)
    lo, hi = _full(dut.width)
    for job in jobs:
        for x in job.i + job.res:
            if not lo <= x <= hi:
                raise ValueError(f"element {x} of a {job.kind} job does not fit {dut.width} bits")
    rst = Signal()
    count = Signal(32)
    m = Module()
    m.submodules.dut = ResetInserter(rst)(dut)
    m.d.sync += count.eq(count + 1)
    cmd_layout = dut.cmd.payload.shape()
    out_layout = dut.o.payload.shape()
    rng = random.Random(seed)
    rngs = [random.Random(rng.random()) for _ in range(4)]
    n_words = sum(len(j.words) for j in jobs)
    state = {"go": prelude is None, "t0": 0, "done": False}
    out = {"words": [], "cycles": [], "cmd_cycles": [], "i_cycles": [], "rule_checks": 0}

    def draw(r, p):
        k = 0
        while p and r.random() < p and k < 20:
            k += 1
        return k

    async def wait_go(ctx):
        while not state["go"]:
            await ctx.tick()

    async def now(ctx):
        return ctx.get(count) - 1 - state["t0"]

    async def commands(ctx):
        if prelude is not None:
            await prelude(ctx, dut, rst, count)
            state["t0"] = ctx.get(count)
            state["go"] = True
        for job in jobs:
            await stream_put(ctx, dut.cmd, pack(cmd_layout, job.cmd), idle=draw(rngs[0], idle))
            out["cmd_cycles"].append(await now(ctx))

    async def elements(ctx):
        await wait_go(ctx)
        for x in _stream_items(jobs, "i"):
            await stream_put(ctx, dut.i, x, idle=draw(rngs[1], idle))
            out["i_cycles"].append(await now(ctx))

    async def residuals(ctx):
        await wait_go(ctx)
        for x in _stream_items(jobs, "res"):
            await stream_put(ctx, dut.res, x, idle=draw(rngs[2], idle))

    async def words(ctx):
        await wait_go(ctx)
        for _ in range(n_words):
            payload = await stream_get(ctx, dut.o, stall=draw(rngs[3], backpressure))
            out["words"].append(unpack(out_layout, payload.as_value().value))
            out["cycles"].append(await now(ctx))
        state["done"] = True

    async def stream_rule(ctx):
        """``o`` keeps ``valid`` and its payload until the transfer (except across reset)."""
        await check_stream_rule(ctx, dut.o, rst, lambda: state["done"], out)

    async def watchdog(ctx):
        for _ in range(max_cycles):
            if state["done"]:
                return
            await ctx.tick()
        raise AssertionError(f"{len(out['words'])} of {n_words} words after {max_cycles} cycles")

    sim = Simulator(m)
    sim.add_clock(1e-8)
    for bench in (commands, elements, residuals, words, stream_rule, watchdog):
        sim.add_testbench(bench)
    sim.run()
    return out


# -- cocotb -----------------------------------------------------------------------------------

class NonlinearBench:
    """cocotb bench of one unit: clock, reset, the three stream drivers (``cmd``, ``i``,
    ``res``), the output monitor and the scoreboard (expected words from the jobs, compared in
    order as they arrive; :meth:`check` asserts that nothing is missing or left over).

    Parameters
    ----------
    dut : the cocotb handle of a ``nonlinear_unit`` top level.
    params : dict
        The unit's parameters (:class:`hdl.nonlinear.NonlinearUnit`).
    seed : int
    idle, backpressure : float
        Probability of an idle cycle before each payload, of ``ready`` low on ``o``.
    """

    def __init__(self, dut, params, *, seed=0, idle=0.3, backpressure=0.3):
        import cocotb
        from cocotb.clock import Clock
        self.dut = dut
        self.unit = NonlinearUnit(**params)
        self.gold = GoldenUnit(self.unit)
        self.seed, self.idle, self.backpressure = seed, idle, backpressure
        self.expected = []
        self.checked = 0
        for name in ("cmd", "i", "res"):
            getattr(dut, f"{name}__valid").value = 0
        dut.o__ready.value = 0
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())

    async def start(self, *, reset=True):
        """Reset (unless ``reset`` is False), then start the drivers and the monitor."""
        from tb.cocotb_streams import StreamDriver, StreamMonitor, reset_dut
        if reset:
            await reset_dut(self.dut)
        w = self.unit.width
        s = self.seed
        self.cmd = StreamDriver(self.dut, "cmd", self.unit.cmd.payload.shape(), idle=self.idle,
                                seed=s)
        self.i = StreamDriver(self.dut, "i", signed(w), idle=self.idle, seed=s + 1)
        self.res = StreamDriver(self.dut, "res", signed(w), idle=self.idle, seed=s + 2)
        self.monitor = StreamMonitor(self.dut, "o", self.unit.o.payload.shape(),
                                     backpressure=self.backpressure, seed=s + 3)
        self.expected = []

    async def reset_now(self):
        """Stop the drivers and the monitor (their queues are dropped) and reset the DUT; the
        ``gamma_q`` / ``beta_q`` buffers keep their contents, as in the hardware. Call
        :meth:`start` with ``reset=False`` to go on."""
        from cocotb.triggers import FallingEdge
        from tb.cocotb_streams import reset_dut
        await FallingEdge(self.dut.clk)              # out of a read-only phase
        for stream in (self.cmd, self.i, self.res, self.monitor):
            stream.kill()
        self.dut.o__ready.value = 0
        await reset_dut(self.dut)

    def send(self, jobs):
        """Queue ``jobs`` on the drivers and their words on the scoreboard."""
        for job in jobs:
            self.cmd.send(job.cmd)
            self.i.send_many(job.i)
            self.res.send_many(job.res)
            self.expected.extend(job.words)

    async def drain(self, timeout=200_000):
        """Wait for every expected word, then compare them in order."""
        await self.monitor.wait_received(len(self.expected), timeout=timeout)
        self.check()

    def check(self):
        got = list(self.monitor.received)
        for k, (g, e) in enumerate(zip(got, self.expected)):
            assert g == e, f"word {k}: expected {e}, got {g}"
        assert len(got) == len(self.expected), \
            f"{len(got)} words received, {len(self.expected)} expected"
