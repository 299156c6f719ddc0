"""The Atleus chip as a model: configuration, mapping of a transformer onto it, and timing.

- :class:`ChipConfig`: tiers of cores (tier 0 systolic, the others ReRAM), tiles per ReRAM
  core, the systolic core, clocks, NoC and HBM, with Atleus's values as defaults.
- :func:`map_model`: a preset model (:data:`MODELS`) or a custom :class:`LayerConfig` placed on
  the chip: each layer's static weights as tile chunks (:func:`golden.transformer.chunk_plan`,
  the same cut the bit-true layer uses) on ReRAM cores, layer ``k`` on the ``k``-th column of
  cores along the tier's space-filling curve (:func:`golden.noc.layer_pipeline`'s mapping:
  attention stage on the top tier, FF stages on the tiers below), its dynamic work on the
  systolic core under that column. A model that does not fit is refused (``fit="error"``) or
  time-multiplexed in rounds of resident layers with its ReRAM rewrites counted
  (``fit="multiplex"``).
- :func:`time_model`: a transaction-level model of one layer and of the whole sequence:
  every operation's duration comes from the cycle models the RTL matches
  (:func:`golden.pim_tile.mvm_cycles` per tile, :func:`golden.systolic.gemm_cycles` /
  :func:`golden.systolic.cycle_model` per GEMM, :func:`golden.noc.zero_load_latency` for a
  transfer's head-to-tail time with its flits serialized on each link of its route), HBM
  transfers from bandwidth; operations start when their inputs are done and their resource
  is free (a list scheduler over the dependency graph, which is the discrete-event schedule of
  a deterministic in-order machine). The 4-stage layer pipeline (Atleus Fig. 10) gives the
  throughput: one sequence per bottleneck-resource time.

Choices where the papers are silent (each a parameter, documented where it is defined):
tile and NoC clocks, flit payload and packet size, the nonlinear unit's lanes, ReRAM write
time, where the GELU and the second LayerNorm run, W^O's stage, the fine-tuning batch, and
that the backward pass through the frozen weights is not timed (as in Atleus Eq. 3, which
counts the LoRA backward GEMMs only).

Units: every ``*_cycles`` value in results is in cycles of the systolic clock
(``f_systolic``, 800 MHz) unless named otherwise; ``*_s`` are seconds.
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from . import noc, systolic
from ._check import check_choice, check_int, check_real
from .pim_tile import DEFAULT_ADC_BITS, TileConfig, mvm_cycles
from .transformer import LayerConfig, chunk_plan

__all__ = ["ChipConfig", "MODELS", "REGRESSION_TILE", "REGRESSION_CHIP", "REGRESSION_LAYER",
           "ModelSpec", "model_spec", "Placement", "map_model",
           "Op", "Timing", "time_model", "systolic_kernels", "transfer_cycles", "reram_op_cycles",
           "mac_counts", "all_reram_writes"]

#: Model presets: ``(layers, d_model, heads, d_ff, max_seq_len, causal)`` (Atleus V.A's models:
#: BERT-Base/Large and RoBERTa-Base from their papers' configurations, GPT-2 Medium and
#: BLOOM-560m from their Hugging Face configurations).
MODELS = {
    "bert-base": (12, 768, 12, 3072, 512, False),
    "bert-large": (24, 1024, 16, 4096, 512, False),
    "roberta-base": (12, 768, 12, 3072, 512, False),
    "gpt2-medium": (24, 1024, 16, 4096, 1024, True),
    "bloom-560m": (24, 1024, 16, 4096, 2048, True),
}


@dataclass(frozen=True)
class ChipConfig:
    """The chip's parameters; defaults are Atleus's (Table IV, Section V.A) unless noted.

    Parameters
    ----------
    dims : tuple of int
        ``(X, Y, tiers)``: ``X * Y`` cores per tier; tier 0 holds the systolic cores, tiers
        1 .. tiers-1 the ReRAM cores (Atleus: 4x4 cores, 3 ReRAM tiers over 1 systolic tier).
    tiles_per_core : int
        PIM tiles per ReRAM core (Atleus: 16).
    tile : TileConfig
        The tile (Atleus Table IV: 96 crossbars of 128x128, 2-bit cells, one 8-bit ADC per
        crossbar, 12 scale registers: ``TileConfig()``).
    systolic_rows, systolic_cols : int
        PEs of the systolic core (Atleus: 128x32, Section V.B).
    systolic_sram_bits : int
        SRAM per systolic core (Atleus: 1 Mb).
    acc_width : int
        Systolic accumulator width (32).
    f_systolic : float
        Systolic clock (Atleus: 800 MHz); the reference clock of ``*_cycles`` results.
    f_tile : float
        Tile clock. Not in the papers: 1 GHz, the clock at which this repository's tile RTL
        makes one SAR trial per cycle (``mvm_cycles``: 1025 cycles per input plane of a
        128-column crossbar with one 8-bit ADC). ISAAC's ADC (1.28 GS/s, 128 columns in
        100 ns) would need 10.25 GHz of this tile's trial clock; the benchmark reports both.
    f_noc : float
        NoC clock. Not in the papers: 1 GHz.
    topology : {"auto", "atleus", "mesh"}
        NoC topology (:mod:`golden.noc`); ``"auto"``: Atleus's (mesh tier 0, space-filling
        curve chains, TSVs and skip links) with 3 or more tiers, else a 3D mesh.
    flit_bits : int
        Payload bits per flit (the NoC RTL's ``payload_width``, 32).
    vcs : int
        Virtual channels per link (the NoC RTL's default, 2): a transfer uses one, so it
        changes no zero-load time; kept for the RTL's configuration.
    hbm_bytes_per_s : float
        HBM bandwidth per tier (Atleus Table IV: 256 GB/s, HBM2).
    nl_lanes : int
        Elements per cycle of a core's nonlinear unit (softmax, LayerNorm, GELU). Not in the
        papers: 128, the systolic core's output port width (``rows`` values per drained
        vector), so the unit keeps pace with the array.
    reram_row_write_s : float
        Time to program one crossbar row with program-and-verify, all crossbars of the chip in
        parallel. Not in the papers: 1 us.
    noc_buffer : int
        Input buffer depth per VC in flits (the NoC RTL's ``buffer``, 8); the timing model's
        zero-load times do not depend on it.
    pim_mem_words : int
        Local memory words of a ReRAM core (``vector_length`` 16-bit elements each; the RTL's
        ``PimCore(mem_words=)``). Not in the papers: 4096.
    cmd_depth : int
        Commands each node's shell queues behind its fence (``hdl.chip.CoreNode(cmd_depth=)``);
        a full queue holds the node's receive side. Not in the papers: 64.

    The chip RTL's vectors (:attr:`vector_length`) are ``max(tile.rows, systolic_rows)``
    16-bit elements.
    """

    dims: tuple = (4, 4, 4)
    tiles_per_core: int = 16
    tile: TileConfig = field(default_factory=TileConfig)
    systolic_rows: int = 128
    systolic_cols: int = 32
    systolic_sram_bits: int = 1 << 20
    acc_width: int = 32
    f_systolic: float = 800e6
    f_tile: float = 1e9
    f_noc: float = 1e9
    topology: str = "auto"
    flit_bits: int = 32
    vcs: int = 2
    hbm_bytes_per_s: float = 256e9
    nl_lanes: int = 128
    reram_row_write_s: float = 1e-6
    noc_buffer: int = 8
    pim_mem_words: int = 4096
    cmd_depth: int = 64

    def __post_init__(self):
        d = self.dims
        if (not isinstance(d, tuple) or len(d) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in d)):
            raise TypeError(f"dims must be a tuple of 3 positive integers (X, Y, tiers), not {d!r}")
        if d[2] < 2:
            raise ValueError(f"dims must have at least 2 tiers (one systolic, one ReRAM), not {d!r}")
        if d[0] * d[1] < 1 or d[0] * d[1] * d[2] < 2:
            raise ValueError(f"dims must describe at least 2 cores, not {d!r}")
        check_int("tiles_per_core", self.tiles_per_core, 1, 4096)
        if not isinstance(self.tile, TileConfig):
            raise TypeError(f"tile must be a TileConfig, not {self.tile!r}")
        check_int("systolic_rows", self.systolic_rows, 1, 4096)
        check_int("systolic_cols", self.systolic_cols, 1, 4096)
        check_int("systolic_sram_bits", self.systolic_sram_bits, 8)
        check_int("acc_width", self.acc_width, 16, 64)
        for name in ("f_systolic", "f_tile", "f_noc", "hbm_bytes_per_s", "reram_row_write_s"):
            check_real(name, getattr(self, name), 0, lo_open=True)
        check_choice("topology", self.topology, ("auto", "atleus", "mesh"))
        if self.topology == "atleus" and d[2] < 3:
            raise ValueError(f"topology 'atleus' needs at least 3 tiers (skip links), not dims {d!r}")
        check_int("flit_bits", self.flit_bits, 8, 1024)
        check_int("vcs", self.vcs, 1, 16)
        check_int("nl_lanes", self.nl_lanes, 1, 4096)
        check_int("noc_buffer", self.noc_buffer, 3, 256)
        check_int("pim_mem_words", self.pim_mem_words, 2, 32768)
        check_int("cmd_depth", self.cmd_depth, 1, 1024)

    @property
    def vector_length(self):
        """Elements of every NoC vector and core memory word of the chip RTL:
        ``max(tile.rows, systolic_rows)``."""
        return max(self.tile.rows, self.systolic_rows)

    @property
    def cores_per_tier(self):
        return self.dims[0] * self.dims[1]

    @property
    def reram_tiers(self):
        return self.dims[2] - 1

    @property
    def reram_cores(self):
        return self.cores_per_tier * self.reram_tiers

    @property
    def systolic_cores(self):
        return self.cores_per_tier

    @property
    def crossbars(self):
        return self.reram_cores * self.tiles_per_core * self.tile.crossbars

    @property
    def tiles(self):
        return self.reram_cores * self.tiles_per_core

    @property
    def pes(self):
        return self.systolic_rows * self.systolic_cols

    def topology_name(self):
        if self.topology != "auto":
            return self.topology
        return "atleus" if self.dims[2] >= 3 else "mesh"

    def network(self):
        """``(topology, routing table)`` from :mod:`golden.noc` (cached per configuration)."""
        key = (self.topology_name(), self.dims)
        if key not in _NETS:
            topo = noc.make_topology(key[0], self.dims)
            _NETS[key] = (topo, noc.routing_table(topo))
        return _NETS[key]

    def curve(self):
        """The ``(x, y)`` cells of a tier in space-filling-curve order (Hilbert for a square
        power-of-two tier, serpentine otherwise), as :func:`golden.noc.layer_pipeline` uses."""
        X, Y, _ = self.dims
        if X == Y and X & (X - 1) == 0 and X > 1:
            return noc.hilbert_curve(X.bit_length() - 1)
        return noc.serpentine_curve(X, Y)

    def node(self, x, y, z):
        X, Y, _ = self.dims
        return x + X * (y + Y * z)


_NETS = {}

#: The small regression chip the chip RTL is checked on (cycle for cycle against
#: :func:`time_model`, bit for bit against :class:`golden.transformer.EncoderLayer`): 2x2 cores
#: on 2 tiers (one systolic, one ReRAM; 3D mesh NoC), 8 tiles of 16 32x32 crossbars per ReRAM
#: core (lossless 8-bit ADCs: 32 rows x 3 levels < 256), 16x8 systolic arrays with 1 Mb SRAM
#: (Atleus' per core; :func:`golden.chip_program.layer_program` uses 0.8 Mb), 256-word
#: ReRAM-core memories, one clock for tiles, systolic cores and NoC (as one RTL clock domain), so every op's
#: ``cycles`` and the schedule's start and end times are in the same cycles.
REGRESSION_TILE = TileConfig(crossbars=16, rows=32, cols=32, row_blocks=8, outputs=256, group=8)
REGRESSION_CHIP = ChipConfig(dims=(2, 2, 2), tiles_per_core=8, tile=REGRESSION_TILE, systolic_rows=16,
                             systolic_cols=8, systolic_sram_bits=1 << 20, f_systolic=1e9, f_tile=1e9,
                             f_noc=1e9, pim_mem_words=256)
#: Its layer: d_model 64, 2 heads, d_ff 256, 16 tokens, LoRA rank 4 on W^Q and W^V.
REGRESSION_LAYER = LayerConfig(d_model=64, heads=2, d_ff=256, seq_len=16, lora_rank=4)


@dataclass(frozen=True)
class ModelSpec:
    """A model: ``layers`` identical layers of ``layer`` (a :class:`LayerConfig`)."""
    name: str
    layers: int
    layer: LayerConfig


def model_spec(model, *, seq_len=None, lora_rank=32, layers=None, **layer_kw):
    """A :class:`ModelSpec` from a preset name, a :class:`LayerConfig` or a ModelSpec.

    Parameters
    ----------
    model : str or LayerConfig or ModelSpec
        A key of :data:`MODELS`, or one layer (then ``layers`` gives the count, default 1).
    seq_len : int or None
        Tokens per sequence (preset default: the model's maximum, as Atleus V.B uses).
    lora_rank : int
        LoRA rank for presets (Atleus: 32 on W^Q and W^V).
    **layer_kw
        Further :class:`LayerConfig` fields for presets (``attn_weight_bits``...).
    """
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, LayerConfig):
        n = 1 if layers is None else check_int("layers", layers, 1)
        return ModelSpec("custom", n, model)
    if not isinstance(model, str) or model not in MODELS:
        raise TypeError(f"model must be one of {', '.join(map(repr, MODELS))}, a LayerConfig or "
                        f"a ModelSpec, not {model!r}")
    nl_, d, h, f, nmax, causal = MODELS[model]
    n = nmax if seq_len is None else check_int("seq_len", seq_len, 1)
    cfg = LayerConfig(d_model=d, heads=h, d_ff=f, seq_len=n, lora_rank=lora_rank, causal=causal,
                      **layer_kw)
    return ModelSpec(model, nl_ if layers is None else check_int("layers", layers, 1), cfg)


# --------------------------------------------------------------------------------------------
# Mapping

#: The layer's matrices on the tiles: name -> (stage, input, shape function). Q, K and V share
#: their input and are one ``(d, 3d)`` matrix on the tiles (one input vector per tile).
def _layer_matrices(cfg):
    d, f = cfg.d_model, cfg.d_ff
    wo_stage = "S1" if cfg.wo_stage == "s1" else "S3"
    return [("wqkv", "S1", (d, 3 * d), cfg.attn_weight_bits),
            ("wo", wo_stage, (d, d), cfg.attn_weight_bits),
            ("w1", "S3", (d, f), cfg.ff_weight_bits),
            ("w2", "S4", (f, d), cfg.ff_weight_bits)]


@dataclass
class TileUse:
    """One tile holding one chunk of a matrix."""
    layer: int
    matrix: str
    stage: str
    core: int          # NoC node of the ReRAM core
    slot: int          # tile index in the core
    crossbars: int
    cell_bits: int
    weight_bits: int


class Placement:
    """A model placed on the chip (made by :func:`map_model`).

    Members
    -------
    tiles_used : list of TileUse
        Every used tile of the resident layers of round 0 and, for a multiplexed model, of the
        later rounds (``round_of_layer``).
    crossbars, tiles, reram_cores, systolic_cores : int
        Counts for the whole model (all rounds).
    rounds : int
        Rounds of resident layers (1 when the model fits).
    """

    def __init__(self, spec, chip, *, placement, fit, slc_rate, layer_tiles, layer_cores,
                 layer_columns, rounds, round_of_layer, layers_per_round):
        self.spec, self.chip = spec, chip
        self.placement, self.fit, self.slc_rate = placement, fit, slc_rate
        self.layer_tiles = layer_tiles          # layer -> list of TileUse (in its round)
        self.layer_cores = layer_cores          # layer -> {stage: [core nodes]}
        self.layer_columns = layer_columns      # layer -> [(x, y)]
        self.rounds = rounds
        self.round_of_layer = round_of_layer
        self.layers_per_round = layers_per_round

    @property
    def cfg(self):
        return self.spec.layer

    @property
    def crossbars(self):
        return sum(t.crossbars for ts in self.layer_tiles.values() for t in ts)

    @property
    def tiles(self):
        return sum(len(ts) for ts in self.layer_tiles.values())

    @property
    def weights(self):
        return self.spec.layers * self.cfg.static_weights()

    @property
    def reram_cores(self):
        """Distinct ReRAM cores used (over all rounds: the cores of the largest round)."""
        per_round = {}
        for layer, ts in self.layer_tiles.items():
            per_round.setdefault(self.round_of_layer[layer], set()).update(t.core for t in ts)
        return max(len(s) for s in per_round.values())

    @property
    def systolic_cores(self):
        per_round = {}
        for layer, cols in self.layer_columns.items():
            per_round.setdefault(self.round_of_layer[layer], set()).update(cols)
        return max(len(s) for s in per_round.values())

    def utilization(self):
        """Used fraction of the chip's crossbars, tiles and ReRAM cores (largest round), and
        the used crossbars' share of their tiles' crossbars."""
        c = self.chip
        per_round_x, per_round_t = {}, {}
        for layer, ts in self.layer_tiles.items():
            r = self.round_of_layer[layer]
            per_round_x[r] = per_round_x.get(r, 0) + sum(t.crossbars for t in ts)
            per_round_t[r] = per_round_t.get(r, 0) + len(ts)
        return {"crossbars": max(per_round_x.values()) / c.crossbars,
                "tiles": max(per_round_t.values()) / c.tiles,
                "reram_cores": self.reram_cores / c.reram_cores,
                "crossbars_in_used_tiles": self.crossbars / (self.tiles * c.tile.crossbars)}

    def reram_writes(self, *, batch=1):
        """ReRAM programming counted in cells and in crossbar programs.

        ``program_once``: the first programming of every used crossbar (all cells of the
        crossbar, ``rows * cols``). ``per_batch``: rewrites of a time-multiplexed model per
        batch of sequences: with more than one round every round is programmed once per batch
        (the layers of the other rounds overwrite it). LoRA adds none: the adapters live in
        the systolic cores' SRAM and HBM.
        """
        t = self.chip.tile
        cells = t.rows * t.cols
        once = self.crossbars
        per_batch = self.crossbars if self.rounds > 1 else 0
        return {"program_once_crossbars": once, "program_once_cells": once * cells,
                "per_batch_crossbars": per_batch, "per_batch_cells": per_batch * cells,
                "per_sequence_cells": per_batch * cells / batch}


def _matrix_tiles(name, shape, weight_bits, tile, slc_rate):
    """``[(crossbars, cell_bits)]``, one per tile chunk of a matrix (SVD split: both parts)."""
    t = replace(tile, weight_bits=weight_bits)
    if slc_rate is None or slc_rate == 0.0:
        parts = [2]
    elif slc_rate == 1.0:
        parts = [1]
    else:
        parts = [1, 2]
    out = []
    for cb in parts:
        n_out = t.n_out(cb)
        for r0, r1, c0, c1 in chunk_plan(*shape, cb, t):
            out.append((-(-(r1 - r0) // t.rows) * -(-(c1 - c0) // n_out), cb))
    return out


def map_model(model, chip=None, *, seq_len=None, lora_rank=32, placement="column", fit="error",
              slc_rate=None, **layer_kw):
    """Place a model's static weights on the ReRAM cores and its dynamic work on the systolic
    cores.

    Parameters
    ----------
    model : str or LayerConfig or ModelSpec
        See :func:`model_spec` (``layers`` may be passed in ``layer_kw`` for a LayerConfig).
    chip : ChipConfig
    placement : {"column", "pack"}
        ``"column"`` (Atleus, Section IV.B): layer ``k`` takes the next free column(s) of cores
        along the space-filling curve; its S1 matrices go to the top ReRAM tier, S3 to tier 1,
        S4 to tier 2 (tiers wrap when there are fewer than three ReRAM tiers), spilling to the
        column's other ReRAM cores when a core is full; the systolic core under the column runs
        its dynamic work. ``"pack"``: tiles filled in curve order across all ReRAM cores (top
        tier first), layers sharing cores, the systolic core of the column of the layer's
        first tile.
    fit : {"error", "multiplex"}
        A model that does not fit: ``ValueError`` naming what does not fit, or rounds of
        resident layers with the crossbars reprogrammed between rounds
        (:meth:`Placement.reram_writes`).
    slc_rate : float or None
        HyFlexPIM hybrid mapping (more crossbars: SLC holds half the weights of MLC).

    Each matrix chunk occupies one tile (a tile reads one input vector,
    ``golden.pim_tile``); Q, K and V share theirs and are mapped as one ``(d, 3d)`` matrix.
    """
    spec = model_spec(model, seq_len=seq_len, lora_rank=lora_rank, **layer_kw)
    chip = ChipConfig() if chip is None else chip
    if not isinstance(chip, ChipConfig):
        raise TypeError(f"chip must be a ChipConfig, not {chip!r}")
    check_choice("placement", placement, ("column", "pack"))
    check_choice("fit", fit, ("error", "multiplex"))
    if slc_rate is not None:
        slc_rate = check_real("slc_rate", slc_rate, 0, 1)
    cfg = spec.layer
    X, Y, Z = chip.dims
    curve = chip.curve()
    tpc = chip.tiles_per_core
    # Tiles of one layer per stage.
    stage_chunks = {}
    for name, stage, shape, wb in _layer_matrices(cfg):
        for xb, cb in _matrix_tiles(name, shape, wb, chip.tile, slc_rate):
            if xb > chip.tile.crossbars:
                raise ValueError(f"a chunk of {name} needs {xb} crossbars, more than tile.crossbars "
                                 f"({chip.tile.crossbars})")
            stage_chunks.setdefault(stage, []).append((name, xb, cb, wb))
    n_layer_tiles = sum(len(v) for v in stage_chunks.values())
    if n_layer_tiles > chip.tiles:
        raise ValueError(f"one layer needs {n_layer_tiles} tiles, more than the chip's {chip.tiles} "
                         f"(reram cores x tiles_per_core); no round can hold it")
    stage_tier = {"S1": Z - 1, "S3": 1, "S4": 2 if Z - 1 >= 3 else 1}

    layer_tiles, layer_cores, layer_columns, round_of_layer = {}, {}, {}, {}
    rnd = 0
    free = None                        # (x, y, z) -> free tiles, per round
    next_col = 0
    pack_pos = 0

    def new_round():
        return {(x, y, z): tpc for x in range(X) for y in range(Y) for z in range(1, Z)}

    free = new_round()
    layers_per_round = []
    count = 0
    for layer in range(spec.layers):
        placed = None
        for attempt in range(2):
            if placement == "column":
                placed = _place_column(stage_chunks, stage_tier, free, curve, next_col, chip, layer)
            else:
                placed = _place_pack(stage_chunks, free, curve, pack_pos, chip, layer)
            if placed is not None:
                break
            if fit == "error":
                raise ValueError(
                    f"{spec.name} does not fit the chip: layer {layer} of {spec.layers} finds no room "
                    f"({n_layer_tiles} tiles per layer, {chip.tiles} tiles on {chip.reram_cores} ReRAM "
                    f"cores, placement {placement!r}); use fit='multiplex' or a larger chip (dims)")
            layers_per_round.append(count)
            count = 0
            rnd += 1
            free, next_col, pack_pos = new_round(), 0, 0
        if placed is None:
            raise ValueError(f"layer {layer} does not fit an empty chip with placement {placement!r}")
        tiles, cores, cols, next_col, pack_pos = placed
        layer_tiles[layer], layer_cores[layer], layer_columns[layer] = tiles, cores, cols
        round_of_layer[layer] = rnd
        count += 1
    layers_per_round.append(count)
    return Placement(spec, chip, placement=placement, fit=fit, slc_rate=slc_rate,
                     layer_tiles=layer_tiles, layer_cores=layer_cores, layer_columns=layer_columns,
                     rounds=rnd + 1, round_of_layer=round_of_layer, layers_per_round=layers_per_round)


def _place_column(stage_chunks, stage_tier, free, curve, next_col, chip, layer):
    X, Y, Z = chip.dims
    for ncols in range(1, len(curve) - next_col + 1):
        cols = curve[next_col:next_col + ncols]
        trial = dict(free)
        tiles, cores = [], {}
        ok = True
        for stage in ("S1", "S3", "S4"):
            pref = stage_tier[stage]
            order = [(x, y, pref) for x, y in cols] + [(x, y, z) for z in range(Z - 1, 0, -1)
                                                        for x, y in cols if z != pref]
            for name, xb, cb, wb in stage_chunks.get(stage, []):
                spot = next((c for c in order if trial[c] > 0), None)
                if spot is None:
                    ok = False
                    break
                slot = chip.tiles_per_core - trial[spot]
                trial[spot] -= 1
                node = chip.node(*spot)
                tiles.append(TileUse(layer, name, stage, node, slot, xb, cb, wb))
                cores.setdefault(stage, [])
                if node not in cores[stage]:
                    cores[stage].append(node)
            if not ok:
                break
        if ok:
            free.clear()
            free.update(trial)
            return tiles, cores, list(cols), next_col + ncols, 0
    return None


def _place_pack(stage_chunks, free, curve, pack_pos, chip, layer):
    X, Y, Z = chip.dims
    order = [(x, y, z) for x, y in curve for z in range(Z - 1, 0, -1)]
    trial = dict(free)
    tiles, cores = [], {}
    pos = pack_pos
    for stage in ("S1", "S3", "S4"):
        for name, xb, cb, wb in stage_chunks.get(stage, []):
            while pos < len(order) and trial[order[pos]] == 0:
                pos += 1
            if pos >= len(order):
                return None
            spot = order[pos]
            slot = chip.tiles_per_core - trial[spot]
            trial[spot] -= 1
            node = chip.node(*spot)
            tiles.append(TileUse(layer, name, stage, node, slot, xb, cb, wb))
            cores.setdefault(stage, [])
            if node not in cores[stage]:
                cores[stage].append(node)
    free.clear()
    free.update(trial)
    first = chip.dims[0] * chip.dims[1]
    col = (tiles[0].core % first % chip.dims[0], tiles[0].core % first // chip.dims[0])
    return tiles, cores, [col], 0, pos


# --------------------------------------------------------------------------------------------
# Cycle-model building blocks (each the RTL's own model)

def reram_op_cycles(chip, tiles, tokens):
    """Tile-clock cycles for ``tokens`` input vectors through a set of tiles working in
    parallel: ``tokens * max(mvm_cycles)`` over the tiles (:func:`golden.pim_tile.mvm_cycles`
    with every used crossbar at its default ADC resolution; steady state, one MVM per
    ``mvm_cycles``)."""
    worst = 0
    for t in tiles:
        tc = replace(chip.tile, weight_bits=t.weight_bits)
        bits = min(DEFAULT_ADC_BITS[t.cell_bits], tc.adc_bits)
        if bits not in tc.resolutions:
            bits = tc.adc_bits
        worst = max(worst, mvm_cycles(tc, {i: bits for i in range(t.crossbars)}))
    return tokens * worst


def transfer_cycles(chip, src, dst, nbytes):
    """NoC-clock cycles of a transfer of ``nbytes`` from core ``src`` to core ``dst`` as one
    back-to-back stream of ``ceil(8 nbytes / flit_bits)`` flits:
    :func:`golden.noc.zero_load_latency` over the route's hops (a flit per cycle on every link
    of the route). Returns ``(cycles, flits, links)``, ``links`` the route's
    ``(node, next node, kind)``. A transfer within one core costs nothing."""
    flits = max(1, -(-8 * int(nbytes) // chip.flit_bits))
    if src == dst or nbytes == 0:
        return 0, 0, []
    topo, table = chip.network()
    route = noc.path(topo, table, src, dst)
    links = []
    for a, b in zip(route, route[1:]):
        kind = next(k for (nb, _, k) in (p for p in topo.ports[a] if p is not None) if nb == b)
        links.append((a, b, kind))
    return int(noc.zero_load_latency(len(links), flits)), flits, links


def systolic_kernels(cfg, rows, cols, *, mode="finetune", nl_lanes=128):
    """Systolic-core cycles of one layer's dynamic work, per kernel (Atleus Fig. 6's kernels).

    ``{"QK^T": .., "softmax": .., "PV": .., "LoRA A": .., "LoRA B": .., "LoRA bwd": ..,
    "LayerNorm": ..}``: each GEMM from :func:`golden.systolic.gemm_cycles` (all heads and
    adapters back to back: :func:`golden.systolic.cycle_model` over the concatenated folds);
    softmax ``ceil(heads n n / nl_lanes)`` and LayerNorm ``ceil(2 n d / nl_lanes)`` (two
    passes: statistics, then normalization) on the core's nonlinear unit. LoRA A is ``X A``
    (``n x r x d``), LoRA B ``(X A) B`` (``n x d x r``), per target; the backward (``mode=
    "finetune"``) is ``dB = T^T G`` (``r x d x n``), ``dT = G B^T`` (``n x r x d``), ``dA = X^T dT``
    (``d x r x n``) per target.
    """
    n, d, h, r, k = cfg.seq_len, cfg.d_model, cfg.heads, cfg.lora_rank, len(cfg.lora_targets)
    dh = cfg.d_head

    def g(m, nn, kk, times=1):
        ks = systolic.gemm_fold_ks(m, nn, kk, rows, cols) * times
        return systolic.cycle_model(ks, rows, cols)["cycles"] if ks else 0

    out = {"QK^T": g(n, n, dh, h), "softmax": -(-h * n * n // nl_lanes), "PV": g(n, dh, n, h),
           "LoRA A": g(n, r, d, k) if r else 0, "LoRA B": g(n, d, r, k) if r else 0,
           "LayerNorm": -(-2 * n * d // nl_lanes)}
    if mode == "finetune" and r:
        out["LoRA bwd"] = (systolic.cycle_model(
            (systolic.gemm_fold_ks(r, d, n, rows, cols) + systolic.gemm_fold_ks(n, r, d, rows, cols)
             + systolic.gemm_fold_ks(d, r, n, rows, cols)) * k, rows, cols)["cycles"])
    else:
        out["LoRA bwd"] = 0
    return out


def mac_counts(cfg, *, mode="finetune"):
    """MACs of one layer and sequence: ``reram``, ``systolic`` (QK^T and PV, LoRA forward and,
    fine-tuning, the three backward GEMMs), and ``systolic_paper_eq3`` (Eq. 3 as written:
    ``d n^2 + 2k d r n``, which leaves out P.V's ``d n^2`` and counts one GEMM per LoRA pass)."""
    m = cfg.macs()
    sys = m["systolic_attention"] + m["systolic_lora_fwd"]
    if mode == "finetune":
        sys += m["systolic_lora_bwd"]
    n, d, r, k = cfg.seq_len, cfg.d_model, cfg.lora_rank, len(cfg.lora_targets)
    eq3 = d * n * n + (2 * k if mode == "finetune" else k) * d * r * n
    return {"reram": m["reram"], "systolic": sys, "systolic_paper_eq3": eq3,
            "reram_share": m["reram"] / (m["reram"] + sys),
            "reram_share_paper_eq": m["reram"] / (m["reram"] + eq3)}


def all_reram_writes(spec, *, cell_bits=2, weight_bits=8, batch=1):
    """ReRAM writes of an all-ReRAM fine-tuning baseline (no systolic tier), per sequence.

    The dynamic operands of attention go onto crossbars: for every layer and sequence, K^T and
    V (``n x d`` each, all heads) are written, one ``d``-wide vector per token each
    (``vector_writes``, the unit that gives Atleus V.A's "~5x10^4" for BERT-Large at
    n = 1024: 24 x 2 x 1024 = 49,152); the LoRA adapters A and B are rewritten after every
    optimizer step (once per batch). Counted also in weights and in cells
    (``weight_bits / cell_bits`` cells per weight).
    """
    spec = model_spec(spec)
    c = spec.layer
    n, d, r, k = c.seq_len, c.d_model, c.lora_rank, len(c.lora_targets)
    kv = spec.layers * 2 * n * d
    lora = spec.layers * k * 2 * d * r
    cpw = weight_bits // cell_bits
    return {"vector_writes_per_sequence": spec.layers * 2 * n,
            "weights_per_sequence": kv, "cells_per_sequence": kv * cpw,
            "lora_weights_per_step": lora, "lora_cells_per_step": lora * cpw,
            "cells_per_sequence_total": kv * cpw + lora * cpw / batch}


# --------------------------------------------------------------------------------------------
# Timing

@dataclass
class Op:
    """One transaction: ``name`` on ``resource`` (a tile group, a systolic core, a NoC route,
    an HBM port) from ``start`` to ``end`` seconds; ``stage`` is the pipeline stage it belongs
    to, ``kind`` compute / comm / hbm; ``cycles`` in its own clock (``clock``)."""
    name: str
    resource: str
    stage: str
    kind: str
    cycles: int
    clock: float
    deps: tuple = ()
    start: float = 0.0
    end: float = 0.0
    links: list = field(default_factory=list)
    flits: int = 0

    @property
    def duration(self):
        return self.cycles / self.clock


class Timing:
    """Result of :func:`time_model` (see its docstring for the keys of :meth:`summary`)."""

    def __init__(self, placement, ops, *, mode, batch, layer_latency_s, stage_delays, resource_busy,
                 noc_bytes, hbm_bytes, macs, reprogram_s):
        self.placement, self.ops, self.mode, self.batch = placement, ops, mode, batch
        self.layer_latency_s = layer_latency_s
        self.stage_delays = stage_delays
        self.resource_busy = resource_busy
        self.noc_bytes = noc_bytes
        self.hbm_bytes = hbm_bytes
        self.macs = macs
        self._reprogram_s = reprogram_s

    @property
    def chip(self):
        return self.placement.chip

    @property
    def layer_latency_cycles(self):
        return math.ceil(self.layer_latency_s * self.chip.f_systolic)

    def schedule_cycles(self):
        """The schedule in cycles of the systolic clock: ``[(name, resource, start, end)]``
        (rounded to the nearest cycle; exact when every clock is the same, as on
        :data:`REGRESSION_CHIP`: then ``end - start`` is the op's ``cycles``)."""
        f = self.chip.f_systolic
        return [(op.name, op.resource, round(op.start * f), round(op.end * f)) for op in self.ops]

    @property
    def bottleneck_s(self):
        """Busiest resource's time per sequence: the pipeline's initiation interval."""
        return max(self.resource_busy.values())

    @property
    def reprogram_s(self):
        """Time to reprogram the crossbars of one round of resident layers."""
        return self._reprogram_s

    @property
    def sequence_latency_s(self):
        """One sequence through every layer (layers in sequence), plus, for a multiplexed
        model, the ``rounds - 1`` reprogrammings it waits for (not amortized: latency)."""
        p = self.placement
        return p.spec.layers * self.layer_latency_s + self.reprogram_s * (p.rounds - 1)

    @property
    def throughput_seq_per_s(self):
        """Sequences per second with the layer pipeline full: one per bottleneck time per round
        of resident layers (rounds run one after the other), reprogramming amortized."""
        p = self.placement
        per_seq = self.bottleneck_s * p.rounds
        if p.rounds > 1:
            per_seq += self.reprogram_s * p.rounds / self.batch
        return 1.0 / per_seq

    def utilization(self):
        """Busy fraction of each core class over one initiation interval (pipeline full)."""
        ii = self.bottleneck_s
        reram = [v for k, v in self.resource_busy.items() if k.startswith("tiles:")]
        sysb = [v for k, v in self.resource_busy.items() if k.startswith("systolic")]
        nocb = [v for k, v in self.resource_busy.items() if k.startswith("link:")]
        return {"reram_stages": float(np.mean(reram)) / ii if reram else 0.0,
                "systolic": float(np.mean(sysb)) / ii if sysb else 0.0,
                "noc_busiest_link": max(nocb) / ii if nocb else 0.0}

    def summary(self):
        p = self.placement
        w = p.reram_writes(batch=self.batch)
        return {
            "model": p.spec.name, "layers": p.spec.layers, "seq_len": p.cfg.seq_len,
            "d_model": p.cfg.d_model, "heads": p.cfg.heads, "d_ff": p.cfg.d_ff,
            "lora_rank": p.cfg.lora_rank, "mode": self.mode, "batch": self.batch,
            "weights": p.weights, "crossbars": p.crossbars, "tiles": p.tiles,
            "reram_cores": p.reram_cores, "systolic_cores": p.systolic_cores, "rounds": p.rounds,
            "utilization_mapping": p.utilization(),
            "reram_mac_share": self.macs["reram_share"],
            "reram_mac_share_paper_eq": self.macs["reram_share_paper_eq"],
            "layer_latency_cycles": self.layer_latency_cycles,
            "layer_latency_s": self.layer_latency_s,
            "sequence_latency_s": self.sequence_latency_s,
            "reprogram_s": self.reprogram_s,
            "throughput_seq_per_s": self.throughput_seq_per_s,
            "bottleneck": max(self.resource_busy, key=self.resource_busy.get),
            "bottleneck_s": self.bottleneck_s,
            "utilization": self.utilization(),
            "stage_delays_s": self.stage_delays,
            "pipeline_balance": {"systolic_over_slowest_reram": self.stage_delays["S2"]["compute"] /
                                 max(self.stage_delays[s]["compute"] for s in ("S1", "S3", "S4"))},
            "noc_bytes_per_layer": self.noc_bytes,
            "hbm_bytes_per_layer": self.hbm_bytes,
            "reram_writes": {"lora_program_once_cells": w["program_once_cells"],
                             "lora_per_sequence_cells": w["per_sequence_cells"],
                             "lora_per_batch_cells": w["per_batch_cells"],
                             "all_reram_baseline": all_reram_writes(p.spec, batch=self.batch)},
        }


def _schedule(ops):
    """List scheduling in the given (topological) order: an op starts when its dependencies
    have ended and its resource is free (in-order per resource)."""
    by_name, free = {}, {}
    for op in ops:
        ready = max((by_name[d].end for d in op.deps), default=0.0)
        op.start = max(ready, free.get(op.resource, 0.0))
        op.end = op.start + op.duration
        free[op.resource] = op.end
        by_name[op.name] = op
    return ops


def time_model(placement, *, mode="finetune", batch=1, layer=0):
    """Transaction-level timing of one layer of a placed model, and the whole-model figures.

    Parameters
    ----------
    placement : Placement
    mode : {"finetune", "inference"}
        Fine-tuning adds the LoRA backward GEMMs on the systolic core (Atleus Eq. 3) and the
        adapters' gradient and optimizer traffic to HBM (fp32 master weights read and written,
        fp32 gradients written). The backward pass through the frozen weights is not timed
        (Atleus does not count it).
    batch : int
        Sequences per fine-tuning batch (amortizes reprogramming of a multiplexed model).
    layer : int
        The layer whose schedule is built (all layers of a preset are the same; it sets the
        cores and thus the NoC routes).

    Operations of the layer (in dependency order): ``in`` (activations from the previous
    layer's S4 core, or HBM for layer 0) -> ``qkv`` (S1 tiles) and ``x->sys`` + ``lora_fwd``
    (systolic) -> ``qkv->sys`` -> ``attention`` (QK^T, softmax, PV on the systolic core) ->
    ``ctx->wo`` -> ``wo`` (tiles) -> ``ln1`` (nonlinear unit of W^O's core) -> ``->ff1`` ->
    ``ff1`` + ``gelu`` -> ``->ff2`` -> ``ff2`` -> ``ln2``; fine-tuning adds ``lora_bwd`` and
    ``hbm:lora_state``.

    Throughput: the busy time of each resource per sequence, for this layer; a systolic core
    shared by several resident layers (``placement="pack"``) and the HBM (all resident
    layers over ``tiers`` channels) are scaled by their sharers; NoC links and nonlinear
    units shared between layers are not (with ``"column"`` placement they are not shared).
    """
    if not isinstance(placement, Placement):
        raise TypeError(f"placement must be a Placement, not {placement!r}")
    check_choice("mode", mode, ("finetune", "inference"))
    batch = check_int("batch", batch, 1)
    layer = check_int("layer", layer, 0, placement.spec.layers - 1)
    chip, cfg = placement.chip, placement.cfg
    n, d = cfg.seq_len, cfg.d_model
    ab = cfg.act_bits / 8
    tiles = placement.layer_tiles[layer]
    cores = placement.layer_cores[layer]
    col = placement.layer_columns[layer][0]
    sys_core = chip.node(col[0], col[1], 0)
    ft, fs, fn = chip.f_tile, chip.f_systolic, chip.f_noc

    def tiles_of(name):
        return [t for t in tiles if t.matrix == name]

    def core_of(name):
        return tiles_of(name)[0].core

    ops = []
    noc_bytes = {"planar": 0.0, "tsv": 0.0, "skip": 0.0}

    def xfer(name, src, dst, nbytes, stage, deps):
        cyc, flits, links = transfer_cycles(chip, src, dst, nbytes)
        for _, _, kind in links:
            noc_bytes[kind] += nbytes
        ops.append(Op(name, f"route:{src}->{dst}", stage, "comm", cyc, fn, tuple(deps), links=links,
                      flits=flits))
        return name

    def hbm(name, nbytes, stage, deps=()):
        ops.append(Op(name, "hbm", stage, "hbm", math.ceil(nbytes / chip.hbm_bytes_per_s * fs), fs,
                      tuple(deps)))

    def tile_op(name, matrix, stage, deps):
        cyc = reram_op_cycles(chip, tiles_of(matrix), n)
        ops.append(Op(name, f"tiles:{matrix}", stage, "compute", cyc, ft, tuple(deps)))

    def nl_op(name, on_systolic, core, elems, stage, deps):
        res, clk = (syst, fs) if on_systolic else (f"nl:{core}", ft)
        ops.append(Op(name, res, stage, "compute", math.ceil(elems / chip.nl_lanes), clk, tuple(deps)))

    # Source of the layer input: the previous layer's FF2 core, or HBM.
    prev = layer - 1
    if prev >= 0 and placement.round_of_layer[prev] == placement.round_of_layer[layer]:
        src = next(t.core for t in placement.layer_tiles[prev] if t.matrix == "w2")
        xfer("in", src, core_of("wqkv"), n * d * ab, "S1", ())
    else:
        hbm("in", n * d * ab, "S1")
    tile_op("qkv", "wqkv", "S1", ("in",))
    kern = systolic_kernels(cfg, chip.systolic_rows, chip.systolic_cols, mode=mode,
                            nl_lanes=chip.nl_lanes)
    syst = f"systolic:{sys_core}"
    lora_deps = ("in",)
    n_lora = len(cfg.lora_targets) if cfg.lora_rank else 0
    lora_bytes = 2 * n_lora * d * cfg.lora_rank * cfg.lora_bits / 8
    if n_lora:
        xfer("x->sys", core_of("wqkv"), sys_core, n * d * ab, "S2", ("in",))
        hbm("hbm:lora_w", lora_bytes, "S2")
        ops.append(Op("lora_fwd", syst, "S2", "compute", kern["LoRA A"] + kern["LoRA B"], fs,
                      ("x->sys", "hbm:lora_w")))
        lora_deps = ("lora_fwd",)
    xfer("qkv->sys", core_of("wqkv"), sys_core, 3 * n * d * ab, "S2", ("qkv",))
    # SRAM: per head Q_h, K_h, V_h resident (fused row-wise softmax: S is never stored);
    # otherwise K_h and V_h stream from HBM once per row tile of Q.
    sram = chip.systolic_sram_bits / 8
    spill = 0.0
    if 3 * n * cfg.d_head * ab > sram:
        spill = cfg.heads * (2 * n * cfg.d_head * ab) * (1 + -(-n // chip.systolic_rows))
        hbm("hbm:kv_spill", spill, "S2", ("qkv->sys",))
    att_deps = ("qkv->sys",) + lora_deps + (("hbm:kv_spill",) if spill else ())
    ops.append(Op("attention", syst, "S2", "compute", kern["QK^T"] + kern["softmax"] + kern["PV"],
                  fs, att_deps))
    hbm_bytes = n * d * ab * (layer == 0) + spill + lora_bytes
    if mode == "finetune" and n_lora:
        ops.append(Op("lora_bwd", syst, "S2", "compute", kern["LoRA bwd"], fs, ("attention",)))
        lora_state = n_lora * 2 * d * cfg.lora_rank * 4 * 3    # fp32: read w, write w, write grad
        hbm("hbm:lora_state", lora_state, "S2", ("lora_bwd",))
        hbm_bytes += lora_state
    wo_core = core_of("wo")
    wo_stage = "S3" if cfg.wo_stage == "s3" else "S1"
    xfer("ctx->wo", sys_core, wo_core, n * d * ab, wo_stage, ("attention",))
    tile_op("wo", "wo", wo_stage, ("ctx->wo",))
    nl_op("ln1", False, wo_core, 2 * n * d, wo_stage, ("wo",))
    xfer("->ff1", wo_core, core_of("w1"), n * d * ab, "S3", ("ln1",))
    tile_op("ff1", "w1", "S3", ("->ff1",))
    ff1_core = core_of("w1")
    gsrc = ff1_core
    if cfg.gelu_on == "systolic":
        xfer("ff1->gelu", ff1_core, sys_core, n * cfg.d_ff * cfg.res_bits / 8, "S3", ("ff1",))
        gsrc = sys_core
    nl_op("gelu", cfg.gelu_on == "systolic", ff1_core, n * cfg.d_ff, "S3",
          ("ff1->gelu",) if cfg.gelu_on == "systolic" else ("ff1",))
    xfer("->ff2", gsrc, core_of("w2"), n * cfg.d_ff * ab, "S4", ("gelu",))
    tile_op("ff2", "w2", "S4", ("->ff2",))
    ff2_core = core_of("w2")
    if cfg.ln2_on == "systolic":
        xfer("ff2->ln2", ff2_core, sys_core, n * d * cfg.res_bits / 8, "S4", ("ff2",))
    nl_op("ln2", cfg.ln2_on == "systolic", ff2_core, 2 * n * d, "S4",
          ("ff2->ln2",) if cfg.ln2_on == "systolic" else ("ff2",))
    _schedule(ops)
    layer_latency = max(op.end for op in ops)
    # Busy time per resource (links: flits of every transfer that crosses them).
    busy = {}
    for op in ops:
        if op.kind == "comm":
            for a, b, kind in op.links:
                key = f"link:{a}->{b}:{kind}"
                busy[key] = busy.get(key, 0.0) + op.flits / fn
        else:
            busy[op.resource] = busy.get(op.resource, 0.0) + op.duration
    # The HBM of a tier serves every resident layer's systolic traffic: share it.
    here = placement.round_of_layer[layer]
    layers_here = sum(1 for v in placement.round_of_layer.values() if v == here)
    if "hbm" in busy:
        busy["hbm"] *= layers_here / chip.dims[2]
    # A systolic core shared by several resident layers (placement "pack") serves them all.
    sharing = sum(1 for k, v in placement.round_of_layer.items()
                  if v == here and placement.layer_columns[k][0] == col)
    if syst in busy:
        busy[syst] *= sharing
    stage_delays = {s: {"compute": 0.0, "comm": 0.0, "hbm": 0.0} for s in ("S1", "S2", "S3", "S4")}
    for op in ops:
        stage_delays[op.stage][op.kind] += op.duration
    macs = mac_counts(cfg, mode=mode)
    # Reprogramming a round: every crossbar row (all crossbars in parallel), or the weights
    # from HBM over all tiers' channels, whichever is slower.
    t = chip.tile
    round_weights = max(placement.layers_per_round) * cfg.static_weights() * cfg.attn_weight_bits / 8
    reprogram = max(t.rows * chip.reram_row_write_s,
                    round_weights / (chip.hbm_bytes_per_s * chip.dims[2]))
    return Timing(placement, ops, mode=mode, batch=batch, layer_latency_s=layer_latency,
                  stage_delays=stage_delays, resource_busy=busy, noc_bytes=noc_bytes,
                  hbm_bytes=hbm_bytes, macs=macs, reprogram_s=reprogram)
