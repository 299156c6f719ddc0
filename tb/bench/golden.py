"""Benchmark of the crossbar golden model (issue 3): ``python -m tb.bench.golden``.

256 vectors through a 128x128 int8 matrix in 2-bit cells (``rows=128, cols=512``, 8 input
bit-planes, four weight slices): the ideal ADC (target 20 ms per batch) and the bit-true SAR
with every trial and decision kept (target 200 ms), against a plain ``X @ W`` in the same run.
Every timed result is checked against ``X @ W``. Writes ``build/bench/golden.json``.

OpenBLAS is pinned to one thread when this module is the first to import NumPy (set
``OPENBLAS_NUM_THREADS`` yourself to override): on the 2-core reference machine the small
matrices of this benchmark run faster single-threaded than with two threads.
"""

import os
import sys

if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from golden.crossbar import Crossbar, CrossbarConfig
from golden.noise import NoiseConfig

BATCH, ROWS, COLS = 256, 128, 512


def _time(fn, repeat, warmup=2):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts = np.array(ts) * 1e3
    return {"median_ms": float(np.median(ts)), "min_ms": float(ts.min()), "repeat": repeat}


def run(repeat=20, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (ROWS, ROWS))
    x = rng.integers(-128, 128, (BATCH, ROWS))
    ref = x @ w
    wf, xf = w.astype(np.float64), x.astype(np.float64)

    results = {}
    results["matmul_int64"] = _time(lambda: x @ w, repeat * 5)
    results["matmul_float64"] = _time(lambda: xf @ wf, repeat * 5)
    base = results["matmul_int64"]["median_ms"]

    cases = [
        ("ideal_adc", dict(adc="ideal"), False, 20.0,
         "ideal ADC, lossless (9 bits), no trace"),
        ("ideal_adc_8bit_flip", dict(adc="ideal", adc_bits=8, flip=True), False, 20.0,
         "ideal 8-bit ADC with ISAAC column flip (Atleus tile), no trace"),
        ("ideal_adc_trace", dict(adc="ideal"), True, None,
         "ideal ADC with the per-conversion trace (column sums and codes as int64)"),
        ("sar_trace", dict(adc="sar", adc_bits=8, flip=True), True, 200.0,
         "bit-true 8-bit SAR with flip, every trial and decision kept"),
        ("sar_trace_9bit", dict(adc="sar", adc_bits=9), True, 200.0,
         "bit-true 9-bit SAR, no flip, every trial and decision kept"),
        ("sar_noisy_trace", dict(adc="sar", adc_bits=8, flip=True,
                                 noise=NoiseConfig(prog_sigma=0.05, read_sigma=0.05, comp_offset_sigma=0.1,
                                                   comp_noise_sigma=0.1)), True, None,
         "bit-true SAR with programming, read and comparator noise (per-vector keyed streams)"),
    ]
    for name, kw, trace, target, what in cases:
        xb = Crossbar(CrossbarConfig(rows=ROWS, cols=COLS, cell_bits=2, weight_bits=8, input_bits=8, **kw))
        xb.program(w)
        out = xb.mvm(x, step=0, trace=trace)
        y = out[0] if trace else out
        noisy = "noise" in kw
        if not noisy:
            assert np.array_equal(y, ref), name
        r = _time(lambda: xb.mvm(x, step=0, trace=trace), repeat if not noisy else max(3, repeat // 4))
        r.update(what=what, target_ms=target, exact=bool(np.array_equal(y, ref)),
                 ratio_to_matmul_int64=r["median_ms"] / base,
                 ratio_to_matmul_float64=r["median_ms"] / results["matmul_float64"]["median_ms"])
        if target is not None:
            r["meets_target"] = r["median_ms"] <= target
        if trace:
            r["trace_decisions"] = int(out[1].decisions.size) if out[1].decisions is not None else 0
        results[name] = r

    return {
        "benchmark": "golden crossbar MVM, 256 vectors x 128x128 int8, 2-bit cells (rows=128, cols=512)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
                    "processor": platform.processor() or platform.machine()},
        "results": results,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.bench.golden")
    parser.add_argument("--out-dir", default="build/bench")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    report = run(repeat=args.repeat)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "golden.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, r in report["results"].items():
        tgt = f" (target {r['target_ms']:.0f} ms)" if r.get("target_ms") else ""
        ratio = f"  x{r['ratio_to_matmul_int64']:.0f} of X @ W" if "ratio_to_matmul_int64" in r else ""
        print(f"{name:22s} median {r['median_ms']:8.2f} ms  min {r['min_ms']:8.2f} ms{tgt}{ratio}")
    print(f"wrote {out / 'golden.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
