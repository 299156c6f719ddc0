"""Benchmark of the shift-and-add + crossbar-wise dequantizer (Atleus Section IV-D, Table IV).

    python -m tb.bench.dequant [--out-dir build/bench] [--no-synth] [--liberty LIB]

Writes ``<out-dir>/dequant.json``:

- throughput (items per cycle, no idle cycles and no backpressure) and latency (cycles) of the
  :class:`ShiftAddAccumulator`, the :class:`Dequantizer` (CSD and generic multiplier) and the
  whole :class:`ShiftAddDequantizer` at its defaults, measured in the Amaranth simulator on
  golden-model stimulus (the results are checked against the golden model too);
- area: Yosys generic cell counts (and um^2 with the IHP SG13G2 Liberty when present) of one
  S&A lane alone (the ISAAC baseline periphery) against S&A + dequantizer (CSD and generic),
  and of the whole group against its S&A units alone: the digital-only version of Atleus'
  2.15% area-overhead claim (whose denominator is a whole tile with crossbars, DACs and ADCs).
"""

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from golden.quant import dequantize
from golden.shift_add import read_sequence, shift_add_stream
from hdl.dequant import Dequantizer, ShiftAddAccumulator, ShiftAddDequantizer
from hdl.dequant.dequantizer import cfg_layout
from hdl.lib.signatures import strobe
from hdl.verilog import generate
from synth.liberty import DEFAULT_LIBERTY
from tb.env.dequant import fit, group_stimulus
from tb.packing import pack, unpack

ROOT = Path(__file__).resolve().parents[2]
LIBERTY = DEFAULT_LIBERTY


class _Lane(wiring.Component):
    """One S&A unit followed by one dequantizer (the bench's area unit)."""

    def __init__(self, multiplier="csd", with_dequant=True, pipelined_tree=True):
        self._sa = ShiftAddAccumulator()
        self._with = with_dequant
        # The dequantizer only when it is used (nothing unused is constructed).
        self._dq = (Dequantizer(in_width=self._sa.acc_width, multiplier=multiplier,
                                pipelined_tree=pipelined_tree) if with_dequant else None)
        o = self._dq.o if with_dequant else self._sa.o      # the lane's output port
        super().__init__({"i": In(stream.Signature(self._sa.input_layout)),
                          "cfg": In(strobe(cfg_layout(xbars=8, scale_bits=16))),
                          "o": Out(stream.Signature(o.payload.shape()))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.sa = self._sa
        wiring.connect(m, wiring.flipped(self.i), self._sa.i)
        if self._with:
            m.submodules.dq = self._dq
            wiring.connect(m, self._sa.o, self._dq.i)
            wiring.connect(m, wiring.flipped(self.cfg), self._dq.cfg)
            wiring.connect(m, self._dq.o, wiring.flipped(self.o))
        else:
            wiring.connect(m, self._sa.o, wiring.flipped(self.o))
        return m


def _simulate(dut, inputs, n_out, cfg=()):
    """Stream ``inputs`` back to back (ready always high); cycle of each transfer in and out."""
    in_l, out_l = dut.i.payload.shape(), dut.o.payload.shape()
    t_in, t_out, got = [], [], []

    async def bench(ctx):
        cycle = 0
        for w in cfg:
            ctx.set(dut.cfg.valid, 1)
            ctx.set(dut.cfg.payload.as_value(), pack(dut.cfg.payload.shape(), w))
            await ctx.tick()
        if cfg:
            ctx.set(dut.cfg.valid, 0)
        ctx.set(dut.o.ready, 1)
        k = 0
        while len(got) < n_out and cycle < 10 * (len(inputs) + 100):
            if k < len(inputs):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload.as_value(), pack(in_l, fit(in_l, inputs[k])))
            else:
                ctx.set(dut.i.valid, 0)
            took = k < len(inputs) and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                got.append(unpack(out_l, ctx.get(dut.o.payload.as_value())))
                t_out.append(cycle)
            if took:
                t_in.append(cycle)
                k += 1
            await ctx.tick()
            cycle += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, t_in, t_out


def measure_shift_add(rng):
    sa = ShiftAddAccumulator()
    n_slices, n_out = sa.n_slices, 32
    codes = rng.integers(0, 1 << sa.adc_bits, (sa.input_bits, n_slices, n_out))
    beats = read_sequence(codes, ones=rng.integers(0, 129, sa.input_bits))
    exp = shift_add_stream(beats, input_bits=8, weight_bits=8, cell_bits=2, encoding="offset")
    ins = [{k: int(beats[k][t]) for k in beats} for t in range(len(beats["code"]))]
    got, t_in, t_out = _simulate(sa, ins, n_out)
    assert [g["value"] for g in got] == list(exp["value"])
    last_in = [t for t, b in zip(t_in, ins) if b["last"]]
    return {"beats": len(ins), "cycles": t_in[-1] - t_in[0] + 1,
            "beats_per_cycle": round(len(ins) / (t_in[-1] - t_in[0] + 1), 4),
            "latency_cycles": t_out[0] - last_in[0], "acc_width": sa.acc_width}


def measure_dequantizer(rng, multiplier):
    dq = Dequantizer(in_width=25, multiplier=multiplier)
    n = 512
    v = rng.integers(-(1 << 24), 1 << 24, n)
    x = rng.integers(0, 8, n)
    scales = rng.integers(-(1 << 15), 1 << 15, 8)
    ev, _ = dequantize(v, scales[x], scale_frac_bits=14, out_bits=16)
    ins = [{"xbar": int(x[k]), "column": k % 64, "value": int(v[k])} for k in range(n)]
    got, t_in, t_out = _simulate(dq, ins, n, cfg=[{"xbar": i, "scale": int(s)} for i, s in enumerate(scales)])
    assert [g["value"] for g in got] == list(ev)
    return {"results": n, "results_per_cycle": round(n / (t_out[-1] - t_out[0] + 1), 4),
            "latency_cycles": t_out[0] - t_in[0], "latency_property": dq.latency}


def measure_group(rng):
    top = ShiftAddDequantizer()
    beats, scales, (ev, _) = group_stimulus(rng, rows=top._sa.rows, n_out=top.n_out, xbars=top.xbars,
                                            units=top.units, cell_bits=2, batch=1, scale_range=1 << 8)
    got, t_in, t_out = _simulate(top, beats, len(ev), cfg=[{"xbar": i, "scale": s} for i, s in enumerate(scales)])
    assert [g["value"] for g in got] == list(ev)
    lane_results = len(ev) * top.xbars          # dequantized partial sums
    return {"input_beats": len(beats), "input_beats_per_cycle": round(len(beats) / (t_in[-1] - t_in[0] + 1), 4),
            "outputs": len(ev), "dequantized_partials": lane_results,
            "latency_last_beat_to_output_cycles": t_out[-1] - t_in[-1],
            "latency_property": top.latency}


def _area(component, top, liberty, work):
    from synth.yosys import run_yosys
    text = generate(component, top)
    d = Path(work)
    (d / f"{top}.v").write_text(text)
    # Hierarchical: each shared cell module is synthesized once; stat -top counts instances.
    script = [f"read_verilog -sv {top}.v", f"synth -top {top}", f"tee -o generic.txt stat -top {top}"]
    if liberty is not None:
        script += [f"dfflibmap -liberty {liberty}", f"abc -liberty {liberty}",
                   f"tee -o lib.txt stat -liberty {liberty} -top {top}"]
    start = time.perf_counter()
    run_yosys(script, cwd=d, log=d / f"{top}.log")
    out = {"seconds": round(time.perf_counter() - start, 1)}
    g = (d / "generic.txt").read_text()
    out["generic_cells"] = int(re.findall(r"Number of cells:\s+(\d+)", g)[-1]) if "Number of cells" in g \
        else int(re.findall(r"^\s+(\d+)\s+cells$", g, re.M)[-1])
    if liberty is not None:
        a = re.findall(r"Chip area for (?:top )?module.*?:\s*([\d.]+)", (d / "lib.txt").read_text())
        lib = (d / "lib.txt").read_text()
        a = re.findall(r"Chip area for top module.*?:\s*([\d.]+)", lib) or a
        out["area_um2"] = float(a[-1]) if a else None
        out["module_area_um2"] = {name.lstrip("\\"): round(float(v), 1) for name, v in
                                  re.findall(r"Chip area for module '([^']+)':\s*([\d.]+)", lib)}
    return out


def measure_area(liberty):
    res = {}
    with tempfile.TemporaryDirectory(prefix="pimrtl-dequant-") as work:
        designs = {
            "sa_only": (lambda: _Lane(with_dequant=False), "lane_sa"),
            "sa_dequant_csd": (lambda: _Lane("csd"), "lane_csd"),
            "sa_dequant_csd_unpipelined_tree": (lambda: _Lane("csd", pipelined_tree=False), "lane_csd_comb"),
            "sa_dequant_generic": (lambda: _Lane("generic"), "lane_generic"),
            "group_csd": (lambda: ShiftAddDequantizer(), "shift_add_dequantizer"),
        }
        for key, (make, top) in designs.items():
            sub = Path(work) / key
            sub.mkdir()
            res[key] = _area(make(), top, liberty, sub)
            print(f"bench dequant: area {key}: {res[key]}", file=sys.stderr, flush=True)
    metric = "area_um2" if liberty is not None else "generic_cells"
    base, csd, gen = (res[k][metric] for k in ("sa_only", "sa_dequant_csd", "sa_dequant_generic"))
    res["metric"] = metric
    res["lane_dequant_overhead_pct_csd"] = round(100 * (csd - base) / base, 2)
    res["lane_dequant_overhead_pct_generic"] = round(100 * (gen - base) / base, 2)
    comb = res["sa_dequant_csd_unpipelined_tree"][metric]
    res["lane_dequant_overhead_pct_csd_unpipelined_tree"] = round(100 * (comb - base) / base, 2)
    group = res["group_csd"][metric]
    res["group_overhead_vs_4_sa_pct"] = round(100 * (group - 4 * base) / (4 * base), 2)
    res["note"] = ("digital periphery only: Atleus' 2.15% is relative to a whole ReRAM tile "
                   "(crossbars, DACs, ADCs, eDRAM), a far larger denominator")
    return res


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench.dequant")
    parser.add_argument("--out-dir", default="build/bench", type=Path)
    parser.add_argument("--no-synth", action="store_true", help="skip the Yosys area runs")
    parser.add_argument("--liberty", default=str(LIBERTY) if LIBERTY.exists() else None)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(2026)
    start = time.perf_counter()
    result = {"block": "shift_add_dequantizer",
              "shift_add": measure_shift_add(rng),
              "dequantizer_csd": measure_dequantizer(rng, "csd"),
              "dequantizer_generic": measure_dequantizer(rng, "generic"),
              "group": measure_group(rng)}
    print(f"bench dequant: timing done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    if not args.no_synth:
        result["area"] = measure_area(args.liberty)
        result["area"]["liberty"] = args.liberty
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "dequant.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
