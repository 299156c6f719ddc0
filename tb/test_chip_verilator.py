"""AtleusChip shell, fence, loopback and host port through the real NoC: cocotb + Verilator.

The regression chip (:data:`golden.chip.REGRESSION_CHIP`: 2x2x2, 3D mesh, 32-lane vectors)
with test-fixture memory cores on every node (:class:`tb.env.chip.PlaceholderChip`,
:class:`tb.env.chip.MemCore`: ``wr`` into a memory, a command SENDs ``count`` words to a
node and address). A Python reference of the memories (what each write and SEND leaves
where) gives the expected vectors on ``host_o``.

- host writes -> SEND to the host window, for every node (node 0's own writes and results
  loop back inside its shell without the NoC);
- the fence: commands sent ahead of the writes they wait for (the host sends the command
  first) still see every write;
- core to core and core to itself (loopback) chains, each fenced;
- errors: an unexpected tag (another layer) is dropped and flagged at that node only, a
  write past a core's memory is dropped and flagged, a refused command flags the core and
  never hangs; later traffic still flows.

Random idle cycles on ``host_i`` and backpressure on ``host_o``.
"""

import os
import random

import cocotb

from golden.chip import REGRESSION_CHIP
from tb import runner
from tb.env.chip import (PLACEHOLDER_PIM_WORDS, ChipBench, PlaceholderChip, mem_command)

CONFIG = REGRESSION_CHIP
HOST_WINDOW = 0x8000


class Reference:
    """The memories of the placeholder cores, as the chip should leave them."""

    def __init__(self, bench):
        self.bench = bench
        self.mem = [dict() for _ in range(bench.nodes)]

    def words(self, node):
        X, Y, _ = CONFIG.dims
        return 128 if node < X * Y else PLACEHOLDER_PIM_WORDS

    def write(self, node, addr, words):
        for k, w in enumerate(words):
            self.mem[node][addr + k] = list(w)
        self.bench.write_words(node, addr, words)

    def send(self, node, count, src, dest, dest_addr, *, wait=None):
        """SEND on ``node``; returns the words it sends (to the host: expected)."""
        words = [self.mem[node].get(src + k, [0] * self.bench.L) for k in range(count)]
        wait = self.bench.writes[node] if wait is None else wait
        if not (dest == 0 and dest_addr >= HOST_WINDOW):
            for k, w in enumerate(words):
                self.mem[dest][dest_addr + k] = list(w)
            self.bench.expect_writes(dest, count)
        self.bench.command(node, mem_command(self.bench.ni, count, src, dest, dest_addr),
                           wait=wait)
        return words


def random_words(rng, n, L):
    return [[rng.randrange(1 << 16) for _ in range(L)] for _ in range(n)]


async def expect_host(bench, expected, *, base=HOST_WINDOW):
    """Receive ``len(expected)`` vectors and compare them, placed by offset."""
    try:
        got = await bench.receive(len(expected), timeout=20000)
    except AssertionError as e:
        raise AssertionError(f"{e}; busy {bench.dut.busy.value.to_unsigned():#x}, "
                             f"error {bench.errors():#x}") from None
    words = {off - base: lanes for off, lanes in got}
    assert sorted(words) == list(range(len(expected))), sorted(words)
    for k, w in enumerate(expected):
        assert words[k] == w, f"word {k}: {words[k]} != {w}"


@cocotb.test()
async def chip_host_and_fence(dut):
    """Every node: writes, a fenced SEND back to the host (the command sent first)."""
    rng = random.Random(int(os.environ.get("CHIP_SEED", "1")))
    bench = ChipBench(dut, CONFIG, idle=0.2, backpressure=0.3, seed=3)
    ref = Reference(bench)
    await bench.start()
    for node in range(bench.nodes):
        n = rng.randint(1, 6)
        addr = rng.randrange(ref.words(node) - n)
        words = random_words(rng, n, bench.L)
        # The command first, fenced on the writes that follow it.
        exp = ref.send(node, n, addr, 0, HOST_WINDOW, wait=bench.writes[node] + n)
        exp = [list(w) for w in words]
        ref.write(node, addr, words)
        await expect_host(bench, exp)
    assert bench.errors() == 0, f"error bits {bench.errors():#x}"


@cocotb.test()
async def chip_core_to_core_and_loopback(dut):
    """Chains: host -> a -> b (NoC) -> b itself (loopback) -> host, each step fenced."""
    rng = random.Random(int(os.environ.get("CHIP_SEED", "1")) + 1)
    bench = ChipBench(dut, CONFIG, idle=0.3, backpressure=0.2, seed=5)
    ref = Reference(bench)
    await bench.start()
    for _ in range(int(os.environ.get("CHIP_CHAINS", "6"))):
        a, b = rng.sample(range(bench.nodes), 2)
        n = rng.randint(1, 5)
        dut._log.info(f"chain {a} -> {b}, {n} words")
        words = random_words(rng, n, bench.L)
        ref.write(a, 0, words)
        ref.send(a, n, 0, b, 8)                      # a -> b over the NoC
        ref.send(b, n, 8, b, 24)                     # b -> b: loopback
        exp = ref.send(b, n, 24, 0, HOST_WINDOW)     # b -> host
        assert exp == words
        await expect_host(bench, exp)
    # Node 0 to itself and to the host (its host-window results loop back locally).
    words = random_words(rng, 3, bench.L)
    ref.write(0, 40, words)
    ref.send(0, 3, 40, 0, 50)
    await expect_host(bench, ref.send(0, 3, 50, 0, HOST_WINDOW + 0))
    assert bench.errors() == 0, f"error bits {bench.errors():#x}"


@cocotb.test()
async def chip_errors_flagged_never_hang(dut):
    """An unexpected layer, a write past the memory and a refused command are flagged at
    their node only; later traffic still arrives."""
    rng = random.Random(7)
    bench = ChipBench(dut, CONFIG, seed=7)
    ref = Reference(bench)
    await bench.start()
    X, Y, _ = CONFIG.dims
    bad_tag, bad_addr, bad_cmd = 3, X * Y + 1, 2
    bench.send_vector(bad_tag, 0, [1] * bench.L, layer=1)             # dropped by the NI
    bench.send_vector(bad_addr, PLACEHOLDER_PIM_WORDS, [2] * bench.L)  # past the memory
    bench.writes[bad_addr] += 1                                        # counts for the fence
    bench.command(bad_cmd, mem_command(bench.ni, 0, 0, 0, HOST_WINDOW))  # count 0: refused
    await bench.idle_until_quiet()
    from cocotb.triggers import ClockCycles
    await ClockCycles(dut.clk, 50)
    want = (1 << bad_tag) | (1 << bad_addr) | (1 << bad_cmd)
    assert bench.errors() == want, f"error bits {bench.errors():#x}, expected {want:#x}"
    for node in (bad_tag, bad_addr, bad_cmd):
        words = random_words(rng, 2, bench.L)
        ref.write(node, 4, words)
        await expect_host(bench, ref.send(node, 2, 4, 0, HOST_WINDOW))


def test_chip_placeholder_verilator():
    from hdl.verilog import generate
    verilog = generate(PlaceholderChip(CONFIG), "atleus_chip")
    runner.run(verilog, "atleus_chip", "tb.test_chip_verilator", name="chip_placeholder",
               top_only=True)


def test_chip_placeholder_verilator():
    from hdl.verilog import generate
    verilog = generate(PlaceholderChip(CONFIG), "atleus_chip")
    runner.run(verilog, "atleus_chip", "tb.test_chip_verilator", name="chip_placeholder",
               top_only=True)

