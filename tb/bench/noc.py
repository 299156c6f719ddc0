"""NoC benchmark: latency and accepted throughput versus offered load, BookSim2-style, on the RTL.

    python -m tb.bench.noc --topology mesh --dims 4x4 --vcs 2 --packet-flits 4 --buffer 8 \\
        --loads 0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0

Traffic (``--traffic``): ``uniform`` random destinations, or ``layer``, Atleus'
layer-to-layer pipeline (each core sends to the next stage of its transformer layer,
:func:`golden.noc.layer_pipeline`; 3D networks only). Bernoulli packet injection per node
per cycle at ``load / packet_flits`` packets (offered load in flits/node/cycle), unbounded
source queues, ejection always ready. Per load point: a warm-up, then a sample window;
packet latency is from the packet's creation (source queueing included, as BookSim2) to its
tail's ejection, averaged over the packets created in the window (all of them are drained);
accepted throughput is the flits ejected during the window per injecting node per cycle.
``zero_load_latency`` is measured at offered load 0.01; ``saturation_throughput`` is the
accepted throughput at offered load 1.0. ``--seeds 1,2,3`` runs one traffic trace per seed
and reports the mean of each point (and the per-seed values): single traces of a 2000-cycle
window differ by about 0.01 in saturation throughput.

``--slots`` sets the router's destination slots per output VC (:class:`hdl.noc.NocRouter`),
``--no-zero-load`` skips the zero-load run, ``--scoreboard-packets N`` adds a scoreboard run
(random packet lengths 1 to 4, offered load 1.0, ejection backpressure 0.3; every check of
the regression's scoreboard) per pattern of ``--patterns`` (uniform, transpose, hotspot:
all nodes to one) on the swept network. ``--fig8`` runs only the Atleus comparison of
Fig. 8: 4x4x4 mesh, mesh with skip links and Atleus, each with 2 VCs, 4-flit buffers and
4-flit packets: router port counts, and per traffic pattern (uniform random at offered load
0.1; the layer pipeline at 0.1, 0.5 and 1.0) average hops, zero-load latency (measured and
contract), latency and accepted throughput.

With no arguments: the 4x4 mesh with 2 VCs (the issue's command), the Fig. 8 comparison
and the 100,000-packet scoreboard on the 4x4 mesh under all three patterns. Writes
``<out-dir>/noc.json`` and ``<out-dir>/noc_latency.png``.
"""

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import cocotb

from golden import noc as golden_noc

# BookSim2 "lean" router, 8-flit buffers per VC (from the issue): zero-load latency and
# saturation throughput at 1 / 2 VCs.
BOOKSIM = {((4, 4), 4): {"zero_load_latency": 15.7, 1: 0.59, 2: 0.73},
           ((4, 4, 4), 4): {"zero_load_latency": 19.3, 1: 0.54, 2: 0.70}}


# -- cocotb side ----------------------------------------------------------------------------

@cocotb.test()
async def noc_bench_sweep(dut):
    from tb.env.noc import NocBench, parse_dims
    cfg = json.loads(os.environ["NOC_BENCH"])
    tb = NocBench(dut, cfg["topology"], parse_dims(cfg["dims"]), seed=cfg["seed"],
                    routing_scheme=cfg["routing_scheme"])
    await tb.start()
    rng = random.Random(cfg["seed"])
    L = cfg["packet_flits"]
    if cfg.get("pattern", "uniform") == "layer":
        succ = golden_noc.layer_pipeline(parse_dims(cfg["dims"]))
        sources = [(n, d) for n, d in enumerate(succ) if d is not None]
    else:
        sources = None
    points = []
    for load in cfg["loads"]:
        p = load / L
        warmup, window = cfg["warmup"], cfg["window"]
        first = len(tb.delivered)
        start = tb.cycle
        flits_at = {}

        def generate(tb, p=p, start=start):
            t = tb.cycle - start
            if t < warmup + window:
                for src, dst in sources or ((n, None) for n in range(tb.N)):
                    if rng.random() < p:
                        tb.queue(src, rng.randrange(tb.N) if dst is None else dst, L,
                                 created=(tb.cycle, t >= warmup))

        while tb.cycle - start < warmup + window:
            if tb.cycle - start == warmup:
                flits_at["start"] = sum(d[2] for d in tb.delivered)
            await tb.step(generate)
        flits_at["end"] = sum(d[2] for d in tb.delivered)
        await tb.drain(settle=0)
        sample = [d for d in tb.delivered[first:] if d[5][1]]
        latency = sum(d[4] - d[5][0] for d in sample) / max(1, len(sample))
        accepted = (flits_at["end"] - flits_at["start"]) / (len(sources or range(tb.N)) * window)
        points.append({"offered_load": load, "accepted_throughput": round(accepted, 4),
                       "avg_latency": round(latency, 3), "sampled_packets": len(sample)})
        dut._log.info(f"load {load}: accepted {accepted:.3f}, latency {latency:.2f}")
    Path(cfg["out"]).write_text(json.dumps(points))


@cocotb.test()
async def noc_bench_scoreboard(dut):
    from tb.env.noc import NocBench, destination, parse_dims
    cfg = json.loads(os.environ["NOC_BENCH"])
    tb = NocBench(dut, cfg["topology"], parse_dims(cfg["dims"]), backpressure=0.3,
                    seed=cfg["seed"], routing_scheme=cfg["routing_scheme"])
    await tb.start()
    rng = random.Random(cfg["seed"])
    pattern = cfg["pattern"]
    hot = rng.randrange(tb.N)
    per_node = cfg["packets"] // tb.N
    for _ in range(per_node):
        for src in range(tb.N):
            tb.queue(src, destination(tb.topo, pattern, src, rng, hot), rng.randint(1, 4))
    t0 = time.perf_counter()
    await tb.drain()
    flits = sum(d[2] for d in tb.delivered)
    Path(cfg["out"]).write_text(json.dumps({
        "packets": len(tb.delivered), "flits": flits, "cycles": tb.cycle,
        "pattern": pattern, "offered_load": 1.0, "ejection_backpressure": 0.3,
        "passed": len(tb.delivered) == per_node * tb.N and tb.outstanding == 0,
        "checks": "no loss, no duplication, no corruption, contiguous, in order per "
                  "(source, destination), drained to empty, watchdog 1000 cycles",
        "wall_s": round(time.perf_counter() - t0, 1)}))


# -- host side ------------------------------------------------------------------------------

def _simulate(testcase, topology, dims, vcs, buffer, cfg, out_dir, slots=2, routing_scheme="auto"):
    from tb.env.noc import simulate
    out = Path(out_dir) / f".noc_{testcase}_{topology}_{'x'.join(map(str, dims))}_{vcs}_{buffer}.json"
    cfg = dict(cfg, topology=topology, dims=",".join(map(str, dims)), out=str(out.resolve()),
               routing_scheme=routing_scheme)
    simulate("tb.bench.noc", testcase, topology=topology, dims=dims, vcs=vcs, buffer=buffer,
             slots=slots, routing_scheme=routing_scheme,
             extra_env={"NOC_BENCH": json.dumps(cfg)})
    result = json.loads(out.read_text())
    out.unlink()
    return result


def sweep(topology, dims, vcs, buffer, packet_flits, loads, out_dir, *, warmup, window, seeds=(1,),
          slots=2, zero_load=True, pattern="uniform", routing_scheme="auto"):
    """Latency and accepted throughput per offered load; with several ``seeds`` (independent
    traffic traces), each point is the mean over the traces and keeps the per-trace values."""
    seeds = tuple(seeds)
    cfg = {"packet_flits": packet_flits, "warmup": warmup, "window": window, "seed": seeds[0],
           "pattern": pattern}
    zero = _simulate("noc_bench_sweep", topology, dims, vcs, buffer,
                     dict(cfg, loads=[0.01], window=max(window, 3000)), out_dir,
                     slots=slots, routing_scheme=routing_scheme)[0] \
        if zero_load else {"avg_latency": None}
    traces = [_simulate("noc_bench_sweep", topology, dims, vcs, buffer,
                        dict(cfg, loads=loads, seed=seed), out_dir, slots=slots,
                        routing_scheme=routing_scheme)
              for seed in seeds] if loads else []
    points = []
    for k, load in enumerate(loads):
        per = [t[k] for t in traces]
        point = {"offered_load": load}
        for key in ("accepted_throughput", "avg_latency"):
            values = [p[key] for p in per]
            point[key] = round(sum(values) / len(values), 4)
            if len(seeds) > 1:
                point[key + "_per_seed"] = values
        point["sampled_packets"] = sum(p["sampled_packets"] for p in per)
        points.append(point)
    topo = golden_noc.make_topology(topology, dims)
    table = golden_noc.routing_table(topo, routing_scheme)
    if pattern == "layer":
        h = golden_noc.hop_matrix(topo, table)
        pairs = [(n, d) for n, d in enumerate(golden_noc.layer_pipeline(dims)) if d is not None]
        hops = float(sum(h[n, d] for n, d in pairs) / len(pairs))
    else:
        hops = golden_noc.average_hops(topo, table)
    result = {
        "topology": topology, "dims": list(dims), "vcs": vcs, "buffer": buffer,
        "slots": slots, "seeds": list(seeds), "routing_scheme": routing_scheme,
        "packet_flits": packet_flits, "traffic": pattern, "warmup": warmup, "window": window,
        "zero_load_latency": zero["avg_latency"],
        "zero_load_latency_contract": float(golden_noc.zero_load_latency(0, packet_flits) + 2 * hops),
        "average_hops": hops,
        "saturation_throughput": next((p["accepted_throughput"] for p in points
                                       if p["offered_load"] == 1.0), None),
        "points": points,
        "router_ports": golden_noc.port_histogram(topo),
    }
    ref = BOOKSIM.get((tuple(dims), packet_flits)) if topology == "mesh" else None
    if ref is not None and buffer == 8:
        result["booksim2_lean"] = {"zero_load_latency": ref["zero_load_latency"],
                                   "saturation_throughput": ref.get(vcs)}
    return result


def fig8(out_dir, seeds=(1,)):
    """Atleus' Fig. 8 comparison on the RTL: 4x4x4 mesh, mesh with skip links and Atleus
    (2 VCs, 4-flit buffers, 4-flit packets): router port counts, and per traffic pattern the
    average hops, zero-load latency (measured and contract) and latency and accepted
    throughput per offered load. Patterns: uniform random (load 0.1) and the layer-to-layer
    pipeline of :func:`golden.noc.layer_pipeline` (loads 0.1, 0.5, 1.0), on Atleus also with
    its rule routing (``layer_rule_routing``) instead of the default up*/down* table."""
    compare = []
    for topology in ("mesh", "mesh_skip", "atleus"):
        entry = {"topology": topology}
        runs = [("uniform", "uniform", [0.1], "auto"), ("layer", "layer", [0.1, 0.5, 1.0], "auto")]
        if topology == "atleus":
            runs.append(("layer_rule_routing", "layer", [0.1, 0.5, 1.0], "rule"))
        for key, pattern, loads, scheme in runs:
            r = sweep(topology, (4, 4, 4), 2, 4, 4, loads, out_dir, warmup=500, window=1500,
                      seeds=seeds, pattern=pattern, routing_scheme=scheme)
            hist = r["router_ports"]
            entry.update(router_ports=hist,
                         router_port_total=sum(k * v for k, v in hist.items()))
            entry[key] = {k: r[k] for k in ("routing_scheme", "average_hops", "zero_load_latency",
                                                "zero_load_latency_contract")} | {
                "points": [{k: p[k] for k in ("offered_load", "accepted_throughput",
                                              "avg_latency")} for p in r["points"]]}
        compare.append(entry)
    return compare


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        if not r["points"]:
            continue
        xs = [p["offered_load"] for p in r["points"]]
        ys = [p["avg_latency"] for p in r["points"]]
        ax.plot(xs, ys, marker="o",
                label=f"{r['topology']} {'x'.join(map(str, r['dims']))}, {r['vcs']} VC")
    ax.set_xlabel("offered load (flits/node/cycle)")
    ax.set_ylabel("average packet latency (cycles)")
    ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench.noc", description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", default="build/bench")
    parser.add_argument("--topology", default=None, choices=golden_noc.TOPOLOGIES,
                        help="sweep this network only (without it: the default set, see above)")
    parser.add_argument("--dims", default=None, help="network dimensions, e.g. 4x4 or 4x4x4")
    parser.add_argument("--vcs", type=int, default=None)
    parser.add_argument("--packet-flits", type=int, default=None)
    parser.add_argument("--buffer", type=int, default=None)
    parser.add_argument("--slots", type=int, default=None,
                        help="flow slots per output VC (NocRouter slots, default 2)")
    parser.add_argument("--traffic", default="uniform", choices=("uniform", "layer"),
                        help="sweep traffic: uniform random or Atleus' layer pipeline (3D)")
    parser.add_argument("--routing-scheme", default="auto",
                        choices=("auto", "dor", "rule", "updown"),
                        help="routing table of the swept network (NocNetwork routing_scheme)")
    parser.add_argument("--seeds", default="1",
                        help="traffic seeds, comma-separated; each point is the mean over them")
    parser.add_argument("--loads", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0")
    parser.add_argument("--no-zero-load", action="store_true",
                        help="skip the zero-load run (offered load 0.01)")
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--fig8", action="store_true",
                        help="only the Fig. 8 comparison (4x4x4 mesh, mesh_skip, atleus)")
    parser.add_argument("--scoreboard-packets", type=int, default=None,
                        help="packets of the scoreboard run (default 100000 without --topology)")
    parser.add_argument("--patterns", default="uniform,transpose,hotspot",
                        help="scoreboard traffic patterns (comma-separated)")
    args = parser.parse_args(argv)
    network_options = ("dims", "vcs", "packet_flits", "buffer")
    if args.topology is None:
        given = [o for o in network_options if getattr(args, o) is not None]
        given += [o for o, default in (("traffic", "uniform"), ("routing_scheme", "auto"))
                  if getattr(args, o) != default]
        if given:
            parser.error(f"--{given[0].replace('_', '-')} needs --topology (without --topology "
                         f"the benchmark runs its fixed default set)")
    for option, default in zip(network_options, ("4x4", 2, 4, 8)):
        if getattr(args, option) is None:
            setattr(args, option, default)
    if args.slots is None:
        args.slots = 2
    try:
        seeds = tuple(int(x) for x in args.seeds.split(",") if x)
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, not {args.seeds!r}")
    if not seeds:
        parser.error("--seeds needs at least one seed")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loads = [float(x) for x in args.loads.split(",") if x]
    patterns = [x for x in args.patterns.split(",") if x]
    start = time.perf_counter()
    report = {"generated_by": "python -m tb.bench.noc " + " ".join(argv if argv is not None
                                                                    else sys.argv[1:])}
    results = []
    if args.topology is not None:
        from hdl.noc.network import check_network
        try:
            dims = tuple(int(d) for d in args.dims.replace(",", "x").split("x"))
        except ValueError:
            parser.error(f"--dims must be X x Y or X x Y x Z integers (4x4, 4x4x4), "
                         f"not {args.dims!r}")
        if args.traffic == "layer" and (len(dims) != 3 or dims[2] < 3):
            parser.error(f"--traffic layer needs a 3D network of at least 3 tiers, not "
                         f"--dims {args.dims}")
        try:                    # refuse bad network parameters before any build, by name
            check_network(args.topology, dims=dims, vcs=args.vcs, buffer=args.buffer,
                          slots=args.slots, routing_scheme=args.routing_scheme)
        except (TypeError, ValueError) as error:
            parser.error(str(error))
        result = sweep(args.topology, dims, args.vcs, args.buffer, args.packet_flits, loads,
                       out_dir, warmup=args.warmup, window=args.window, slots=args.slots,
                       seeds=seeds, zero_load=not args.no_zero_load, pattern=args.traffic,
                       routing_scheme=args.routing_scheme)
        report.update(result)
        results = [result]
        scoreboard_cfg = (args.topology, dims, args.vcs, args.buffer, args.routing_scheme)
        packets = args.scoreboard_packets or 0
    else:
        if not args.fig8:
            result = sweep("mesh", (4, 4), 2, 8, 4, loads, out_dir,
                           warmup=args.warmup, window=args.window, seeds=seeds)
            report.update(result)
            results = [result]
        report["fig8_comparison"] = fig8(out_dir, seeds)
        scoreboard_cfg = ("mesh", (4, 4), 2, 8, "auto")
        packets = 100000 if args.scoreboard_packets is None and not args.fig8 else \
            (args.scoreboard_packets or 0)
    if packets:
        topology, dims, vcs, buffer, scheme = scoreboard_cfg
        report["scoreboard"] = [dict(
            _simulate("noc_bench_scoreboard", topology, dims, vcs, buffer,
                      {"packets": packets, "seed": 5, "pattern": pattern}, out_dir,
                      slots=args.slots, routing_scheme=scheme),
            topology=topology, dims=list(dims), vcs=vcs, buffer=buffer, routing_scheme=scheme)
            for pattern in patterns]
    report["wall_s"] = round(time.perf_counter() - start, 1)
    (out_dir / "noc.json").write_text(json.dumps(report, indent=2) + "\n")
    if any(r["points"] for r in results):
        plot(results, out_dir / "noc_latency.png")
    print(json.dumps({k: report.get(k) for k in ("zero_load_latency", "saturation_throughput")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
