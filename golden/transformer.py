"""Bit-true integer transformer encoder layer on the Atleus chip, and its float64 reference.

The layer runs in the order the chip runs it (Atleus Table II, Eqs. 2-3, Section IV.A):

====  ==========================================  ===========================================
op    what                                        where (golden model)
====  ==========================================  ===========================================
MHA-1 ``Q, K, V = X W^Q, X W^K, X W^V``            PIM tiles, :func:`golden.pim_tile.map_matrix`
LoRA  ``+ (X A) B`` on the ``lora_targets``         systolic GEMMs, :func:`golden.systolic.gemm`
MHA-2 ``S = Q_h K_h^T`` per head                    systolic GEMM
      ``P = softmax(S / sqrt(d_head))``             :func:`golden.nonlinear.i_softmax`
MHA-3 ``C_h = P V_h``                               systolic GEMM
MHA-4 ``O = C W^O``                                 PIM tiles
L-1   ``H = LayerNorm(X + O)``                      :func:`golden.nonlinear.i_layernorm`
FF-1  ``G = GELU(H W^F1)``                          PIM tiles, :func:`golden.nonlinear.i_gelu`
FF-2  ``F = G W^F2``                                PIM tiles
L-2   ``Y = LayerNorm(H + F)``                      :func:`golden.nonlinear.i_layernorm`
====  ==========================================  ===========================================

Choices where the papers are silent (each a documented parameter):

- Table II writes a GeLU after FF-2 as well; BERT, RoBERTa, GPT-2 and BLOOM have none there, so
  this layer has one GELU, after FF-1. ``LayerConfig.gelu_on`` / ``ln2_on`` only place the
  GELU and the second LayerNorm on a core class for the timing model (:mod:`golden.chip`);
  the arithmetic is the same.
- ``LayerConfig.wo_stage``: W^O is a pre-trained weight, so it sits on ReRAM (Eq. 2); Atleus
  puts "the MHA computation with pre-trained weights" in stage S1, so by default W^O is on the
  S1 cores (``"s1"``), which the context vectors revisit after the systolic stage; ``"s3"``
  places it on the FF-1 cores instead. Timing only.
- Post-LN (BERT) order; no biases in the projections (a digital add the chip does on the
  dequantized outputs; it changes no product); LayerNorm without epsilon (I-BERT).
- Number formats: every tensor is a signed integer with a power-of-two scale ``2**-frac``
  (``act_bits`` wide for GEMM operands, ``res_bits`` for the residual stream and the inputs of
  the nonlinear kernels, ``score_bits`` for the attention scores). The fractional bits of each
  tensor are calibrated once, statically, from the float reference on a calibration batch
  (:meth:`EncoderLayer.calibrate`); formats can also be given. Every requantization is a
  rounding right shift (ties up) and a saturation, the systolic array's output stage
  (``SystolicArray(out_shift=..., out_width=...)``), applied to the tile outputs by the same
  arithmetic.
- LoRA: ``y = X W0 + (alpha / r) (X A) B``; the factor ``alpha / r`` is folded into B before
  quantization. A and B are quantized per tensor to ``lora_bits`` with a power-of-two scale
  (the systolic array takes ``act_bits``-wide operands). ``X A`` is requantized to
  ``act_bits``; ``(X A) B`` is added to the projection output in the ``res_bits`` format before
  the projection's final saturation.
- Large matrices: W^Q, W^K and W^V share their input and are one ``(d, 3d)`` matrix on the
  tiles (:data:`MATRICES`, one ``out_frac_bits``, as :func:`golden.chip.map_model` places
  them). A matrix is cut into column chunks of whole crossbars (and row chunks of the
  tile's input buffer, ``row_blocks * rows``, :func:`chunk_plan`); each chunk is one tile
  (:func:`golden.pim_tile.map_matrix`); chunks along K are summed exactly (they share the
  matrix's ``out_frac_bits``). Crossbar-wise quantization is per crossbar, so the chunking
  changes no weight. With ``slc_rate`` the whole matrix is split once by SVD
  (:func:`golden.hybrid.svd_split`) and each part is chunked and mapped on SLC / MLC crossbars.
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from . import nonlinear as nl
from . import systolic
from ._check import as_int_array, check_choice, check_int, check_real
from .hybrid import svd_split
from .noise import NoiseConfig
from .pim_tile import FIELD_IN_BLOCK, FIELD_OUT_BASE, TileConfig, map_matrix
from .quant import aggregate, dequantize

__all__ = ["LayerConfig", "EncoderLayer", "random_weights", "tile_forward", "relative_l2", "chunk_plan",
           "PROJECTIONS", "MATRICES", "TENSORS"]

#: Projection names: the pre-trained weights on the PIM tiles.
PROJECTIONS = ("wq", "wk", "wv", "wo", "w1", "w2")
#: The matrices on the tiles: W^Q, W^K and W^V share their input and are one ``(d, 3d)``
#: matrix ``[W^Q | W^K | W^V]`` (one ``out_frac_bits``), as :func:`golden.chip.map_model` places it.
MATRICES = ("wqkv", "wo", "w1", "w2")
#: Calibrated tensors and their width attribute on :class:`LayerConfig`.
TENSORS = {"x": "act_bits", "q": "act_bits", "k": "act_bits", "v": "act_bits", "s": "score_bits",
           "c": "act_bits", "r1": "res_bits", "h": "act_bits", "f1": "res_bits", "g": "act_bits",
           "r2": "res_bits", "y": "act_bits", "tq": "act_bits", "tv": "act_bits", "tk": "act_bits",
           "to": "act_bits"}


@dataclass(frozen=True)
class LayerConfig:
    """One transformer layer: shapes, number formats and placement choices.

    Parameters
    ----------
    d_model, heads, d_ff, seq_len : int
        Model width, attention heads (``d_model % heads == 0``), feed-forward width, tokens.
    lora_rank : int
        LoRA rank ``r`` (0: no adapters; Atleus: 32).
    lora_targets : tuple of str
        Projections with adapters, from ``"q", "k", "v", "o"`` (Atleus: W^Q and W^V).
    attn_weight_bits, ff_weight_bits : int
        Weight bits of the MHA and FF matrices on the crossbars (Atleus V.F: M8F8, M8F4, M4F4).
    act_bits : int
        Width of the GEMM operands (systolic ``in_width``, tile ``input_bits``): 8.
    res_bits : int
        Width of the residual stream and of the nonlinear kernels' inputs (16).
    score_bits : int
        Width of the attention scores after the QK^T output stage (16).
    lora_bits : int
        Width of the quantized adapters A and B (8).
    lora_alpha : float or None
        LoRA ``alpha`` (``None``: ``alpha = r``, a scaling of 1).
    acc_width : int
        Systolic accumulator width (32).
    causal : bool
        Causal attention mask (decoders: GPT-2, BLOOM); masked scores get the lowest score.
    wo_stage : {"s1", "s3"}
        Pipeline stage of W^O (timing only; see the module docstring).
    gelu_on, ln2_on : {"reram", "systolic"}
        Core class that runs the GELU and the second LayerNorm (timing only).
    """

    d_model: int
    heads: int
    d_ff: int
    seq_len: int
    lora_rank: int = 0
    lora_targets: tuple = ("q", "v")
    attn_weight_bits: int = 8
    ff_weight_bits: int = 8
    act_bits: int = 8
    res_bits: int = 16
    score_bits: int = 16
    lora_bits: int = 8
    lora_alpha: float = None
    acc_width: int = 32
    causal: bool = False
    wo_stage: str = "s1"
    gelu_on: str = "reram"
    ln2_on: str = "reram"

    def __post_init__(self):
        check_int("d_model", self.d_model, 1)
        check_int("heads", self.heads, 1)
        check_int("d_ff", self.d_ff, 1)
        check_int("seq_len", self.seq_len, 1)
        check_int("lora_rank", self.lora_rank, 0)
        if self.d_model % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide d_model ({self.d_model})")
        if (not isinstance(self.lora_targets, tuple)
                or not all(t in ("q", "k", "v", "o") for t in self.lora_targets)
                or len(set(self.lora_targets)) != len(self.lora_targets)):
            raise TypeError(f"lora_targets must be a tuple of distinct names from 'q', 'k', 'v', 'o', "
                            f"not {self.lora_targets!r}")
        for name in ("attn_weight_bits", "ff_weight_bits"):
            if getattr(self, name) not in (2, 4, 8, 16):
                raise TypeError(f"{name} must be one of 2, 4, 8, 16, not {getattr(self, name)!r}")
        check_int("act_bits", self.act_bits, 2, 16)
        check_int("res_bits", self.res_bits, self.act_bits, 24)
        check_int("score_bits", self.score_bits, 2, 24)
        check_int("lora_bits", self.lora_bits, 2, self.act_bits)
        check_int("acc_width", self.acc_width, 2 * self.act_bits, 64)
        if self.lora_alpha is not None:
            check_real("lora_alpha", self.lora_alpha, 0, lo_open=True)
        if not isinstance(self.causal, bool):
            raise TypeError(f"causal must be a bool, not {self.causal!r}")
        check_choice("wo_stage", self.wo_stage, ("s1", "s3"))
        check_choice("gelu_on", self.gelu_on, ("reram", "systolic"))
        check_choice("ln2_on", self.ln2_on, ("reram", "systolic"))

    @property
    def d_head(self):
        return self.d_model // self.heads

    @property
    def lora_scaling(self):
        """``alpha / r`` (1 when ``lora_alpha`` is None)."""
        if not self.lora_rank:
            return 0.0
        return 1.0 if self.lora_alpha is None else self.lora_alpha / self.lora_rank

    def shapes(self):
        """``{projection: (K, N)}`` of the pre-trained weights."""
        d, f = self.d_model, self.d_ff
        return {"wq": (d, d), "wk": (d, d), "wv": (d, d), "wo": (d, d), "w1": (d, f), "w2": (f, d)}

    def weight_bits(self, name):
        return self.attn_weight_bits if name in ("wq", "wk", "wv", "wo") else self.ff_weight_bits

    def static_weights(self):
        """Pre-trained weights of the layer: ``4 d^2 + 2 d d_ff`` (12 d^2 at ``d_ff = 4d``)."""
        return sum(k * n for k, n in self.shapes().values())

    def macs(self):
        """MACs of one sequence through the layer, ``{"reram", "systolic_attention",
        "systolic_lora_fwd", "systolic_lora_bwd"}`` (Eqs. 2-3; the backward counts the
        gradient GEMMs dB, dT and dA of each adapter, the nonlinear kernels are not MACs)."""
        n, d, r, k = self.seq_len, self.d_model, self.lora_rank, len(self.lora_targets)
        att = 2 * n * n * d      # causal too: the array computes the full product, then masks
        return {"reram": n * self.static_weights(), "systolic_attention": att,
                "systolic_lora_fwd": 2 * k * n * d * r if r else 0,
                "systolic_lora_bwd": 3 * k * n * d * r if r else 0}


def relative_l2(y, ref):
    """``||y - ref|| / ||ref||``."""
    y, ref = np.asarray(y, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(y - ref) / np.linalg.norm(ref))


def random_weights(cfg, seed=0, *, lora_init="random", std=None):
    """BERT-like random weights ``{name: float64 array}`` for a :class:`LayerConfig`.

    Projections ``N(0, std)`` with ``std = 1 / sqrt(K)`` (unit-gain; BERT's 0.02 at d = 1024
    is 0.64 / sqrt(d)); LayerNorm ``gamma ~ U(0.8, 1.2)``, ``beta ~ N(0, 0.05)``; adapters
    ``a<t>`` ``(d, r)`` and ``b<t>`` ``(r, d)`` ``N(0, 1/sqrt(d))`` and ``N(0, 1/sqrt(r))``
    times 0.3 (``lora_init="random"``) or B zero (``"zero"``, LoRA's initialization).
    """
    rng = np.random.default_rng(seed)
    w = {}
    for name, (k, n) in cfg.shapes().items():
        w[name] = rng.normal(0, std if std else 1 / math.sqrt(k), (k, n))
    for i in (1, 2):
        w[f"ln{i}_g"] = rng.uniform(0.8, 1.2, cfg.d_model)
        w[f"ln{i}_b"] = rng.normal(0, 0.05, cfg.d_model)
    r, d = cfg.lora_rank, cfg.d_model
    if r:
        for t in cfg.lora_targets:
            w[f"a{t}"] = rng.normal(0, 1 / math.sqrt(d), (d, r))
            w[f"b{t}"] = (np.zeros((r, d)) if lora_init == "zero"
                          else 0.3 * rng.normal(0, 1 / math.sqrt(r), (r, d)))
    return w


def tile_forward(mapping, x, *, step=0, time=None):
    """A :class:`golden.pim_tile.TileMapping`'s integer outputs at ``time`` seconds after
    programming (drift), from its public members.

    ``time=None`` is ``mapping.golden(x, step=step)[0]``. Otherwise the same arithmetic with
    every crossbar read at ``time`` (:meth:`golden.crossbar.Crossbar.mvm`): per crossbar
    integer MVM, dequantization by its scale register (:func:`golden.quant.dequantize`), sum
    over the crossbars (:func:`golden.quant.aggregate`). ``tb/test_golden_transformer.py``
    checks the two paths agree at ``time=None``.
    """
    if time is None:
        return mapping.golden(x, step=step)[0]
    t = mapping.tile
    xp = mapping.pad_inputs(x)
    regs = {}
    for w in mapping.config_writes():
        regs.setdefault(w["xbar"], {})[w["field"]] = w["value"]
    scale = mapping.scale_fixed
    n = mapping.n_outputs
    terms = []
    for idx, bits in mapping.crossbar_bits.items():
        blk = regs[idx][FIELD_IN_BLOCK]
        base = regs[idx][FIELD_OUT_BASE]
        part = mapping.crossbar(idx).mvm(xp[:, blk * t.rows:(blk + 1) * t.rows], step=step, time=time,
                                         adc_bits=bits)
        deq, _ = dequantize(part, scale[idx], scale_frac_bits=t.scale_frac_bits, out_bits=t.out_bits,
                            rounding=t.rounding)
        full = np.zeros((xp.shape[0], max(n, base + deq.shape[1])), dtype=np.int64)
        full[:, base:base + deq.shape[1]] = deq
        terms.append(full[:, :n])
    return np.asarray(aggregate(np.stack(terms)), dtype=np.int64)


def chunk_plan(k, n, cell_bits, tile):
    """Row and column chunks ``[(r0, r1, c0, c1)]`` of a ``(k, n)`` matrix, one tile each.

    Rows are cut at the tile's input buffer (``row_blocks * rows``); each row chunk's columns
    are cut into whole crossbar columns (``n_out`` weights), as many per tile as its
    ``crossbars`` (over the chunk's row blocks) and ``outputs`` allow. A chunk needs
    ``ceil((r1 - r0) / rows) * ceil((c1 - c0) / n_out)`` crossbars (fewer if a block is all
    zero: :func:`golden.pim_tile.map_matrix` skips those).
    """
    rows_max = tile.row_blocks * tile.rows
    n_out = tile.n_out(cell_bits)
    plan = []
    for r0 in range(0, k, rows_max):
        r1 = min(k, r0 + rows_max)
        blocks = -(-(r1 - r0) // tile.rows)
        per_tile = min(tile.crossbars // blocks, tile.outputs // n_out)
        if per_tile < 1:
            raise ValueError(f"tile.crossbars ({tile.crossbars}) is less than the {blocks} row "
                             f"blocks of one column of crossbars")
        width = per_tile * n_out
        for c0 in range(0, n, width):
            plan.append((r0, r1, c0, min(n, c0 + width)))
    return plan


def _frac_for(maxabs, bits):
    """Largest ``f`` with ``maxabs * 2**f <= 2**(bits-1) - 1``."""
    if not maxabs > 0:
        return bits - 1
    return math.floor(math.log2(((1 << (bits - 1)) - 1) / maxabs))


def _align(x, f_from, f_to):
    """Re-express integers of ``f_from`` fractional bits with ``f_to`` (rounding right shift or
    exact left shift)."""
    return nl.rshift_round(x, f_from - f_to)


@dataclass
class _Chunk:
    r0: int
    r1: int
    c0: int
    c1: int
    mapping: object


class EncoderLayer:
    """A transformer encoder layer computed bit-true as the chip computes it.

    Parameters
    ----------
    cfg : LayerConfig
    weights : dict
        Float64 arrays: ``wq, wk, wv, wo`` ``(d, d)``, ``w1`` ``(d, d_ff)``, ``w2`` ``(d_ff, d)``,
        ``ln1_g, ln1_b, ln2_g, ln2_b`` ``(d,)``, and for each LoRA target ``t``: ``a<t>``
        ``(d, r)``, ``b<t>`` ``(r, d)`` (:func:`random_weights` makes a set).
    tile : TileConfig
        The PIM tile; its ``weight_bits`` is replaced per matrix by ``attn_weight_bits`` /
        ``ff_weight_bits``.
    slc_rate : float or None
        HyFlexPIM hybrid mapping of every projection (0 to 1), or ``None`` (all MLC).
    noise : NoiseConfig or dict or None
        Crossbar non-idealities, as :func:`golden.pim_tile.map_matrix` takes them.
    seed : int
        Root seed of the crossbars' random streams (each tile chunk gets its own).
    formats : dict or None
        Fractional bits per tensor (:data:`TENSORS`); ``None``: call :meth:`calibrate` first.

    Members
    -------
    forward(x_int, *, time=None, taps=False)
        The integer layer: ``(seq_len, d_model)`` integers in the ``"x"`` format -> integers in
        the ``"y"`` format (and the intermediate tensors with ``taps``).
    forward_float(x)
        The float64 reference (same weights, no quantization).
    run(x)
        Float in, float out through the integer layer.
    """

    def __init__(self, cfg, weights, *, tile=None, slc_rate=None, noise=None, seed=0, formats=None):
        if not isinstance(cfg, LayerConfig):
            raise TypeError(f"cfg must be a LayerConfig, not {cfg!r}")
        tile = TileConfig() if tile is None else tile
        if not isinstance(tile, TileConfig):
            raise TypeError(f"tile must be a TileConfig, not {tile!r}")
        if slc_rate is not None:
            slc_rate = check_real("slc_rate", slc_rate, 0, 1)
        if noise is not None and not isinstance(noise, (NoiseConfig, dict)):
            raise TypeError(f"noise must be a NoiseConfig or a dict {{'slc': .., 'mlc': ..}}, not {noise!r}")
        self._seed = check_int("seed", seed, 0)
        self._cfg, self._tile, self._slc_rate, self._noise = cfg, tile, slc_rate, noise
        self._w = self._check_weights(weights)
        if tile.input_bits != cfg.act_bits:
            raise ValueError(f"tile.input_bits ({tile.input_bits}) must equal act_bits ({cfg.act_bits})")
        self._chunks = {}
        self._ofb = {}
        for mi, name in enumerate(MATRICES):
            self._chunks[name], self._ofb[name] = self._map(name, mi)
        self._lora = {}
        self.formats = None if formats is None else dict(formats)
        self._step = 0

    # ---------------------------------------------------------------- properties
    @property
    def cfg(self):
        return self._cfg

    @property
    def tile(self):
        return self._tile

    @property
    def weights(self):
        return self._w

    @property
    def slc_rate(self):
        return self._slc_rate

    @property
    def noise(self):
        return self._noise

    def matrix(self, name):
        """The float matrix ``name`` of :data:`MATRICES` (``wqkv``: ``[W^Q | W^K | W^V]``)."""
        if name == "wqkv":
            return np.concatenate([self._w["wq"], self._w["wk"], self._w["wv"]], axis=1)
        return self._w[name]

    def chunks(self, name):
        """The tiles of matrix ``name`` (:data:`MATRICES`): list of ``(rows, cols, TileMapping)``
        (slices of the matrix)."""
        return [(slice(c.r0, c.r1), slice(c.c0, c.c1), c.mapping) for c in self._chunks[name]]

    def out_frac_bits(self, name):
        """Fractional bits of projection ``name``'s tile outputs."""
        return self._ofb[name]

    @property
    def n_crossbars(self):
        return sum(len(c.mapping.crossbar_bits) for ch in self._chunks.values() for c in ch)

    @property
    def n_tiles(self):
        return sum(len(ch) for ch in self._chunks.values())

    # ---------------------------------------------------------------- mapping
    def _check_weights(self, weights):
        if not isinstance(weights, dict):
            raise TypeError(f"weights must be a dict of arrays, not {weights!r}")
        cfg, out = self._cfg, {}
        need = dict(cfg.shapes())
        for i in (1, 2):
            need[f"ln{i}_g"] = need[f"ln{i}_b"] = (cfg.d_model,)
        if cfg.lora_rank:
            for t in cfg.lora_targets:
                need[f"a{t}"] = (cfg.d_model, cfg.lora_rank)
                need[f"b{t}"] = (cfg.lora_rank, cfg.d_model)
        for k, shape in need.items():
            if k not in weights:
                raise ValueError(f"weights must hold {k!r} with shape {shape}")
            a = np.asarray(weights[k], dtype=np.float64)
            if a.shape != shape:
                raise ValueError(f"weights[{k!r}] must have shape {shape}, not {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"weights[{k!r}] must hold finite values")
            out[k] = a
        return out

    def _chunk_plan(self, k, n, cell_bits, tile):
        return chunk_plan(k, n, cell_bits, tile)

    def _map(self, name, mi):
        cfg = self._cfg
        tile = replace(self._tile, weight_bits=cfg.weight_bits("wq" if name == "wqkv" else name))
        w = self.matrix(name)
        if self._slc_rate is None:
            parts = [(2, w)]
        elif self._slc_rate == 1.0:
            parts = [(1, w)]
        elif self._slc_rate == 0.0:
            parts = [(2, w)]
        else:
            w_slc, w_mlc, _ = svd_split(w, slc_rate=self._slc_rate)
            parts = [(1, w_slc), (2, w_mlc)]

        def build(ofb):
            out = []
            for pi, (cb, part) in enumerate(parts):
                for ci, (r0, r1, c0, c1) in enumerate(self._chunk_plan(*part.shape, cb, tile)):
                    seed = int(np.random.SeedSequence([self._seed, mi, pi, ci]).generate_state(1)[0])
                    m = map_matrix(part[r0:r1, c0:c1], tile, cell_bits=cb, noise=self._noise, seed=seed,
                                   out_frac_bits=None if ofb is None else ofb)
                    out.append(_Chunk(r0, r1, c0, c1, m))
            return out

        chunks = build(None)
        ofb = min(c.mapping.out_frac_bits for c in chunks)
        if any(c.mapping.out_frac_bits != ofb for c in chunks):
            chunks = build(ofb)
        return chunks, ofb

    # ---------------------------------------------------------------- arithmetic
    def project(self, name, x, *, time=None):
        """Integer ``x @ W_name`` through the tiles (``name`` from :data:`MATRICES`): ``(batch, N)``
        with ``out_frac_bits(name)`` fractional bits (exact sum of the chunks' outputs)."""
        n = self._cfg.d_model * 3 if name == "wqkv" else self._cfg.shapes()[name][1]
        x = np.asarray(x, dtype=np.int64)
        y = np.zeros((x.shape[0], n), dtype=np.int64)
        for c in self._chunks[name]:
            y[:, c.c0:c.c1] += tile_forward(c.mapping, x[:, c.r0:c.r1], step=self._step, time=time)
        self._step += x.shape[0]
        return y

    def gemm(self, a, b, *, out_shift, out_width):
        """A systolic-array GEMM: the exact accumulation (``acc_width``) and the array's output
        stage (round-half-up shift, saturation), :func:`golden.systolic.gemm` +
        :func:`golden.systolic.output_stage` (what :func:`golden.systolic.run_tiled` returns)."""
        acc = self._cfg.acc_width
        if out_shift < 0:
            raise ValueError(f"out_shift must be non-negative, not {out_shift} (format choice "
                             f"needs a left shift the array cannot do)")
        return systolic.output_stage(systolic.gemm(a, b, acc_width=acc), acc_width=acc,
                                     out_shift=out_shift, out_width=out_width)

    def lora_operands(self, target):
        """Quantized adapters of ``target``: ``(A_int, f_A, B_int, f_B)`` (B includes alpha/r)."""
        if target not in self._lora:
            cfg = self._cfg
            a = self._w[f"a{target}"]
            b = self._w[f"b{target}"] * cfg.lora_scaling
            fa = _frac_for(np.abs(a).max(), cfg.lora_bits)
            fb = _frac_for(np.abs(b).max(), cfg.lora_bits)
            lim = (1 << (cfg.lora_bits - 1)) - 1
            ai = np.clip(np.floor(a * 2.0 ** fa + 0.5), -lim - 1, lim).astype(np.int64)
            bi = np.clip(np.floor(b * 2.0 ** fb + 0.5), -lim - 1, lim).astype(np.int64)
            self._lora[target] = (ai, fa, bi, fb)
        return self._lora[target]

    def _fmt(self, t):
        if self.formats is None:
            raise ValueError("formats must be set: call calibrate(x) first or pass formats=")
        return self.formats[t]

    def _bits(self, t):
        return getattr(self._cfg, TENSORS[t])

    def _projection_out(self, name, x, target, xin_fmt, time, y=None, lt=None):
        """Projection ``name`` (+ LoRA of ``lt``) requantized to tensor ``target``'s format
        (the tile output ``y`` has ``out_frac_bits(name) + xin_fmt`` fractional bits)."""
        cfg = self._cfg
        y = self.project(name, x, time=time) if y is None else y
        f = self._fmt(target)
        acc = nl.rshift_round(y, self._ofb[name] + xin_fmt - f)
        lt = {"wo": "o"}.get(name) if lt is None else lt
        if cfg.lora_rank and lt in cfg.lora_targets:
            ai, fa, bi, fb = self.lora_operands(lt)
            ft = self._fmt("t" + lt)
            t = self.gemm(x, ai, out_shift=xin_fmt + fa - ft, out_width=cfg.act_bits)
            acc = acc + self.gemm(t, bi, out_shift=ft + fb - f, out_width=cfg.res_bits)
        return nl.saturate(acc, self._bits(target))

    def quantize_input(self, x):
        f = self._fmt("x")
        return nl.saturate(np.floor(np.asarray(x, dtype=np.float64) * 2.0 ** f + 0.5).astype(np.int64),
                           self._cfg.act_bits)

    def forward(self, x, *, time=None, taps=False):
        """The integer layer (see the module docstring for the order and the formats).

        Parameters
        ----------
        x : array_like of int
            ``(seq_len, d_model)`` in the ``"x"`` format (:meth:`quantize_input`).
        time : float or None
            Seconds since the crossbars were programmed (drift), ``None``: no drift.
        taps : bool
            Also return every intermediate tensor ``{name: ints}``.
        """
        cfg = self._cfg
        lim = 1 << (cfg.act_bits - 1)
        x = as_int_array("x", x, lo=-lim, hi=lim - 1, ndim=2)
        if x.shape != (cfg.seq_len, cfg.d_model):
            raise ValueError(f"x must have shape {(cfg.seq_len, cfg.d_model)}, not {x.shape}")
        F = self._fmt
        fx = F("x")
        d = cfg.d_model
        yqkv = self.project("wqkv", x, time=time)
        q, k, v = (self._projection_out("wqkv", x, t, fx, time, y=yqkv[:, i * d:(i + 1) * d], lt=t)
                   for i, t in enumerate("qkv"))
        dh = cfg.d_head
        s_scale = 2.0 ** -F("s") / math.sqrt(dh)
        ctx = np.zeros_like(q)
        pf = cfg.act_bits - 1
        mask = np.triu(np.ones((cfg.seq_len, cfg.seq_len), dtype=bool), 1) if cfg.causal else None
        probs = []
        for h in range(cfg.heads):
            sl = slice(h * dh, (h + 1) * dh)
            s = self.gemm(q[:, sl], k[:, sl].T, out_shift=F("q") + F("k") - F("s"), out_width=cfg.score_bits)
            if mask is not None:
                s = np.where(mask, -(1 << (cfg.score_bits - 1)), s)
            p = nl.i_softmax(s, s_scale, out_bits=cfg.act_bits)
            probs.append(p)
            ctx[:, sl] = self.gemm(p, v[:, sl], out_shift=pf + F("v") - F("c"), out_width=cfg.act_bits)
        o = self._projection_out("wo", ctx, "r1", F("c"), time)
        r1 = nl.saturate(o + _align(x, fx, F("r1")), cfg.res_bits)
        c1 = nl.layernorm_constants(self._w["ln1_g"], self._w["ln1_b"], 2.0 ** -F("h"))
        h_ = nl.i_layernorm(r1, c1["gamma_q"], c1["beta_q"], gamma_frac=c1["gamma_frac"],
                            out_scale_log2=-F("h"), out_bits=cfg.act_bits)
        f1 = self._projection_out("w1", h_, "f1", F("h"), time)
        g = nl.i_gelu(f1, **nl.gelu_constants(2.0 ** -F("f1"), 2.0 ** -F("g")), out_bits=cfg.act_bits)
        f2 = self._projection_out("w2", g, "r2", F("g"), time)
        r2 = nl.saturate(f2 + _align(h_, F("h"), F("r2")), cfg.res_bits)
        c2 = nl.layernorm_constants(self._w["ln2_g"], self._w["ln2_b"], 2.0 ** -F("y"))
        y = nl.i_layernorm(r2, c2["gamma_q"], c2["beta_q"], gamma_frac=c2["gamma_frac"],
                           out_scale_log2=-F("y"), out_bits=cfg.act_bits)
        if taps:
            return y, {"q": q, "k": k, "v": v, "p": np.stack(probs), "c": ctx, "r1": r1, "h": h_,
                       "f1": f1, "g": g, "r2": r2, "y": y}
        return y

    def run(self, x, *, time=None):
        """Float ``(seq_len, d_model)`` in, float out, through the integer layer."""
        return self.forward(self.quantize_input(x), time=time) * 2.0 ** -self._fmt("y")

    # ---------------------------------------------------------------- float reference
    def forward_float(self, x, *, taps=False):
        """The float64 reference of the same layer (same weights, exact softmax, erf GELU,
        LayerNorm without epsilon, no quantization)."""
        cfg, w = self._cfg, self._w
        x = np.asarray(x, dtype=np.float64)
        t = {"x": x}

        def proj(name, inp, lt):
            y = inp @ w[name]
            if cfg.lora_rank and lt in cfg.lora_targets:
                t["t" + lt] = inp @ w[f"a{lt}"]
                y = y + t["t" + lt] @ w[f"b{lt}"] * cfg.lora_scaling
            return y

        def ln(z, g, b):
            return (z - z.mean(-1, keepdims=True)) / z.std(-1, keepdims=True) * g + b

        q, k, v = (proj(n, x, lt) for n, lt in (("wq", "q"), ("wk", "k"), ("wv", "v")))
        t.update(q=q, k=k, v=v)
        dh = cfg.d_head
        ctx = np.zeros_like(q)
        smax = 0.0
        for h in range(cfg.heads):
            sl = slice(h * dh, (h + 1) * dh)
            s = q[:, sl] @ k[:, sl].T
            smax = max(smax, float(np.abs(s).max()))
            s = s / math.sqrt(dh)
            if cfg.causal:
                s = np.where(np.triu(np.ones_like(s, dtype=bool), 1), -np.inf, s)
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            ctx[:, sl] = p @ v[:, sl]
        t["s"] = np.array([smax])
        t["c"] = ctx
        r1 = x + proj("wo", ctx, "o")
        h_ = ln(r1, w["ln1_g"], w["ln1_b"])
        f1 = h_ @ w["w1"]
        from math import erf
        g = 0.5 * f1 * (1 + np.vectorize(erf)(f1 / math.sqrt(2)))
        r2 = h_ + g @ w["w2"]
        y = ln(r2, w["ln2_g"], w["ln2_b"])
        t.update(r1=r1, h=h_, f1=f1, g=g, r2=r2, y=y)
        return (y, t) if taps else y

    def calibrate(self, x, *, margin=1.25):
        """Set the static formats from the float reference on a calibration batch ``x``: each
        tensor gets the most fractional bits for which ``margin`` times its largest magnitude
        fits its width. Returns the formats."""
        _, t = self.forward_float(x, taps=True)
        cfg = self._cfg
        fm = {}
        for name in TENSORS:
            if name in t:
                fm[name] = _frac_for(float(np.abs(t[name]).max()) * margin, self._bits(name))
        for lt in ("q", "k", "v", "o"):
            fm.setdefault("t" + lt, 0)
        # The systolic output stage shifts right only: X A's format must not be finer than the
        # product of its operands'.
        for lt in cfg.lora_targets if cfg.lora_rank else ():
            src = fm["c"] if lt == "o" else fm["x"]
            fm["t" + lt] = min(fm["t" + lt], src + self.lora_operands(lt)[1])
        fm["s"] = min(fm["s"], fm["q"] + fm["k"])
        fm["c"] = min(fm["c"], cfg.act_bits - 1 + fm["v"])
        self.formats = fm
        return fm

    def relative_error(self, x, *, time=None):
        """Relative L2 error of the integer layer's output against the float reference."""
        if self.formats is None:
            self.calibrate(x)
        return relative_l2(self.run(x, time=time), self.forward_float(x))
