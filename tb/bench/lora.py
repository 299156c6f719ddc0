"""LoRA fine-tuning benchmark (golden/lora.py): integer gradients at BERT-Large size against the
float64 reference, and the teacher/student experiment with analog noise and drift.

    python -m tb.bench.lora [--ranks 4,32] [--steps 300] [--d 64] [--out-dir build/bench]

Writes ``<out-dir>/lora.json``: ``gradients`` (relative Frobenius error of the integer dA, dB,
dT, dX for one BERT-Large LoRA step, n = 512, d = 1024, r = 32, and the CPU time of the exact
integer GEMMs), ``experiments`` (per analog model, ``chip`` (bit-true crossbars) or
``gaussian`` (Atleus V.E's fixed Gaussian weight noise), and per rank: the loss curves of hardware-aware training,
Atleus-style noise injection and ideal training, the final relative error on the chip at
t0, 1 h, 1 day and 1 month with global drift compensation, W0 alone for comparison, and
the ReRAM write counts), and ``<out-dir>/lora_curve.png``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from golden.lora import (DRIFT_TIMES, finetune_experiment, lora_backward, lora_forward,
                         lora_grads_float, quantize_pow2)


def gradient_check(n=512, d=1024, r=32, seed=0):
    rng = np.random.default_rng(seed)
    x, a = rng.normal(0, 1, (n, d)), rng.normal(0, 1 / np.sqrt(d), (d, r))
    b, g = rng.normal(0, 0.1, (r, d)), rng.normal(0, 1e-3, (n, d))
    start = time.process_time()
    (xq, fx), (aq, fa), (bq, fb), (gq, fg) = (quantize_pow2(v) for v in (x, a, b, g))
    _, _, t, ft = lora_forward(xq, fx, aq, fa, bq, fb)
    got = lora_backward(xq, fx, t, ft, gq, fg, aq, fa, bq, fb)
    cpu = time.process_time() - start
    ref = lora_grads_float(x, a, b, g)
    macs = 2 * n * d * r + 3 * n * d * r + n * d * r
    return {"shape": {"n": n, "d": d, "r": r}, "cpu_s": round(cpu, 3), "macs": macs,
            "rel_err": {k: float(np.linalg.norm(got["float"][k] - ref[k]) / np.linalg.norm(ref[k]))
                        for k in ("dA", "dB", "dT", "dX")}}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tb.bench.lora", description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", default="4,32")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--d", type=int, default=64, help="width of the projection (d x d)")
    ap.add_argument("--out-dir", default="build/bench")
    args = ap.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.process_time()
    result = {"gradients": gradient_check(), "experiments": {}}
    gr = result["gradients"]
    print(f"integer LoRA gradients (n=512, d=1024, r=32) vs float64: "
          + ", ".join(f"{k} {v:.4f}" for k, v in gr["rel_err"].items()) + f" ({gr['cpu_s']} CPU s)")
    runs = [(analog, int(v)) for analog in ("chip", "gaussian") for v in args.ranks.split(",")]
    for analog, r in runs:
        res = finetune_experiment(d=args.d, r=r, steps=args.steps, analog=analog)
        result["experiments"][f"{analog}_r{r}"] = res
        p = res["params"]
        what = ("bit-true crossbars (golden.pim_tile)" if analog == "chip" else
                f"Atleus V.E's model, W0 + N(0, {p['weight_sigma']} max|W0|) fixed")
        print(f"\nteacher/student, d={args.d}, r={r}, analog W0 = {what}: error of W0 alone "
              f"{p['chip_rel_output_error_t0']:.3f}, after the best full-rank linear correction "
              f"{p['chip_error_after_best_linear_correction']:.3f}, "
              f"injection sigma {p['injection_sigma_rel_max']:.4f} x max|W0|")
        print(f"  {'':10}" + "".join(f"{k:>8}" for k in DRIFT_TIMES) + "   (relative L2 error on the chip)")
        print(f"  {'W0 only':10}" + "".join(f"{v:8.4f}" for v in res["no_lora"].values()))
        for mode, v in res["final"].items():
            print(f"  {mode:10}" + "".join(f"{x:8.4f}" for x in v.values())
                  + f"   train loss {res['loss_curve'][mode][-1][1]:.4f}")
        w = res["writes"]
        print(f"  ReRAM cells written: LoRA flow {w['lora_flow_cells']} once; all-ReRAM LoRA "
              f"{w['all_reram_lora_cells']}, all-ReRAM full fine-tuning {w['all_reram_full_finetune_cells']} "
              f"over {args.steps} steps")
    result["cpu_s"] = round(time.process_time() - start, 2)
    (out_dir / "lora.json").write_text(json.dumps(result, indent=1, default=float))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    exps = result["experiments"]
    ncol = len(exps) // 2
    fig, axes = plt.subplots(2, ncol, figsize=(6 * ncol, 8), squeeze=False)
    for ax, (name, res) in zip(axes.flat, exps.items()):
        for mode, curve in res["loss_curve"].items():
            s, e = zip(*curve)
            ax.plot(s, e, label=f"{mode} (chip t0: {res['final'][mode]['t0']:.3f})")
        ax.axhline(res["no_lora"]["t0"], color="gray", ls="--", label="W0 alone on the chip")
        ax.axhline(res["params"]["chip_rel_output_error_t0"], color="black", ls=":",
                   label="analog error of W0 (chip vs float)")
        if res["params"]["analog"] == "chip":
            ax.axhline(res["params"]["chip_error_after_best_linear_correction"], color="purple", ls="-.",
                       label="... after the best linear correction")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("relative L2 error, training batch")
        ax.set_title(f"{name.replace('_', ' analog W0, LoRA ')}, d={args.d}: training loss", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "lora_curve.png", dpi=100)
    plt.close(fig)
    print(f"\nwrote {out_dir / 'lora.json'} and {out_dir / 'lora_curve.png'} ({result['cpu_s']} CPU s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
