"""Simulation speed: each block's Verilated model alone (C++ main) and under its cocotb testbench.

    python -m tb.bench.simspeed [--blocks systolic,noc_4x4,...] [--cpu-seconds 3]
                                [--out-dir build/bench]

For every row (``--blocks`` picks rows by name or by block: ``pim_tile_8``, ``pim_tile_96``,
``systolic_32x32``, ``systolic_128x32``, ``noc_4x4``, ``noc_4x4x4``, ``sar_adc``, ``dequant``;
the default is all of them) it

1. builds the block's Verilog with the generic C++ main ``tb/bench/cpp/sim_main.cpp`` (clock,
   reset, fresh random bits on every input at each falling edge, no checking; same Verilog
   and the same flat/hierarchical choice as the testbench's build, no ``--vpi``, no public
   signals) and runs it for ``--cpu-seconds`` of CPU;
2. runs the same Verilog under the project's cocotb testbench environment for that block
   (:mod:`tb.env.systolic`, the PIM tile and SAR-ADC benches, the NoC traffic class...), a
   workload with the golden model checking every output, and measures its CPU time inside
   the simulator process (``time.process_time`` from the cocotb test), and the same build
   with only a clock running (the cost of cocotb and VPI alone).

Writes ``<out-dir>/simspeed.json`` (rows not measured in this run are kept from the file):
a list of rows with ``block``, ``config`` (the block's
parameters and the testbench workload), ``cpp_cycles_per_cpu_s``,
``testbench_cycles_per_cpu_s``, ``ratio`` (testbench / C++), plus
``clock_only_cycles_per_cpu_s``, the wall-clock rates (``*_cycles_per_wall_s``), cycles and
CPU seconds of each measurement, and ``build`` (``flat`` or ``hierarchical``, see
:func:`tb.runner.choose_hier_blocks`). Rates are cycles per CPU-second of the simulator
process, so a loaded machine changes the wall-clock figures, not these.

The full-size rows (``systolic_128x32``, ``pim_tile_96``, ``noc_4x4x4``) build large models
once (cached under ``build/sim``); pick small rows with ``--blocks`` for a quick run.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse                                            # noqa: E402
import json                                                # noqa: E402
import re                                                  # noqa: E402
import subprocess                                          # noqa: E402
import sys                                                 # noqa: E402
import time                                                # noqa: E402
from pathlib import Path                                   # noqa: E402

import cocotb                                              # noqa: E402

HERE = Path(__file__).resolve().parent
CPP_MAIN = HERE / "cpp" / "sim_main.cpp"
CPP_STREAM_MAIN = HERE / "cpp" / "sim_main_stream.cpp"
PERIOD_NS = 10
OUT_VAR = "SIMSPEED_OUT"
CONFIG_VAR = "SIMSPEED_CONFIG"


# -- measuring inside the simulator -------------------------------------------------------------

class _Meter:
    """CPU (``time.process_time`` of this simulator process), wall and simulated cycles."""

    def __init__(self, period_ns=PERIOD_NS):
        from cocotb.simtime import get_sim_time
        self._now = lambda: get_sim_time("ns")
        self.period = period_ns
        self.t0, self.cpu0, self.wall0 = self._now(), time.process_time(), time.perf_counter()

    def result(self, **extra):
        cycles = (self._now() - self.t0) / self.period
        cpu = time.process_time() - self.cpu0
        wall = time.perf_counter() - self.wall0
        return {"cycles": int(cycles), "cpu_s": cpu, "wall_s": wall, **extra}


def _write(result):
    with open(os.environ[OUT_VAR], "w") as f:
        json.dump(result, f)


def _config():
    return json.loads(os.environ[CONFIG_VAR])


@cocotb.test()
async def clock_only(dut):
    """Only the clock runs (cocotb's GPI clock): what cocotb and VPI cost without Python."""
    from cocotb.clock import Clock
    from cocotb.triggers import Timer
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    await Timer(3 * PERIOD_NS, "ns")
    dut.rst.value = 0
    cycles = int(_config().get("clock_only_cycles", 20_000))
    meter = _Meter()
    await Timer(cycles * PERIOD_NS, "ns")
    _write(meter.result())


@cocotb.test()
async def testbench_systolic(dut):
    """GEMMs streamed through :class:`tb.env.systolic.TB` (no idle, no backpressure; or the
    regression's recording mode with idle and backpressure), every output checked."""
    from golden import systolic as golden
    from tb.env.systolic import TB
    cfg = _config()
    tb = TB(dut, record=cfg["record"])
    m, n, k = cfg["shape"]
    a, b, folds = tb.random_gemm(m, n, k)
    await tb.start(idle=cfg["idle"], backpressure=cfg["idle"], seed=1)
    meter = _Meter()
    received = await tb.run(folds, timeout=10_000_000)
    result = meter.result()
    outputs = tb.unpack_outputs(received)
    length = tb.array.drain_length
    per_fold = [outputs[i:i + length] for i in range(0, len(outputs), length)]
    assert (golden.assemble(folds, per_fold, m, n, rows=tb.rows, cols=tb.cols,
                            drain=tb.array.drain) == a @ b).all()
    _write(result)


@cocotb.test()
async def testbench_sar_adc(dut):
    """Random commands over crossbar reads through :class:`tb.env.sar_adc.SarAdcBench`
    (comparator noise, idle and backpressure), checked against the golden controller."""
    import random

    from golden.sar_adc import expected_words
    from tb.env.sar_adc import SarAdcBench, crossbar_reads, lsb_map, random_commands
    cfg = _config()
    tb = SarAdcBench(dut, cfg["params"], seed=5, idle=0.3, backpressure=0.3)
    cols = tb.ctl.columns
    rng = random.Random(5)
    commands = random_commands(rng, cfg["commands"], columns=cols, resolutions=tb.ctl.resolutions,
                               max_bits=tb.ctl.max_bits)
    reads = crossbar_reads(5, cfg["commands"] * 3, cols)
    fe = dict(lsb=lsb_map(128 * 3, tb.ctl.max_bits), offset=0.3, noise_sigma=0.4)
    await tb.start(reads, **fe)
    meter = _Meter()
    tb.send(commands)
    await tb.drain()
    result = meter.result()
    expected = expected_words(commands, reads, max_bits=tb.ctl.max_bits, columns=cols,
                              resolutions=tb.ctl.resolutions, seed=tb.seed, **fe)
    assert list(tb.monitor.received) == expected
    _write(result)


@cocotb.test()
async def testbench_dequant(dut):
    """Reads streamed through :class:`tb.env.dequant.DequantBench` (idle and backpressure),
    checked against the golden shift-and-add dequantizer."""
    import numpy as np

    from hdl.dequant import ShiftAddDequantizer
    from tb.env.dequant import DequantBench, group_stimulus
    p = _config()["params"]
    tb = DequantBench(dut, ShiftAddDequantizer(**{k: v for k, v in p.items() if k != "seed"}))
    await tb.reset()
    rng = np.random.default_rng(3)
    tb.streams(seed=3, idle=0.3, cfg_idle=0.3, backpressure=0.3)
    beats, scales, (ev, es) = group_stimulus(
        rng, rows=p["rows"], n_out=p["n_out"], xbars=p["xbars"], units=p["units"],
        cell_bits=p["cell_bits"], batch=_config()["batch"], flip=p["flip"],
        out_bits=p["out_bits"], rounding=p["rounding"], scale_range=1 << 13)
    meter = _Meter()
    await tb.write_scales(scales)
    tb.send(beats)
    await tb.drain(len(ev))
    result = meter.result()
    assert [g["value"] for g in tb.mon.received] == [int(v) for v in ev]
    _write(result)


@cocotb.test()
async def testbench_noc(dut):
    """Uniform random traffic at offered load 1.0 with 30% ejection backpressure, every flit
    checked by the scoreboard of the NoC testbench."""
    import random
    cfg = _config()
    traffic_class, destination = _noc_env()
    tb = traffic_class(dut, cfg["topology"], tuple(cfg["dims"]), backpressure=0.3, seed=3)
    await tb.start()
    rng = random.Random(10)
    for _ in range(cfg["packets_per_node"]):
        for src in range(tb.N):
            tb.queue(src, destination(tb.topo, "uniform", src, rng, 0), rng.randint(1, 4))
    meter = _Meter()
    await tb.drain()
    result = meter.result()
    assert len(tb.delivered) == cfg["packets_per_node"] * tb.N
    _write(result)


def _noc_env():
    """The NoC environment's bench class (:class:`tb.env.noc.NocBench`) and destination
    picker."""
    from tb.env import noc as env
    return env.NocBench, env.destination


# -- the rows -----------------------------------------------------------------------------------

def _systolic(rows, cols, shape, record=False, idle=0.0):
    def make():
        from tb.env.systolic import build_spec, params_env
        spec = build_spec(rows, cols)
        # The C++ main runs the array alone; the testbench its feeder/capture wrapper.
        return dict(verilog=spec["verilog"], toplevel=spec["toplevel"],
                    cpp_verilog=spec["array_verilog"], cpp_toplevel="systolic_array",
                    name=f"systolic_{rows}x{cols}", options=spec["options"],
                    testcase="testbench_systolic", env=params_env(rows, cols),
                    config={"shape": shape, "record": record, "idle": idle},
                    cpp_hold_high=("i__valid", "o__ready"))
    workload = "regression (record, idle/backpressure 0.3)" if record else "gemm stream"
    return {"block": "systolic", "config": {"rows": rows, "cols": cols,
                                            "gemm": "x".join(map(str, shape)),
                                            "testbench": workload}, "make": make}


def _sar_adc():
    params = dict(max_bits=8, columns=128, settle_cycles=0)

    def make():
        from hdl.sar_adc import SarAdcController
        from hdl.verilog import generate
        verilog = generate(SarAdcController(**params), "sar_adc_controller")
        return dict(verilog=verilog, toplevel="sar_adc_controller", name="sar_adc_isaac",
                    options={}, testcase="testbench_sar_adc", env={},
                    config={"params": params, "commands": 60})
    return {"block": "sar_adc", "config": dict(params, testbench="random commands, noise"),
            "make": make}


# The regression's MLC group configuration (tb.env.dequant.GROUP_CONFIGS).
DEQUANT_NAME = "mlc_flip_a7_even"


def _dequant_params():
    from tb.env.dequant import GROUP_CONFIGS, GROUP_SIZE
    return dict(GROUP_CONFIGS[DEQUANT_NAME], **GROUP_SIZE)


def _dequant():
    def make():
        from hdl.dequant import ShiftAddDequantizer
        from hdl.verilog import generate
        name = DEQUANT_NAME
        p = _dequant_params()
        verilog = generate(ShiftAddDequantizer(**{k: v for k, v in p.items() if k != "seed"}),
                           "shift_add_dequantizer")
        return dict(verilog=verilog, toplevel="shift_add_dequantizer", name=f"dequant_{name}",
                    options={}, testcase="testbench_dequant", env={},
                    config={"params": p, "batch": 16})
    return {"block": "dequant", "config": dict(_dequant_params(), testbench="reads, idle/backpressure 0.3"),
            "make": make}


def _noc(config, packets_per_node):
    """A NoC regression network (:data:`tb.env.noc.CONFIGS`: the same Verilog, build name and
    options, so the model is shared with the regression's cache)."""
    from tb.env.noc import CONFIGS
    topology, dims, vcs, buffer, _, slots = CONFIGS[config]

    def make():
        from tb.env.noc import VERILATOR_OPTIONS, network_verilog
        verilog = network_verilog(topology, dims, vcs, buffer, slots=slots)
        return dict(verilog=verilog, toplevel="noc_network", name=f"noc_{config}",
                    options=dict(VERILATOR_OPTIONS),
                    testcase="testbench_noc", env={},
                    config={"topology": topology, "dims": list(dims),
                            "packets_per_node": packets_per_node})
    return {"block": "noc", "config": {"topology": topology, "dims": "x".join(map(str, dims)),
                                       "vcs": vcs, "buffer": buffer, "slots": slots,
                                       "testbench": "uniform, load 1.0, backpressure 0.3"},
            "make": make}


def _pim_tile(crossbars):
    """The PIM tile under its environment (:class:`tb.env.pim_tile.TileBench`, the golden
    crossbars answering through the code store), with the workload of
    ``tb.bench.pim_tile``'s ``tile_simspeed`` test (run as is): an MLC layer over every
    crossbar, noise on (programming, read, comparator)."""
    def params():
        from tb.bench.pim_tile import SIMSPEED_TILE
        p = dict(SIMSPEED_TILE, crossbars=crossbars)
        if crossbars > SIMSPEED_TILE["crossbars"]:      # the full tile: Atleus' defaults
            from golden.pim_tile import TileConfig
            t = TileConfig()
            p = {k: getattr(t, k) for k in SIMSPEED_TILE}
            p["crossbars"] = crossbars
        return p

    def make():
        from golden.pim_tile import TileConfig
        from hdl.pim_tile import PimTile
        from hdl.verilog import generate
        from tb.env.pim_tile import TESTBENCH_TOP, tile_testbench_verilog
        p = params()
        # tb.bench.pim_tile's build name for its 8-crossbar tile: the same model, built once
        build_name = "pim_tile_simspeed" if crossbars == 8 else f"pim_tile_simspeed{crossbars}"
        # 6 vectors (~50k cycles, ~0.5 CPU-s: a shorter window spread by tens of percent) on
        # 8 crossbars, 2 on the full tile
        batch = 6 if crossbars == 8 else 2
        verilog = tile_testbench_verilog(generate(PimTile(**p), "pim_tile"), TileConfig(**p))
        config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()}
        return dict(verilog=verilog, toplevel=TESTBENCH_TOP, name=build_name,
                    options=dict(top_only=True), testcase="tile_simspeed", module="tb.bench.pim_tile",
                    env={"PIM_SIMSPEED": json.dumps({"tile": config, "batch": batch,
                                                     "noisy": True})},
                    out_var="PIM_SIMSPEED_OUT", config={},
                    config_extra={"tile": config, "vectors": batch})
    return {"block": "pim_tile", "config": {"crossbars": crossbars,
                                            "testbench": "MLC layer, golden crossbars in the loop, "
                                                         "noise on"},
            "make": make}


ROWS = {
    "pim_tile_8": lambda: _pim_tile(8),
    "pim_tile_96": lambda: _pim_tile(96),
    "systolic_32x32": lambda: _systolic(32, 32, (256, 32, 2048)),
    "systolic_32x32_regression": lambda: _systolic(32, 32, (64, 32, 4096), record=True,
                                                   idle=0.3),
    "systolic_128x32": lambda: _systolic(128, 32, (512, 32, 1024)),
    "noc_4x4": lambda: _noc("mesh4x4", 600),
    "noc_4x4x4": lambda: _noc("mesh4x4x4", 100),
    "sar_adc": _sar_adc,
    "dequant": _dequant,
}
FULL_SIZE = ("pim_tile_96", "systolic_128x32", "noc_4x4x4")


# -- the host side ------------------------------------------------------------------------------

def _mangle(name):
    """Verilator's C++ name of a port (``i__valid`` -> ``i___05Fvalid``)."""
    return re.sub(r"(?<=_)_", "__05F", name)


def ports_header(verilog, toplevel):
    from tb.runner import top_ports
    inputs = [(n, w) for d, n, w in top_ports(verilog, toplevel)
              if d == "input" and n not in ("clk", "rst")]
    return ("#define SIMSPEED_INPUTS(X) " + " ".join(f"X({_mangle(n)}, {w})" for n, w in inputs)
            + "\n")


def cpp_rate(spec, cpu_seconds, repeat=3, *, hold_high=None):
    """Build (cached) and run the C++ main ``repeat`` times; returns the median run (with
    every run's rate: on a shared machine they spread by tens of percent). With
    ``hold_high`` (port names), the stream-shaped main ``sim_main_stream.cpp`` holding those
    inputs at 1."""
    from tb import runner
    options = spec["options"]
    verilog = spec.get("cpp_verilog", spec["verilog"])
    toplevel = spec.get("cpp_toplevel", spec["toplevel"])
    header = ports_header(verilog, toplevel)
    main, name = CPP_MAIN, spec["name"]
    if hold_high is not None:
        header += ("#define SIMSPEED_HOLD_HIGH(X) "
                   + " ".join(f"X({_mangle(n)})" for n in hold_high) + "\n")
        main, name = CPP_STREAM_MAIN, spec["name"] + "_stream"
    exe = runner.build_cpp(verilog, toplevel, main, name=name,
                           headers={"simspeed_ports.h": header},
                           hier_blocks=options.get("hier_blocks", ()))
    runs = []
    for _ in range(repeat):
        out = subprocess.run([str(exe), str(cpu_seconds)], capture_output=True, text=True,
                             check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    runs.sort(key=lambda r: r["cycles"] / r["cpu_s"])
    median = dict(runs[len(runs) // 2])
    median["runs_cycles_per_cpu_s"] = [round(r["cycles"] / r["cpu_s"], 1) for r in runs]
    return median


def cocotb_rate(spec, testcase, out_dir, extra=None):
    """Run one cocotb test of the row (this module's, or ``spec["module"]``'s for the
    testbench); returns its measurement (cycles, cpu_s, wall_s)."""
    from tb import runner
    out = Path(out_dir).resolve() / f".simspeed-{spec['name']}-{testcase}.json"
    config = dict(spec["config"], **(extra or {}))
    module = spec.get("module", __name__) if testcase == spec["testcase"] else __name__
    module = "tb.bench.simspeed" if module == "__main__" else module
    env = {**spec["env"], OUT_VAR: out, CONFIG_VAR: json.dumps(config)}
    if spec.get("out_var"):
        env[spec["out_var"]] = out
    runner.run(spec["verilog"], spec["toplevel"], module, name=spec["name"],
               testcase=testcase, **spec["options"], extra_env=env)
    result = json.loads(out.read_text())
    out.unlink()
    if "cpu_seconds" in result:          # tb.bench.pim_tile's keys
        result = {"cycles": result["cycles"], "cpu_s": result["cpu_seconds"],
                  "wall_s": result["wall_seconds"]}
    return result


def _rate(m, clock="cpu_s"):
    return round(m["cycles"] / m[clock], 1) if m[clock] > 0 else None


def measure(key, cpu_seconds, out_dir):
    row = ROWS[key]()
    print(f"simspeed: {key}: generating", file=sys.stderr, flush=True)
    spec = row["make"]()
    row["config"] = dict(row["config"], **spec.get("config_extra", {}))
    print(f"simspeed: {key}: C++ main", file=sys.stderr, flush=True)
    cpp = cpp_rate(spec, cpu_seconds)
    stream = None
    if spec.get("cpp_hold_high"):
        print(f"simspeed: {key}: C++ main, stream-shaped stimulus", file=sys.stderr, flush=True)
        stream = cpp_rate(spec, cpu_seconds, hold_high=spec["cpp_hold_high"])
    print(f"simspeed: {key}: cocotb testbench", file=sys.stderr, flush=True)
    tb = cocotb_rate(spec, spec["testcase"], out_dir)
    clock_cycles = max(2000, int(cpp["cycles"] / cpp["cpu_s"] * cpu_seconds / 10))
    clk = cocotb_rate(spec, "clock_only", out_dir, {"clock_only_cycles": clock_cycles})
    hier = spec["options"].get("hier_blocks", ())
    result = {
        "block": row["block"], "config": row["config"],
        "cpp_cycles_per_cpu_s": _rate(cpp),
        "testbench_cycles_per_cpu_s": _rate(tb),
        "ratio": round(_rate(tb) / _rate(cpp), 3),
        "clock_only_cycles_per_cpu_s": _rate(clk),
        "cpp_cycles_per_wall_s": _rate(cpp, "wall_s"),
        "testbench_cycles_per_wall_s": _rate(tb, "wall_s"),
        "cpp": cpp, "testbench": tb, "clock_only": clk,
        "build": f"hierarchical ({', '.join(hier)})" if hier else "flat",
        "row": key,
    }
    if stream is not None:
        result["cpp_stream_cycles_per_cpu_s"] = _rate(stream)
        result["ratio_to_cpp_stream"] = round(_rate(tb) / _rate(stream), 3)
        result["cpp_stream"] = dict(stream, held_high=list(spec["cpp_hold_high"]))
    return result


def _select(text):
    if text is None:
        return list(ROWS)
    keys = []
    for item in text.split(","):
        item = item.strip()
        matched = [k for k in ROWS if k == item or k.startswith(item + "_")]
        if not matched:
            raise SystemExit(f"error: --blocks items must be one of {', '.join(ROWS)} or a block "
                             f"name (pim_tile, systolic, noc, sar_adc, dequant), not {item!r}")
        keys += [k for k in matched if k not in keys]
    return keys


def _merge(path, row, order):
    """Write ``row`` into the rows of ``path`` (re-read now: rows measured earlier or by
    another run stay), in :data:`ROWS` order; returns the rows."""
    rows = []
    if path.exists():
        try:
            rows = [r for r in json.loads(path.read_text()) if r.get("row") != row["row"]]
        except (ValueError, AttributeError):
            rows = []
    rows = sorted(rows + [row], key=lambda x: order.index(x["row"]) if x.get("row") in order
                  else len(order))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(path)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench.simspeed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", default=None,
                        help="comma-separated rows or blocks (default: every row)")
    parser.add_argument("--cpu-seconds", type=float, default=3.0,
                        help="CPU seconds of each C++ run (default 3)")
    parser.add_argument("--out-dir", default="build/bench")
    args = parser.parse_args(argv)
    if not args.cpu_seconds > 0:
        raise SystemExit(f"error: --cpu-seconds must be positive, not {args.cpu_seconds!r}")
    keys = _select(args.blocks)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "simspeed.json"
    order = list(ROWS)
    for key in keys:
        r = measure(key, args.cpu_seconds, out_dir)
        rows = _merge(path, r, order)
        stream = (f"  C++ stream-shaped {r['cpp_stream_cycles_per_cpu_s']:.0f} (ratio "
                  f"{r['ratio_to_cpp_stream']:.3f})" if "cpp_stream" in r else "")
        print(f"{key:<28} C++ {r['cpp_cycles_per_cpu_s']:>9.0f}  testbench "
              f"{r['testbench_cycles_per_cpu_s']:>9.0f}  ratio {r['ratio']:.3f}  clock-only "
              f"{r['clock_only_cycles_per_cpu_s']:>9.0f} cycles/CPU-s  ({r['build']}){stream}",
              file=sys.stderr, flush=True)
    print(f"wrote {path} ({len(rows)} rows)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
