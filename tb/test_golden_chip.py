"""Mapping and timing of a model on the chip (golden/chip.py)."""

import math

import pytest

from golden import noc, systolic
from golden.chip import (MODELS, REGRESSION_CHIP, REGRESSION_LAYER, REGRESSION_TILE, ChipConfig,
                         all_reram_writes, map_model, mac_counts, model_spec,
                         reram_op_cycles, systolic_kernels, time_model, transfer_cycles)
from golden.pim_tile import mvm_cycles
from golden.transformer import LayerConfig

# The regression chip the RTL issue builds: 2x2x2 cores, tiles of 16 32x32 crossbars, 16x8
# systolic arrays, d_model 64, 2 heads, seq_len 16, LoRA rank 4.
SMALL_TILE, SMALL_CHIP, SMALL_LAYER = REGRESSION_TILE, REGRESSION_CHIP, REGRESSION_LAYER


def test_bert_large_counts_against_hand_arithmetic():
    p = map_model("bert-large", fit="multiplex")
    d = 1024
    assert p.weights == 24 * 12 * d * d == 301_989_888          # 302 M 8-bit weights
    # A 128x128 crossbar of 2-bit cells holds 128 x 32 8-bit weights.
    assert p.crossbars == p.weights // (128 * 32) == 73_728
    # Tiles: one matrix chunk per tile. Per layer: Q|K|V (1024 x 3072) 8 tiles of 96 crossbars;
    # W^O (256 crossbars) 3 tiles; FF1 (1024 crossbars, 12 columns of 8 per tile) 11 tiles;
    # FF2 (4 row chunks of 1024, 256 crossbars each) 12 tiles: 34 tiles, 816 in all.
    assert p.tiles == 24 * (8 + 3 + 11 + 12) == 816
    # 816 tiles > the chip's 48 x 16 = 768: two rounds (16 layers fit, one per column).
    assert ChipConfig().tiles == 768 and p.rounds == 2 and p.layers_per_round == [16, 8]
    with pytest.raises(ValueError, match="bert-large does not fit the chip: layer 16 of 24"):
        map_model("bert-large")


def test_presets_and_custom_layers():
    for name, (layers, d, h, f, nmax, causal) in MODELS.items():
        spec = model_spec(name)
        assert (spec.layers, spec.layer.d_model, spec.layer.heads, spec.layer.d_ff,
                spec.layer.seq_len, spec.layer.causal) == (layers, d, h, f, nmax, causal)
    p = map_model("bert-base")
    assert p.rounds == 1 and p.crossbars == 12 * 12 * 768 * 768 // 4096
    # A custom layer on the regression chip.
    p = map_model(SMALL_LAYER, SMALL_CHIP, layers=2)
    assert p.spec.layers == 2 and p.rounds == 1
    # Q|K|V 64x192: 2 row blocks x 24 crossbar columns (8 weights each) = 48 crossbars, 8
    # columns per 16-crossbar tile: 3 tiles; W^O 1; FF1 64x256: 4; FF2 256x64: 8 row blocks,
    # 2 columns per tile: 4.
    assert [len([t for t in p.layer_tiles[0] if t.matrix == m]) for m in ("wqkv", "wo", "w1", "w2")] == \
        [3, 1, 4, 4]
    assert p.crossbars == 2 * 12 * 64 * 64 // (32 * 8)
    pk = map_model(SMALL_LAYER, SMALL_CHIP, layers=2, placement="pack")
    assert pk.crossbars == p.crossbars and pk.tiles == p.tiles


def test_slc_rate_costs_crossbars():
    full = map_model("bert-base").crossbars
    assert map_model("bert-base", slc_rate=1.0, fit="multiplex").crossbars == 2 * full
    assert map_model("bert-base", slc_rate=0.5, fit="multiplex").crossbars == 3 * full


def test_timing_single_stage_cases_match_cycle_models():
    p = map_model(SMALL_LAYER, SMALL_CHIP, layers=2)
    t = time_model(p, layer=1)
    ops = {op.name: op for op in t.ops}
    # ReRAM stage: tokens x the tile's mvm_cycles (every tile of Q|K|V has 8 crossbars at 8 bits).
    tiles = [u for u in p.layer_tiles[1] if u.matrix == "wqkv"]
    per = max(mvm_cycles(SMALL_TILE, {i: 8 for i in range(u.crossbars)}) for u in tiles)
    assert ops["qkv"].cycles == 16 * per == reram_op_cycles(SMALL_CHIP, tiles, 16)
    assert ops["qkv"].clock == SMALL_CHIP.f_tile
    # Systolic stage: the GEMMs' folds back to back through cycle_model.
    ks = (systolic.gemm_fold_ks(16, 16, 32, 16, 8) * 2)
    k = systolic_kernels(SMALL_LAYER, 16, 8)
    assert k["QK^T"] == systolic.cycle_model(ks, 16, 8)["cycles"]
    assert k["PV"] == systolic.cycle_model(systolic.gemm_fold_ks(16, 32, 16, 16, 8) * 2, 16, 8)["cycles"]
    assert ops["attention"].cycles == k["QK^T"] + k["softmax"] + k["PV"]
    one = LayerConfig(d_model=32, heads=1, d_ff=32, seq_len=20)
    assert systolic_kernels(one, 16, 8)["QK^T"] == systolic.gemm_cycles(20, 20, 32, 16, 8)
    # NoC: zero-load latency over the route's hops, one flit per 32 bits.
    topo, table = SMALL_CHIP.network()
    src = p.layer_tiles[1][0].core
    sysc = SMALL_CHIP.node(*p.layer_columns[1][0], 0)
    cyc, flits, links = transfer_cycles(SMALL_CHIP, src, sysc, 16 * 64 * 3)
    assert flits == 16 * 64 * 3 * 8 // 32
    assert cyc == noc.zero_load_latency(noc.hops(topo, table, src, sysc), flits)
    assert ops["qkv->sys"].cycles == cyc
    # The schedule respects dependencies and resources.
    for op in t.ops:
        for dep in op.deps:
            assert op.start >= ops[dep].end - 1e-15
    assert math.isclose(t.layer_latency_s, max(op.end for op in t.ops))
    # One clock on the regression chip: the schedule in whole cycles.
    for (name, _, start, end), op in zip(t.schedule_cycles(), t.ops):
        assert end - start == op.cycles, name
        assert all(start >= ops[d_].end * 1e9 - 1e-6 for d_ in op.deps)


def test_timing_outputs_and_mac_share():
    t = time_model(map_model("gpt2-medium", fit="multiplex"))
    s = t.summary()
    for key in ("crossbars", "tiles", "reram_cores", "systolic_cores", "reram_mac_share",
                "layer_latency_cycles", "sequence_latency_s", "reram_writes"):
        assert key in s
    m = mac_counts(model_spec("gpt2-medium").layer)
    n, d, r = 1024, 1024, 32
    assert m["reram"] == 12 * d * d * n
    assert m["systolic"] == 2 * n * n * d + 2 * 2 * n * d * r + 3 * 2 * n * d * r
    assert 0 < s["reram_mac_share"] < 1
    assert s["stage_delays_s"]["S2"]["compute"] > 0
    assert s["layer_latency_cycles"] == math.ceil(t.layer_latency_s * 800e6)
    # GPT-2 Medium needs two rounds: a sequence waits for one reprogramming.
    assert math.isclose(t.sequence_latency_s, 24 * t.layer_latency_s + t.reprogram_s)


def test_all_reram_baseline_writes():
    w = all_reram_writes(model_spec("bert-large", seq_len=1024))
    # Atleus V.A: about 5e4 rewrites for BERT-Large at n = 1024: K and V, one vector per token
    # per layer.
    assert w["vector_writes_per_sequence"] == 24 * 2 * 1024
    assert w["weights_per_sequence"] == 24 * 2 * 1024 * 1024


def test_bad_configurations():
    with pytest.raises(TypeError, match="dims must be a tuple of 3 positive integers"):
        ChipConfig(dims=(4, 4))
    with pytest.raises(ValueError, match="dims must have at least 2 tiers"):
        ChipConfig(dims=(4, 4, 1))
    with pytest.raises(TypeError, match="f_tile must be a real number greater than 0"):
        ChipConfig(f_tile=0)
    with pytest.raises(TypeError, match="tiles_per_core must be an integer from 1 to 4096"):
        ChipConfig(tiles_per_core=0)
    with pytest.raises(ValueError, match="topology 'atleus' needs at least 3 tiers"):
        ChipConfig(dims=(2, 2, 2), topology="atleus")
    with pytest.raises(TypeError, match="model must be one of 'bert-base'"):
        map_model("gpt5")
    with pytest.raises(TypeError, match="fit must be one of 'error', 'multiplex'"):
        map_model("bert-base", fit="squeeze")
    with pytest.raises(TypeError, match="placement must be one of 'column', 'pack'"):
        map_model("bert-base", placement="random")
    with pytest.raises(ValueError, match="one layer needs 34 tiles, more than the chip's 16"):
        map_model("bert-large", ChipConfig(dims=(1, 1, 2)))
    with pytest.raises(TypeError, match="mode must be one of 'finetune', 'inference'"):
        time_model(map_model("bert-base"), mode="train")


def test_system_benchmark_writes_its_files(tmp_path):
    import json

    from tb.bench import system
    assert system.main(["--model", "bert-base", "--seq", "128", "--no-errors", "--out-dir", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "system.json").read_text())
    s = data["models"]["bert-base"]
    for key in ("crossbars", "tiles", "reram_cores", "systolic_cores", "reram_mac_share",
                "layer_latency_cycles", "sequence_latency_s", "reram_writes"):
        assert key in s
    assert s["crossbars"] == map_model("bert-base").crossbars
    assert (tmp_path / "system_pipeline.png").stat().st_size > 10_000


def test_bit_true_layer_and_mapper_agree_on_the_regression_chip():
    from golden.transformer import EncoderLayer, random_weights
    layer = EncoderLayer(SMALL_LAYER, random_weights(SMALL_LAYER), tile=SMALL_TILE)
    p = map_model(SMALL_LAYER, SMALL_CHIP)
    for m in ("wqkv", "wo", "w1", "w2"):
        placed = [u for u in p.layer_tiles[0] if u.matrix == m]
        chunks = layer.chunks(m)
        assert len(placed) == len(chunks), m
        assert sorted(u.crossbars for u in placed) == sorted(len(c[2].crossbar_bits) for c in chunks), m
        # The tile timing uses the same crossbars at the same ADC resolutions.
        for u, (_, _, mp) in zip(placed, chunks):
            assert mvm_cycles(SMALL_TILE, mp.crossbar_bits) == reram_op_cycles(SMALL_CHIP, [u], 1)


def test_placement_choices_change_the_schedule():
    from dataclasses import replace
    base = time_model(map_model(SMALL_LAYER, SMALL_CHIP))
    names = {op.name for op in base.ops}
    assert "lora_bwd" in names and "ff1->gelu" not in names
    inf = time_model(map_model(SMALL_LAYER, SMALL_CHIP), mode="inference")
    assert "lora_bwd" not in {op.name for op in inf.ops}
    alt = replace(SMALL_LAYER, wo_stage="s3", gelu_on="systolic", ln2_on="systolic")
    t = time_model(map_model(alt, SMALL_CHIP))
    ops = {op.name: op for op in t.ops}
    assert ops["wo"].stage == "S3" and ops["gelu"].resource.startswith("systolic")
    assert ops["ln2"].resource.startswith("systolic") and "ff2->ln2" in ops
    assert sum(t.noc_bytes.values()) > sum(base.noc_bytes.values())
