"""System benchmark: a transformer mapped on the Atleus chip and timed, with the kernels' and the
layer's errors (golden/chip.py, golden/transformer.py, golden/nonlinear.py).

    python -m tb.bench.system [--model bert-large|all|...] [--seq N] [--lora-rank R]
                              [--mode finetune|inference] [--batch B] [--fit multiplex|error]
                              [--placement column|pack] [--tile-clock HZ] [--dims X,Y,Z]
                              [--no-errors]
                              [--out-dir build/bench]

Writes ``<out-dir>/system.json``: ``models`` (per model, timing the second layer, whose input arrives over the NoC: ``crossbars``, ``tiles``,
``reram_cores``, ``systolic_cores``, ``reram_mac_share``, ``layer_latency_cycles`` (systolic
clock), ``sequence_latency_s``, ``reram_writes`` and the rest of
:meth:`golden.chip.Timing.summary`, plus ``isaac_adc`` (the same model with the tile clock at
which one SAR ADC per crossbar matches ISAAC's 1.28 GS/s), ``cpu_s`` and
``model_cycles_per_cpu_s``), ``systolic_sweep`` (Atleus Fig. 6: each systolic kernel's delay over
the slowest ReRAM stage for arrays of 1024, 2048 and 4096 PEs), ``kernel_errors``
(:func:`golden.nonlinear.kernel_errors`) and ``layer_errors`` (the integer layer against the
float64 reference: M8F8, M8F4, M4F8, M4F4, also with float activations to isolate the weight
quantization, and SLC rates 0..1 with noise). Also
``<out-dir>/system_pipeline.png``: a Gantt chart of one layer of BERT-Large (or of the first
model when it is not run) at both
tile clocks, and a zoom on its systolic stage.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from golden import chip as gchip
from golden import nonlinear
from golden.noise import NoiseConfig
from golden.pim_tile import TileConfig
from golden.quant import quantize_crossbarwise
from golden.transformer import EncoderLayer, LayerConfig, random_weights, relative_l2

#: Tile clock at which this tile (one 8-bit SAR ADC per 128-column crossbar: per input plane
#: one sample cycle and 8 trials per column, 1025 cycles) reads a plane in ISAAC's 100 ns
#: (128 columns at 1.28 GS/s).
ISAAC_TILE_CLOCK = (1 + 128 * 8) / 100e-9

#: Systolic arrays of Atleus Fig. 6 (1024, 2048 and 4096 PEs).
SWEEP = [(32, 32), (64, 16), (16, 64), (64, 32), (32, 64), (128, 16), (64, 64), (128, 32),
         (32, 128), (256, 16)]


def _chip(args, tile_clock):
    kw = {}
    if tile_clock is not None:
        kw["f_tile"] = tile_clock
    if args.dims:
        kw["dims"] = tuple(int(v) for v in args.dims.split(","))
    return gchip.ChipConfig(**kw)


def run_model(name, args, tile_clock=None):
    chip = _chip(args, tile_clock)
    start = time.process_time()
    p = gchip.map_model(name, chip, seq_len=args.seq, lora_rank=args.lora_rank, fit=args.fit,
                        placement=args.placement)
    # Layer 1: its input comes over the NoC from layer 0's last core (layer 0 reads HBM).
    t = gchip.time_model(p, mode=args.mode, batch=args.batch, layer=min(1, p.spec.layers - 1))
    s = t.summary()
    cpu = time.process_time() - start
    s["cpu_s"] = round(cpu, 3)
    s["model_cycles_per_cpu_s"] = s["layer_latency_cycles"] * p.spec.layers / max(cpu, 1e-9)
    return s, t


def systolic_sweep(name, args, tile_clock):
    """Fig. 6: each kernel's delay (systolic clock) over the slowest ReRAM stage (tile clock)."""
    spec = gchip.model_spec(name, seq_len=args.seq, lora_rank=args.lora_rank)
    chip = _chip(args, tile_clock)
    p = gchip.map_model(spec, chip, fit="multiplex", placement=args.placement)
    tiles = p.layer_tiles[0]
    reram = max(gchip.reram_op_cycles(chip, [u for u in tiles if u.matrix == m], spec.layer.seq_len)
                for m in ("wqkv", "w1", "w2")) / chip.f_tile
    out = {}
    for rows, cols in SWEEP:
        k = gchip.systolic_kernels(spec.layer, rows, cols, mode=args.mode, nl_lanes=chip.nl_lanes)
        norm = {kk: v / chip.f_systolic / reram for kk, v in k.items()}
        norm["total"] = sum(norm.values())
        out[f"{rows}x{cols}"] = {"pes": rows * cols, **{kk: round(v, 4) for kk, v in norm.items()}}
    return {"reram_stage_s": reram, "arrays": out}


def layer_errors(seed=0):
    """The integer layer against the float64 reference (a 128-wide layer, 128x128 crossbars)."""
    base = dict(d_model=128, heads=2, d_ff=512, seq_len=32, lora_rank=8)
    w = random_weights(LayerConfig(**base), seed)
    x = np.random.default_rng(seed + 1).normal(0, 1, (32, 128))
    out = {"config": base, "quant": {}, "weight_only": {}, "slc": {}}
    ref = EncoderLayer(LayerConfig(**base), w).forward_float(x)
    tile = TileConfig()
    for a, f in ((8, 8), (8, 4), (4, 8), (4, 4)):
        cfg = LayerConfig(**base, attn_weight_bits=a, ff_weight_bits=f)
        out["quant"][f"M{a}F{f}"] = EncoderLayer(cfg, w).relative_error(x)
        # Weight quantization alone: the float layer with crossbar-wise quantized weights.
        wq = dict(w)
        for name in ("wq", "wk", "wv", "wo", "w1", "w2"):
            bits = cfg.weight_bits(name)
            qi, sc = quantize_crossbarwise(w[name], weight_bits=bits, rows=tile.rows,
                                           cols_per_xbar=tile.cols * 2 // bits)
            wq[name] = qi * np.repeat(np.repeat(sc, tile.rows, 0), tile.cols * 2 // bits, 1)[
                :qi.shape[0], :qi.shape[1]]
        out["weight_only"][f"M{a}F{f}"] = relative_l2(EncoderLayer(cfg, wq).forward_float(x), ref)
    cfg = LayerConfig(**base)
    # The same conductance noise is 3x larger in MLC level steps (4 levels in SLC's window).
    noise = {"slc": NoiseConfig(prog_sigma=0.02 / 3, read_sigma=0.004 / 3),
             "mlc": NoiseConfig(prog_sigma=0.02, read_sigma=0.004)}
    out["slc_noise"] = {"mlc_prog_sigma": 0.02, "slc_prog_sigma": 0.02 / 3, "mlc_read_sigma": 0.004,
                        "slc_read_sigma": 0.004 / 3}
    out["ideal_M8F8"] = out["quant"]["M8F8"]
    for r in (0.0, 0.25, 0.5, 0.75, 1.0):
        layer = EncoderLayer(cfg, w, slc_rate=r, noise=noise, seed=seed)
        out["slc"][f"{r:.2f}"] = {"rel_l2": layer.relative_error(x), "crossbars": layer.n_crossbars}
    return out


def _label(resource):
    kind, _, rest = resource.partition(":")
    if kind == "tiles":
        return {"wqkv": "tiles W^Q|W^K|W^V", "wo": "tiles W^O", "w1": "tiles W^F1",
                "w2": "tiles W^F2"}.get(rest, resource)
    if kind == "route":
        return f"NoC {rest}"
    if kind == "systolic":
        return f"systolic core {rest}"
    if kind == "nl":
        return f"nonlinear unit {rest}"
    return resource.upper()


def gantt(timings, path):
    """Gantt chart: one layer for each ``(label, Timing)``, then a zoom on stage S2."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    colors = {"S1": "#4c72b0", "S2": "#dd8452", "S3": "#55a868", "S4": "#c44e52"}
    fig, axes = plt.subplots(len(timings) + 1, 1, figsize=(12, 4.2 * (len(timings) + 1)))

    def draw(ax, ops, lo=None, hi=None, min_label=0.04):
        resources = []
        for op in ops:
            if op.duration > 0 and op.resource not in resources:
                resources.append(op.resource)
        span = ((hi if hi is not None else max(op.end for op in ops) * 1e3)
                - (lo if lo is not None else 0.0))
        for op in ops:
            if op.duration <= 0:
                continue
            y = resources.index(op.resource)
            ax.barh(y, op.duration * 1e3, left=op.start * 1e3, color=colors[op.stage], edgecolor="black",
                    linewidth=0.4, hatch="//" if op.kind != "compute" else None)
            mid = (op.start + op.duration / 2) * 1e3
            if op.duration * 1e3 > min_label * span and (lo is None or lo <= mid <= hi):
                ax.text(mid, y, op.name, ha="center", va="center", fontsize=8, color="white",
                        fontweight="bold", clip_on=True)
        ax.set_yticks(range(len(resources)))
        ax.set_yticklabels([_label(r) for r in resources], fontsize=8)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
        if lo is not None:
            ax.set_xlim(lo, hi)

    for ax, (label, t) in zip(axes, timings):
        s = t.summary()
        draw(ax, t.ops)
        st = s["stage_delays_s"]
        ax.set_title(f"{s['model']} n={s['seq_len']} r={s['lora_rank']} ({s['mode']}), one layer: "
                     f"{s['layer_latency_s'] * 1e3:.2f} ms; {label}. Compute per stage (ms): "
                     + ", ".join(f"{k} {v['compute'] * 1e3:.2f}" for k, v in st.items()), fontsize=9)
        ax.set_xlabel("time (ms)")
    t = timings[0][1]
    ops = {op.name: op for op in t.ops}
    lo, hi = ops["qkv->sys"].start * 1e3, ops["ctx->wo"].end * 1e3
    pad = 0.05 * (hi - lo)
    draw(axes[-1], t.ops, lo - pad, hi + pad, min_label=0.03)
    axes[-1].set_title("zoom on stage S2 (systolic core: attention, LoRA backward) and its transfers",
                       fontsize=9)
    axes[-1].set_xlabel("time (ms)")
    handles = [Patch(color=c, label=st) for st, c in colors.items()]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="NoC / HBM"))
    axes[0].legend(handles=handles, loc="upper right", fontsize=8, ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tb.bench.system", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="bert-large", help="a preset or 'all' (%s)" % ", ".join(gchip.MODELS))
    ap.add_argument("--seq", type=int, default=None, help="sequence length (default: the model's maximum)")
    ap.add_argument("--lora-rank", type=int, default=32)
    ap.add_argument("--mode", default="finetune", choices=("finetune", "inference"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--fit", default="multiplex", choices=("multiplex", "error"))
    ap.add_argument("--placement", default="column", choices=("column", "pack"))
    ap.add_argument("--tile-clock", type=float, default=None, help="tile clock in Hz (default 1e9)")
    ap.add_argument("--dims", default=None, help="cores X,Y,tiers (default Atleus's 4,4,4)")
    ap.add_argument("--no-errors", action="store_true", help="skip the layer error table")
    ap.add_argument("--out-dir", default="build/bench")
    args = ap.parse_args(argv)
    names = list(gchip.MODELS) if args.model == "all" else [args.model]
    for n in names:
        if n not in gchip.MODELS:
            ap.error(f"--model must be 'all' or one of {', '.join(gchip.MODELS)}, not {n!r}")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.process_time()
    result = {"args": vars(args), "models": {}, "systolic_sweep": {}}
    first_timing = first_isaac = None
    print(f"{'model':13} {'n':>5} {'xbars':>7} {'tiles':>5} {'cores':>5} {'sys':>4} {'rnd':>3} "
          f"{'MAC%':>6} {'MAC%eq':>6} {'layer ms':>9} {'seq s':>7} {'S2/S1':>6} {'isaac layer ms':>14}")
    for n in names:
        s, t = run_model(n, args, args.tile_clock)
        si, ti = run_model(n, args, ISAAC_TILE_CLOCK)
        s["isaac_adc"] = {k: si[k] for k in ("layer_latency_cycles", "layer_latency_s", "sequence_latency_s",
                                              "throughput_seq_per_s", "pipeline_balance", "bottleneck",
                                              "stage_delays_s")}
        s["isaac_adc"]["f_tile"] = ISAAC_TILE_CLOCK
        result["models"][n] = s
        result["systolic_sweep"][n] = {"f_tile_1GHz": systolic_sweep(n, args, 1e9),
                                       "isaac_adc": systolic_sweep(n, args, ISAAC_TILE_CLOCK)}
        if first_timing is None or n == "bert-large":      # the chart: BERT-Large if run
            first_timing, first_isaac = t, ti
        print(f"{n:13} {s['seq_len']:5d} {s['crossbars']:7d} {s['tiles']:5d} {s['reram_cores']:5d} "
              f"{s['systolic_cores']:4d} {s['rounds']:3d} {100 * s['reram_mac_share']:6.2f} "
              f"{100 * s['reram_mac_share_paper_eq']:6.2f} {s['layer_latency_s'] * 1e3:9.3f} "
              f"{s['sequence_latency_s']:7.3f} {s['pipeline_balance']['systolic_over_slowest_reram']:6.3f} "
              f"{si['layer_latency_s'] * 1e3:14.3f}")
    for n in names:
        sw = result["systolic_sweep"][n]
        print(f"\nFig. 6 ({n}): systolic stage delay / slowest ReRAM stage (1 GHz tile | ISAAC ADC rate)")
        for arr, v in sw["f_tile_1GHz"]["arrays"].items():
            vi = sw["isaac_adc"]["arrays"][arr]
            print(f"  {arr:>7} {v['pes']:5d} PEs  total {v['total']:.4f} | {vi['total']:.3f}   "
                  f"QK^T {vi['QK^T']:.3f} softmax {vi['softmax']:.3f} PV {vi['PV']:.3f} "
                  f"LoRA A {vi['LoRA A']:.3f} LoRA B {vi['LoRA B']:.3f} bwd {vi['LoRA bwd']:.3f}")
        w = result["models"][n]["reram_writes"]
        b = w["all_reram_baseline"]
        print(f"ReRAM writes ({n}): LoRA flow programs {w['lora_program_once_cells']:.3e} cells once, "
              f"{w['lora_per_sequence_cells']:.3e} per sequence (multiplexing); all-ReRAM baseline "
              f"{b['vector_writes_per_sequence']} vector writes = {b['cells_per_sequence']:.3e} cells per "
              f"sequence + {b['lora_cells_per_step']:.3e} cells per step")
    ke = nonlinear.kernel_errors()
    result["kernel_errors"] = ke
    print("\nInteger kernels against float64:")
    for k, v in ke.items():
        print(f"  {k:12} {v['range']:24} max abs {v['max_abs_err']:.2e}  rel L2 {v['rel_l2']:.2e}")
    if not args.no_errors:
        le = layer_errors()
        result["layer_errors"] = le
        print(f"\nLayer error against float64 (relative L2), {le['config']}:")
        for k, v in le["quant"].items():
            print(f"  {k}: {v:.4f}  (weight quantization alone, float activations: "
                  f"{le['weight_only'][k]:.4f})")
        print(f"  SLC rate with noise {le['slc_noise']}:")
        for k, v in le["slc"].items():
            print(f"    {k}: {v['rel_l2']:.4f} ({v['crossbars']} crossbars)")
    result["cpu_s"] = round(time.process_time() - start, 2)
    (out_dir / "system.json").write_text(json.dumps(result, indent=1, default=float))
    clk = first_timing.chip.f_tile / 1e9
    gantt([(f"tile clock {clk:.2f} GHz (this tile's RTL)", first_timing),
           (f"tile clock {ISAAC_TILE_CLOCK / 1e9:.2f} GHz (ISAAC's ADC rate)", first_isaac)],
          out_dir / "system_pipeline.png")
    print(f"\nwrote {out_dir / 'system.json'} and {out_dir / 'system_pipeline.png'} "
          f"({result['cpu_s']} CPU s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
