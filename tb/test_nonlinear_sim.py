# amaranth: UnusedElaboratable=no
"""NonlinearUnit in the Amaranth simulator: every word against the golden kernels of
:mod:`golden.nonlinear` (random rows, extremes, refused commands, reset in mid-operation), the
latency and throughput contract, and parameter validation."""

import numpy as np
import pytest

from golden import nonlinear as nl
from hdl.nonlinear import Function, NonlinearUnit, command_layout
from tb.env.nonlinear import GoldenUnit, bad_jobs, extreme_jobs, random_jobs, run_sim
from tb.packing import pack
from tb.sim_streams import stream_put

CONFIGS = {
    "w16": dict(width=16, out_width=16, max_len=16),
    "w8": dict(width=8, out_width=12, max_len=7),
}


def _check(jobs, words):
    k = 0
    for n, job in enumerate(jobs):
        got = words[k:k + len(job.words)]
        assert got == job.words, f"job {n} ({job.kind}, {job.cmd}): expected {job.words}, got {got}"
        k += len(job.words)
    assert k == len(words)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_random_rows(config):
    """Random rows of every function and length, random parameters, idle cycles and
    backpressure on every stream."""
    params = CONFIGS[config]
    gold = GoldenUnit(NonlinearUnit(**params))
    rng = np.random.default_rng(5)
    jobs = random_jobs(gold, rng, 60)
    assert {j.kind for j in jobs} >= {"softmax", "layernorm", "gelu", "add", "load_gamma"}
    out = run_sim(params, jobs, seed=3, idle=0.3, backpressure=0.4)
    _check(jobs, out["words"])
    assert out["rule_checks"] > 20        # stalls with a word waiting did happen


@pytest.mark.parametrize("config", list(CONFIGS))
def test_extremes_and_bad_commands(config):
    """Saturating softmax inputs, all-equal rows, zero variance, the extreme input values;
    each refused command gives one error word, takes no element and is followed by a correct
    command."""
    params = CONFIGS[config]
    gold = GoldenUnit(NonlinearUnit(**params))
    ext, bad = extreme_jobs(gold), bad_jobs(gold)
    jobs = []
    for k, job in enumerate(ext):
        jobs.append(job)
        if k < len(bad):
            jobs.append(bad[k])
    jobs += bad[len(ext):]
    jobs += random_jobs(gold, np.random.default_rng(1), 2)
    out = run_sim(params, jobs, seed=4, idle=0.2, backpressure=0.3)
    _check(jobs, out["words"])
    # The extremes reach the saturation limits of the kernels.
    sm = [w["data"] for j in ext if j.kind == "softmax" for w in j.words]
    assert 127 in sm and 0 in sm
    assert sum(j.kind == "bad" for j in jobs) >= 11


def test_zero_variance_layernorm_clamps_std():
    """An all-equal row has var = 0 and std clamped to 1: the output is beta_q."""
    params = CONFIGS["w16"]
    gold = GoldenUnit(NonlinearUnit(**params))
    n = params["max_len"]
    beta = np.arange(n) - 5
    jobs = [gold.load(np.full(n, 1 << 13), "gamma"), gold.load(beta, "beta"),
            gold.layernorm(np.full(n, -1234), gamma_frac=13, out_scale_log2=0)]
    out = run_sim(params, jobs, seed=1, idle=0.1, backpressure=0.1)
    _check(jobs, out["words"])
    assert [w["data"] for w in jobs[-1].words] == beta.tolist()


@pytest.mark.parametrize("config", list(CONFIGS))
def test_latency_and_throughput(config):
    """No idle, no backpressure: the first word of a row comes ``row_latency`` cycles after
    its last element, then one word per cycle; GELU and ADD words come
    ``pipeline_latency`` cycles after their element; elements go in one per cycle from the
    cycle after the command; the next command is taken in the cycle after the last word."""
    params = CONFIGS[config]
    unit = NonlinearUnit(**params)
    gold = GoldenUnit(unit)
    for which in ("gamma", "beta"):
        job = GoldenUnit(unit).load(np.arange(3), which)
        out = run_sim(params, [job, job], idle=0.0, backpressure=0.0)
        assert out["cmd_cycles"][1] - out["cmd_cycles"][0] == unit.command_cycles(
            Function.LOAD_GAMMA, 3)
    bad = bad_jobs(gold)[:2]
    out = run_sim(params, bad, idle=0.0, backpressure=0.0)
    assert out["cmd_cycles"][1] - out["cmd_cycles"][0] == 2
    for n in (1, 2, params["max_len"]):
        row = (np.arange(n) * 37) % 200 - 100
        for fn, job in ((Function.SOFTMAX, gold.softmax(row, 2.0 ** -6)),
                        (Function.LAYERNORM, gold.layernorm(row, gamma_frac=4, out_scale_log2=0)),
                        (Function.GELU, gold.gelu(row, 2.0 ** -4, 2.0 ** -4)),
                        (Function.ADD, gold.add(row, row[::-1], shift=1, out_bits=8))):
            out = run_sim(params, [job, job], idle=0.0, backpressure=0.0)
            _check([job, job], out["words"])
            first, last_in = out["cycles"][0], out["i_cycles"][n - 1]
            if fn in (Function.GELU, Function.ADD):
                lat = np.array(out["cycles"][:n]) - out["i_cycles"][:n]
                assert set(lat.tolist()) == {unit.pipeline_latency}
            else:
                assert first - last_in == unit.row_latency(fn, n), (fn, n)
            assert set(np.diff(out["cycles"][:n]).tolist()) <= {1}
            assert out["cmd_cycles"][1] == out["cycles"][n - 1] + 1
            assert out["cmd_cycles"][1] - out["cmd_cycles"][0] == unit.command_cycles(fn, n)
            assert out["i_cycles"][0] == out["cmd_cycles"][0] + 1
            assert set(np.diff(out["i_cycles"][:n]).tolist()) <= {1}


def _prelude(job, *, elements, wait, cmd_layout):
    """Send ``job``'s command and its first ``elements`` elements, run ``wait`` cycles with
    ``o.ready`` high, then pulse reset; checks that the unit was busy and is idle after."""
    seen = {}

    async def prelude(ctx, dut, rst, count):
        ctx.set(dut.o.ready, 1)
        await stream_put(ctx, dut.cmd, pack(cmd_layout, job.cmd))
        for x in job.i[:elements]:
            await stream_put(ctx, dut.i, x)
        words = 0
        for _ in range(wait):
            words += ctx.get(dut.o.valid)
            await ctx.tick()
        seen["busy"] = ctx.get(dut.busy)
        seen["words"] = words
        ctx.set(rst, 1)
        await ctx.tick()
        ctx.set(rst, 0)
        ctx.set(dut.o.ready, 0)
        seen["after"] = (ctx.get(dut.busy), ctx.get(dut.o.valid))
    return prelude, seen


@pytest.mark.parametrize("phase", ["load", "exp", "divide", "out", "ln_var", "ln_sqrt",
                                   "gelu_stream"])
def test_reset_mid_operation(phase):
    """Reset in every phase of a command: the unit is idle after it and the following
    commands (each function, a refused one) are correct."""
    params = CONFIGS["w16"]
    unit = NonlinearUnit(**params)
    n, w, d = params["max_len"], params["width"], unit.divider_cycles
    gold = GoldenUnit(unit)
    row = np.arange(n) * 1000 - 7000
    sm = gold.softmax(row, 2.0 ** -8)
    ln = gold.layernorm(row, gamma_frac=4, out_scale_log2=0)
    ge = gold.gelu(row, 2.0 ** -6, 2.0 ** -6)
    job, elements, wait = {
        "load": (sm, n // 2, 3),
        "exp": (sm, n, n // 2 + 3),
        "divide": (sm, n, n + w + 3 + d // 2),
        "out": (sm, n, unit.row_latency(Function.SOFTMAX, n) + n // 2),
        "ln_var": (ln, n, d + n // 2 + 2),
        "ln_sqrt": (ln, n, 2 * d + n + 8),
        "gelu_stream": (ge, n // 2, 3),
    }[phase]
    prelude, seen = _prelude(job, elements=elements, wait=wait,
                             cmd_layout=unit.cmd.payload.shape())
    after = GoldenUnit(unit)
    jobs = [after.softmax(row[::-1], 2.0 ** -7), after.gelu(row, 2.0 ** -6, 2.0 ** -6)]
    jobs += bad_jobs(after)[:1]
    jobs += random_jobs(after, np.random.default_rng(2), 6)
    out = run_sim(params, jobs, seed=7, idle=0.2, backpressure=0.2, prelude=prelude)
    assert seen["busy"] == 1 and seen["after"] == (0, 0)
    if phase in ("out", "gelu_stream"):
        assert 0 < seen["words"] < n            # reset with the row half out
    else:
        assert seen["words"] == 0
    _check(jobs, out["words"])


# -- parameters -----------------------------------------------------------------------------

@pytest.mark.parametrize("kw, match", [
    (dict(width=3), r"width must be an integer from 4 to 24, not 3"),
    (dict(width=16.0), r"width must be an integer from 4 to 24, not 16\.0"),
    (dict(out_width=33), r"out_width must be an integer from 2 to 32, not 33"),
    (dict(max_len=0), r"max_len must be an integer from 1 to 65536, not 0"),
    (dict(max_len=True), r"max_len must be an integer from 1 to 65536, not True"),
])
def test_parameter_errors(kw, match):
    with pytest.raises(TypeError, match=match):
        NonlinearUnit(**kw)


def test_command_builder_errors():
    u = NonlinearUnit(16, out_width=12, max_len=8)
    with pytest.raises(TypeError, match=r"length must be an integer from 1 to 8, not 9"):
        u.softmax_command(9, 0.01)
    with pytest.raises(TypeError, match=r"out_bits must be an integer from 2 to 12, not 13"):
        u.gelu_command(2, q_clip=1, q_b=1, q_c=1, q_one=1, m=1, r=1, out_bits=13)
    with pytest.raises(TypeError, match=r"out_bits must be an integer from 2 to 12, not 13"):
        u.softmax_command(2, 0.01, out_bits=13)
    with pytest.raises(TypeError, match=r"out_bits must be an integer from 2 to 16, not 17"):
        NonlinearUnit(16, out_width=20).softmax_command(2, 0.01, out_bits=17)
    with pytest.raises(TypeError, match=r"recip_bits must be an integer from 8 to 48, not 49"):
        u.softmax_command(2, 0.01, recip_bits=49)
    with pytest.raises(TypeError, match=r"scale must be a real number greater than 0"):
        u.softmax_command(2, -1.0)
    with pytest.raises(ValueError, match=r"q_b = 2837446 does not fit the unit's 20-bit signed "
                                         r"field \(-524288 to 524287\)"):
        u.softmax_command(2, 2.0 ** -21)
    with pytest.raises(ValueError,
                       match=r"m = 1000000 does not fit the unit's 18-bit signed field"):
        u.gelu_command(2, q_clip=1, q_b=1, q_c=1, q_one=1, m=10 ** 6, r=1)
    with pytest.raises(TypeError, match=r"shift must be an integer from -63 to 127, not -64"):
        u.add_command(2, shift=-64, out_bits=8)
    with pytest.raises(ValueError, match=r"gamma_frac \+ norm_frac \+ out_scale_log2 must be at "
                                         r"least -63, not -100"):
        u.layernorm_command(2, gamma_frac=-50, out_scale_log2=-50, norm_frac=0)
    with pytest.raises(TypeError, match=r"which must be one of 'gamma', 'beta', not 'mu'"):
        u.load_command(2, "mu")
    with pytest.raises(ValueError, match=r"fn must be a row function"):
        u.row_latency(Function.LOAD_GAMMA, 2)


def test_builders_match_golden_constants():
    """A command carries exactly the golden call's constants (q_ln2 capped where it is
    equivalent) and packs into the command layout."""
    u = NonlinearUnit(16, out_width=16, max_len=8)
    lay = command_layout(16, 16, 8)
    c = nl.exp_constants(2.0 ** -8)
    cmd = u.softmax_command(8, 2.0 ** -8, out_bits=8, recip_bits=32)
    assert cmd["params"]["softmax"] == {"q_ln2": c["q_ln2"], "q_b": c["q_b"], "q_c": c["q_c"],
                                        "recip_bits": 32}
    assert u.softmax_command(8, 2.0 ** -17)["params"]["softmax"]["q_ln2"] == 1 << 16
    g = nl.gelu_constants(2.0 ** -10, 2.0 ** -8)
    cmd = u.gelu_command(8, **g, out_bits=8)
    assert {k: cmd["params"]["gelu"][k] for k in g} == g
    for cmd in (u.softmax_command(1, 0.1), u.gelu_command(1, **g),
                u.add_command(1, shift=2, out_bits=3),
                u.layernorm_command(1, gamma_frac=3, out_scale_log2=-2), u.load_command(1, "beta")):
        pack(lay, cmd)


def test_registered():
    from hdl.registry import blocks
    b = blocks(on_error=lambda name, e: None)["nonlinear_unit"]
    assert b.cls is NonlinearUnit and b.module_name == "nonlinear_unit"
    assert {p.name for p in b.params} == {"width", "out_width", "max_len"}


def test_transformer_layer_kernels():
    """The unit reproduces the nonlinear tensors of a bit-true encoder layer
    (:class:`golden.transformer.EncoderLayer`, the regression layer with a causal mask): the
    attention probabilities from the masked scores, both LayerNorms and the GELU, with the
    layer's own formats and LayerNorm weights."""
    import math

    from golden.chip import REGRESSION_TILE
    from golden.transformer import EncoderLayer, LayerConfig, random_weights

    cfg = LayerConfig(d_model=64, heads=2, d_ff=256, seq_len=16, lora_rank=4, causal=True)
    x = np.random.default_rng(1).normal(0, 1, (cfg.seq_len, cfg.d_model))
    layer = EncoderLayer(cfg, random_weights(cfg, 3), tile=REGRESSION_TILE, seed=5)
    F = layer.calibrate(x)
    _, t = layer.forward(layer.quantize_input(x), taps=True)
    params = dict(width=cfg.res_bits, out_width=16, max_len=cfg.d_model)
    unit = NonlinearUnit(**params)
    gold = GoldenUnit(unit)
    jobs, want = [], []
    dh = cfg.d_head
    mask = np.triu(np.ones((cfg.seq_len, cfg.seq_len), dtype=bool), 1)
    for h in range(cfg.heads):
        sl = slice(h * dh, (h + 1) * dh)
        s = layer.gemm(t["q"][:, sl], t["k"][:, sl].T, out_shift=F["q"] + F["k"] - F["s"],
                       out_width=cfg.score_bits)
        s = np.where(mask, -(1 << (cfg.score_bits - 1)), s)
        for row in s:
            jobs.append(gold.softmax(row, 2.0 ** -F["s"] / math.sqrt(dh), out_bits=cfg.act_bits))
        want.append(t["p"][h])
    w = layer.weights
    for src, g, b, dst in (("r1", "ln1_g", "ln1_b", "h"), ("r2", "ln2_g", "ln2_b", "y")):
        c = nl.layernorm_constants(w[g], w[b], 2.0 ** -F[dst])
        jobs += [gold.load(c["gamma_q"], "gamma"), gold.load(c["beta_q"], "beta")]
        jobs += [gold.layernorm(row, gamma_frac=c["gamma_frac"], out_scale_log2=-F[dst],
                                out_bits=cfg.act_bits) for row in t[src]]
        want.append(t[dst])
    f1 = t["f1"].reshape(-1, cfg.d_model)
    jobs += [gold.gelu(row, 2.0 ** -F["f1"], 2.0 ** -F["g"], out_bits=cfg.act_bits) for row in f1]
    want.append(t["g"])
    out = run_sim(params, jobs, seed=9, idle=0.1, backpressure=0.1)
    _check(jobs, out["words"])
    # ... and the golden calls of the jobs are the layer's: the rows give its tensors.
    rows = [j for j in jobs if not j.kind.startswith("load")]
    got = np.concatenate([[wd["data"] for wd in j.words] for j in rows])
    assert np.array_equal(got, np.concatenate([np.ravel(a) for a in want]))
    assert any(-(1 << (cfg.score_bits - 1)) in j.i for j in rows if j.kind == "softmax")
