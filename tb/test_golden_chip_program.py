"""The layer as a host program (golden.chip_program) equals the layer itself, on the golden
core models: the program is right before the RTL runs it."""

import numpy as np
import pytest

from golden import chip_program as cp
from golden.chip import REGRESSION_CHIP, REGRESSION_LAYER, REGRESSION_TILE
from golden.transformer import EncoderLayer, random_weights
from tb.env.chip_layer import NOISE, regression_case


@pytest.mark.parametrize("noise", [None, NOISE], ids=["ideal", "noisy"])
def test_program_equals_the_layer(noise):
    layer, x, g = regression_case(noise)
    prog = cp.layer_program(layer, x, g)
    got = cp.execute(prog)
    want = cp.expected_results(layer, x, g)
    assert set(want) <= set(got)
    for name, v in want.items():
        assert np.array_equal(got[name], v), name


def test_fences_count_every_write():
    """Each command's fence is exactly the number of words its node has received (from the
    host and the other cores) when it runs in program order."""
    layer, x, g = regression_case()
    trace = []
    cp.execute(cp.layer_program(layer, x, g), trace=trace)
    for label, node, wait, received in trace:
        assert wait == received, (label, node)
    assert len({node for _, node, _, _ in trace}) == 3
    assert any(wait > 0 for label, _, wait, _ in trace if label.startswith("dA"))


def test_the_program_fits_the_regression_chip():
    layer, x, g = regression_case()
    prog = cp.layer_program(layer, x, g)
    assert set(prog.sys_cfg) == {0}
    assert all(node >= 4 for node in prog.pim_cfg)
    assert max(prog.mem_words.values()) < cp.HOST_FIRST


def test_uncalibrated_layer_is_refused():
    cfg = REGRESSION_LAYER
    layer = EncoderLayer(cfg, random_weights(cfg), tile=REGRESSION_TILE)
    with pytest.raises(ValueError, match="formats"):
        cp.layer_program(layer, np.zeros((cfg.seq_len, cfg.d_model), dtype=np.int64))


def test_a_program_runs_twice_the_same():
    """Host steps do not change the program: a second run has the same fences and results."""
    layer, x, g = regression_case()
    prog = cp.layer_program(layer, x, g)
    t1, t2 = [], []
    r1, r2 = cp.execute(prog, trace=t1), cp.execute(prog, trace=t2)
    assert t1 == t2
    assert all(np.array_equal(r1[k], r2[k]) for k in r1 if k != "host")
