# amaranth: UnusedElaboratable=no
"""SystolicArray and golden/systolic.py: fast Amaranth-simulator tests at small sizes.

Every output vector is checked against the golden tiler, and every cycle's handshakes
against the golden cycle model (:class:`golden.systolic.TimingModel`).
"""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import systolic as golden
from hdl.systolic import SystolicArray
from tb.packing import pack, unpack


def simulate(dut, inputs, *, idle=0.0, backpressure=0.0, seed=0, max_cycles=100_000):
    """Drive ``inputs`` through ``dut`` with random idle cycles and backpressure.

    Returns the received output vectors and the per-cycle trace
    ``(i.valid, i.payload.last, i.ready, o.valid, o.ready, macs, busy_cycles)``
    (``i.ready`` depends on ``i.payload.last`` even while ``i.valid`` is low).
    """
    rng = random.Random(seed)
    received, trace = [], []
    n_expected = None

    async def bench(ctx):
        index, holding, last = 0, False, 0
        for _ in range(max_cycles):
            if not holding and index < len(inputs) and rng.random() >= idle:
                ctx.set(dut.i.payload.as_value(), pack(dut.i_layout, inputs[index]))
                holding, last = True, inputs[index]["last"]
            ctx.set(dut.i.valid, int(holding))
            ready = rng.random() >= backpressure
            ctx.set(dut.o.ready, int(ready))
            macs, busy = ctx.get(dut.macs), ctx.get(dut.busy_cycles)
            _, _, i_ready, o_valid, payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload)
            trace.append((int(holding), last, i_ready, o_valid, int(ready), macs, busy))
            if holding and i_ready:
                index += 1
                holding = False
            if o_valid and ready:
                received.append(unpack(dut.o_layout, payload.as_value().value))
            if index == len(inputs) and len(received) == n_expected:
                break

    n_expected = sum(x["last"] for x in inputs) * dut.drain_length
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return received, trace


def check_timing(dut, trace):
    """Replay the trace through the golden cycle model: every cycle must agree."""
    model = golden.TimingModel(dut.rows, dut.cols, dut.drain)
    for cycle, (valid, last, ready, o_valid, o_ready, macs, busy) in enumerate(trace):
        assert (macs, busy) == (model.macs, model.busy_cycles), f"counters, cycle {cycle}"
        assert model.step(valid, last, o_ready) == (ready, o_valid), f"cycle {cycle}"


def gemm_case(rng, m, n, k, *, rows, cols, lo=-128, hi=127):
    a = rng.integers(lo, hi + 1, (m, k))
    b = rng.integers(lo, hi + 1, (k, n))
    folds = golden.tile_gemm(a, b, rows, cols)
    return a, b, folds


@pytest.mark.parametrize("rows,cols,drain", [(4, 4, "auto"), (4, 3, "auto"), (3, 5, "auto"),
                                             (4, 2, "rows"), (1, 1, "auto")])
def test_random_gemm_idle_backpressure(rows, cols, drain):
    dut = SystolicArray(rows, cols, drain=drain)
    rng = np.random.default_rng(rows * 10 + cols)
    a, b, folds = gemm_case(rng, 2 * rows + 1, 2 * cols - 1, 6, rows=rows, cols=cols)
    inputs = [v for f in folds for v in golden.fold_inputs(f)]
    expected = [v for f in folds for v in golden.fold_outputs(f, rows=rows, cols=cols, drain=drain)]
    received, trace = simulate(dut, inputs, idle=0.3, backpressure=0.4, seed=rows + cols)
    assert received == expected
    check_timing(dut, trace)
    # The host side puts the tiles back together: the exact GEMM.
    per_fold = [received[i:i + dut.drain_length] for i in range(0, len(received), dut.drain_length)]
    result = golden.assemble(folds, per_fold, a.shape[0], b.shape[1], rows=rows, cols=cols,
                             drain=drain)
    np.testing.assert_array_equal(result, a @ b)


def test_back_to_back_matches_cycle_model():
    rows, cols = 4, 4
    dut = SystolicArray(rows, cols)
    rng = np.random.default_rng(5)
    ks = [1, 2, 3, 4, 5, 1, 9, 4, 3, 16, 1]
    folds = [golden.tile_gemm(rng.integers(-128, 128, (rows, k)),
                              rng.integers(-128, 128, (k, cols)), rows, cols)[0] for k in ks]
    inputs = [v for f in folds for v in golden.fold_inputs(f)]
    expected = [v for f in folds for v in golden.fold_outputs(f, rows=rows, cols=cols)]
    received, trace = simulate(dut, inputs)
    assert received == expected
    check_timing(dut, trace)
    first_in = next(t for t, x in enumerate(trace) if x[0] and x[2])
    last_out = max(t for t, x in enumerate(trace) if x[3] and x[4])
    assert last_out - first_in + 1 == golden.cycle_model(ks, rows, cols)["cycles"]


def test_extremes_and_output_stage():
    rows, cols, shift, out_width = 3, 4, 5, 12
    dut = SystolicArray(rows, cols, out_shift=shift, out_width=out_width)
    cases = [(-128, -128), (127, 127), (-128, 127), (127, -128)]
    folds = []
    for k, (x, y) in zip([1, 7, 64, 3], cases):
        folds += golden.tile_gemm(np.full((rows, k), x), np.full((k, cols), y), rows, cols)
    inputs = [v for f in folds for v in golden.fold_inputs(f)]
    expected = [v for f in folds
                for v in golden.fold_outputs(f, rows=rows, cols=cols, out_shift=shift,
                                             out_width=out_width)]
    received, trace = simulate(dut, inputs, idle=0.2, backpressure=0.5, seed=3)
    assert received == expected
    # The saturation is exercised (at both ends).
    values = {v for x in expected for v in x["data"]}
    assert {-(1 << (out_width - 1)), (1 << (out_width - 1)) - 1} <= values
    check_timing(dut, trace)


# -- golden model and parameter checks ----------------------------------------------------

def test_golden_tiler_partial_folds():
    rng = np.random.default_rng(0)
    for rows, cols, m, n, k, drain in [(4, 4, 9, 7, 5, "auto"), (8, 4, 8, 4, 1, "rows"),
                                       (3, 5, 1, 1, 13, "cols"), (128, 32, 130, 33, 3, "auto")]:
        a = rng.integers(-128, 128, (m, k))
        b = rng.integers(-128, 128, (k, n))
        folds = golden.tile_gemm(a, b, rows, cols)
        assert len(folds) == -(-m // rows) * -(-n // cols)
        np.testing.assert_array_equal(
            golden.run_tiled(a, b, rows=rows, cols=cols, drain=drain), a @ b)


def test_golden_wrap_and_output_stage():
    # Accumulators wrap modulo 2**acc_width.
    a = np.full((1, 4), -128)
    b = np.full((4, 1), -128)
    assert golden.gemm(a, b, acc_width=16)[0, 0] == golden.wrap(4 * 16384, 16)
    assert golden.gemm(a, b, acc_width=16)[0, 0] == 65536 - 65536   # 4*2**14 wraps to 0
    x = np.array([-5, -4, -3, 3, 4, 5, 1000, -1000])
    np.testing.assert_array_equal(golden.output_stage(x, out_shift=1, out_width=8),
                                  [-2, -2, -1, 2, 2, 3, 127, -128])


def test_cycle_model_against_scalesim():
    # The example: 1024x32x256 on 128x32 (8 folds of K=256).
    assert golden.scalesim_v2_cycles(1024, 32, 256, 128, 32) == 8 * (256 + 128 + 32 - 2)
    assert golden.scalesim_v1_cycles(1024, 32, 256, 128, 32) == 2207
    assert golden.ideal_cycles(1024, 32, 256, 128, 32) == 2048
    # Folds back to back, then the fill (rows + cols - 1 cycles to the last PE's result)
    # and the output register: one cycle more than v1, which omits the last fold's read-out.
    assert golden.gemm_cycles(1024, 32, 256, 128, 32) == 8 * 256 + 128 + 32
    assert golden.gemm_cycles(1024, 32, 256, 128, 32) == \
        golden.scalesim_v1_cycles(1024, 32, 256, 128, 32) + 1
    # Closed form == per-cycle model, K below and above the drain length.
    for ks, rows, cols in [([1, 1, 1], 4, 4), ([3, 8, 2, 5], 4, 5), ([40, 1, 40], 16, 3)]:
        model = golden.TimingModel(rows, cols)
        queue = [k - 1 == t for k in ks for t in range(k)]
        cycle, outs = 0, []
        while queue or model.schedule:
            ready, valid = model.step(bool(queue), queue[0] if queue else 0, 1)
            if queue and ready:
                queue.pop(0)
            if valid:
                outs.append(cycle)
            cycle += 1
        assert outs == golden.cycle_model(ks, rows, cols)["out_cycles"]


@pytest.mark.parametrize("kwargs,error,match", [
    ({"rows": 0}, TypeError, r"rows must be a positive integer, not 0"),
    ({"cols": -3}, TypeError, r"cols must be a positive integer, not -3"),
    ({"rows": 2.0}, TypeError, r"rows must be a positive integer, not 2\.0"),
    ({"in_width": 1}, TypeError, r"in_width must be an integer from 2 to 16, not 1"),
    ({"in_width": 17}, TypeError, r"in_width must be an integer from 2 to 16, not 17"),
    ({"acc_width": 15}, ValueError, r"acc_width must be at least 2\*in_width = 16, not 15"),
    ({"in_width": 4, "acc_width": 7}, ValueError, r"acc_width must be at least 2\*in_width = 8"),
    ({"drain": "diag"}, TypeError, r"drain must be one of 'auto', 'cols', 'rows', not 'diag'"),
    ({"out_shift": 32}, ValueError, r"out_shift must be less than acc_width = 32, not 32"),
    ({"out_width": 40}, ValueError, r"out_width must be 0 \(no saturation\) or from 2 to"),
])
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        SystolicArray(**kwargs)


def test_drain_side_and_ports():
    assert SystolicArray(128, 32).drain == "cols"
    assert SystolicArray(128, 32).port_width == 128
    assert SystolicArray(32, 128).drain == "rows"
    assert SystolicArray(32, 128).drain_length == 32
    assert SystolicArray(8, 4, drain="rows").drain_length == 8
    assert SystolicArray(4, 4, out_width=10).o_layout["data"].shape.elem_shape.width == 10


@pytest.mark.parametrize("rows,cols,kwargs", [(4, 4, {}), (8, 4, {"drain": "rows", "out_shift": 6,
                                                                  "out_width": 16}), (128, 32, {})])
def test_bulk_packing_matches_item_by_item(rows, cols, kwargs):
    """tb.packing.pack_many/unpack_many (the cocotb environment's bulk path) give exactly
    pack/unpack of each item, extremes included, for the array's input and output layouts."""
    from tb.packing import pack_many, unpack_many
    array = SystolicArray(rows, cols, **kwargs)
    rng = np.random.default_rng(rows)
    n = 9
    a = rng.integers(-128, 128, (n, rows))
    a[0], a[1] = -128, 127
    b = rng.integers(-128, 128, (n, cols))
    last = rng.integers(0, 2, n)
    words = pack_many(array.i_layout, {"a": np.asfortranarray(a), "b": b, "last": last})
    assert words == [pack(array.i_layout, {"a": a[i].tolist(), "b": b[i].tolist(),
                                           "last": int(last[i])}) for i in range(n)]
    back = unpack_many(array.i_layout, words)
    assert (back["a"] == a).all() and (back["b"] == b).all() and (back["last"] == last).all()
    width = array.o_layout["data"].shape.elem_shape.width
    length = array.o_layout["data"].shape.length
    data = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (n, length))
    data[0], data[1] = -(1 << (width - 1)), (1 << (width - 1)) - 1
    words = pack_many(array.o_layout, {"data": data, "last": last})
    assert [unpack(array.o_layout, w) for w in words] == \
        [{"data": data[i].tolist(), "last": int(last[i])} for i in range(n)]
    with pytest.raises(ValueError, match="does not fit"):
        pack_many(array.i_layout, {"a": a + 1, "b": b, "last": last})


def test_bulk_packing_unaligned_fields():
    """pack_many's bit-by-bit path (fields off byte boundaries, odd widths) equals pack."""
    from amaranth.hdl import signed, unsigned
    from amaranth.lib import data

    from tb.packing import pack_many, unpack_many
    layout = data.StructLayout({"tag": unsigned(3), "v": data.ArrayLayout(signed(12), 5),
                                "w": data.ArrayLayout(unsigned(8), 3), "flag": unsigned(1)})
    rng = np.random.default_rng(7)
    n = 6
    values = {"tag": rng.integers(0, 8, n), "v": rng.integers(-2048, 2048, (n, 5)),
              "w": rng.integers(0, 256, (n, 3)), "flag": rng.integers(0, 2, n)}
    values["v"][0] = -2048
    words = pack_many(layout, values)
    assert words == [pack(layout, {"tag": int(values["tag"][i]), "v": values["v"][i].tolist(),
                                   "w": values["w"][i].tolist(), "flag": int(values["flag"][i])})
                     for i in range(n)]
    back = unpack_many(layout, words)
    assert all((back[k] == values[k]).all() for k in values)
