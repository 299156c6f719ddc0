"""Run a compiled layer (:mod:`golden.chip_program`) through the Verilated chip.

:func:`run_program` is the host: it sends the program's writes and fenced commands on
``host_i`` in program order, collects what arrives in its window on ``host_o``, runs the
host steps when their reads are in, and returns what the host received (the same
``{read name: matrix}`` as :func:`golden.chip_program.execute`) and the cycle count. The
analog crossbars of every tile answer from the golden crossbars
(:class:`tb.env.pim_core.MacroServer`): each is programmed with its tile's mapping at the
layer's noise step and told, ahead of time, the input vectors its tile will get (from the
golden execution of the same program, which the RTL must equal anyway; a tile driven with
anything else fails the row-drive check).

Used by ``tb/test_chip_layer_verilator.py`` and :mod:`tb.bench.chip`.
"""

import os
import pickle

import numpy as np

from golden import chip_program as cp
from golden.chip import REGRESSION_CHIP, REGRESSION_LAYER, REGRESSION_TILE
from golden.noise import NoiseConfig
from golden.transformer import EncoderLayer, random_weights

__all__ = ["regression_case", "run_program", "expected_inputs", "NOISE", "CASE_ENV"]

#: The noisy case: programming and read noise, comparator offsets and noise.
NOISE = NoiseConfig(prog_sigma=0.02, read_sigma=0.01, comp_noise_sigma=0.3, comp_offset_sigma=0.3)
#: Environment variable naming the pickled case file of a cocotb run.
CASE_ENV = "CHIP_LAYER_CASE"


def regression_case(noise=None, seed=0, grads=True):
    """The regression layer (:data:`golden.chip.REGRESSION_LAYER` on ``REGRESSION_TILE``), its
    calibrated input ``x`` and the upstream gradients ``{target: (G, f_G)}`` of the LoRA
    targets: ``(layer, x, grads)``."""
    cfg = REGRESSION_LAYER
    layer = EncoderLayer(cfg, random_weights(cfg, seed), tile=REGRESSION_TILE, noise=noise,
                         seed=seed + 1)
    rng = np.random.default_rng(seed)
    xf = rng.standard_normal((cfg.seq_len, cfg.d_model))
    layer.calibrate(xf)
    x = layer.quantize_input(xf)
    g = {t: (rng.integers(-128, 128, (cfg.seq_len, cfg.d_model)), 10)
         for t in cfg.lora_targets} if grads else {}
    return layer, x, g


def expected_inputs(program):
    """The golden run of ``program``: ``(results, {(node, tile): input vectors in order})``."""
    from tb.env.pim_core import tile_inputs
    inputs = {}

    def hook(st, kind, model):
        if kind == "pim":
            for k, v in tile_inputs(model, st.word).items():
                inputs.setdefault((st.node, k), []).append(np.asarray(v))

    results = cp.execute(program, on_command=hook)
    return results, {key: np.concatenate(v) for key, v in inputs.items()}


def _lanes(word):
    return [int(v) & 0xFFFF for v in word]


async def run_program(dut, program, *, idle=0.0, backpressure=0.0, seed=0, limit=2_000_000,
                      log=None):
    """The host's side of ``program`` on the chip ``dut``.

    Returns ``(received, info)``: ``received`` as :func:`golden.chip_program.execute`'s,
    ``info`` with ``cycles`` (from the first vector the host offers to the last word it
    receives), ``commands``, ``host_vectors``, ``golden`` (the golden results) and
    ``errors`` (the chip's ``error`` bits at the end).
    """
    from cocotb.triggers import ClockCycles
    from tb.env.chip import ChipBench

    chip = program.chip
    L = cp.chip_ni(chip).length
    golden, inputs = expected_inputs(program)
    bench = ChipBench(dut, chip, idle=idle, backpressure=backpressure, seed=seed)
    await bench.start()
    servers = bench.start_macros()
    for m, vs in program.tiles.items():
        for node, slot, r0, c0, c1, mapping, step0 in vs:
            srv = servers[(node, slot)]
            srv.analog.program(mapping, step0=step0)
            if (node, slot) in inputs:
                srv.analog.expect(inputs[(node, slot)])
    host = {}
    reads = {}
    start = bench.sim_cycles()
    sent = commands = 0

    async def collect(names):
        """Wait until every word of the named reads is in ``host``."""
        need = set()
        for name in names:
            rd = reads[name]
            cols = rd.cols * (2 if rd.wide else 1)
            need |= {rd.addr + j for j in range(rd.rows * -(-cols // L))}
        waited = 0
        while not need <= host.keys():
            while bench.monitor.received:
                item = bench.monitor.received.popleft()
                host[item["tag"]["offset"]] = np.array(item["data"], dtype=np.int64)
            if need <= host.keys():
                break
            if waited > limit:
                missing = sorted(need - host.keys())
                raise AssertionError(f"the host is still missing {len(missing)} words of "
                                     f"{', '.join(names)} after {limit} cycles (first offset "
                                     f"{missing[0]:#x}); chip errors {bench.errors():#x}")
            await ClockCycles(dut.clk, 64)
            waited += 64

    queue = list(program.steps)
    while queue:
        st = queue.pop(0)
        if isinstance(st, cp.Write):
            for k, w in enumerate(st.words):
                bench.send_vector(st.node, st.addr + k, _lanes(w))
            sent += len(st.words)
        elif isinstance(st, cp.Command):
            bench.command(st.node, st.word, wait=st.wait)
            sent += 1
            commands += 1
        elif isinstance(st, cp.Read):
            reads[st.name] = st
        elif isinstance(st, cp.HostStep):
            await collect(st.needs)
            if log:
                log(f"host step {st.label!r} at cycle {bench.sim_cycles() - start}")
            got = {name: _matrix(host, reads[name], L) for name in st.needs}
            more, _ = st.fn(got)
            queue = list(more) + queue
    await collect(list(reads))
    cycles = bench.sim_cycles() - start
    received = {name: _matrix(host, rd, L) for name, rd in reads.items()}
    await ClockCycles(dut.clk, 20)
    for srv in servers.values():
        srv.kill()
    return received, {"cycles": cycles, "commands": commands, "host_vectors": sent,
                      "golden": golden, "errors": bench.errors()}


def _matrix(host, rd, L):
    signed = {k: np.where(v >= 1 << 15, v - (1 << 16), v) for k, v in host.items()}
    return cp.read_matrix(signed, rd, L)


def save_case(path, noise_name, seed):
    """Write the case description a cocotb run reads (``CASE_ENV``)."""
    with open(path, "wb") as f:
        pickle.dump({"noise": noise_name, "seed": seed}, f)


def load_case():
    with open(os.environ[CASE_ENV], "rb") as f:
        return pickle.load(f)
