"""The Atleus chip: one core per NoC node behind a :class:`hdl.chip.CoreNode` shell, the
network, and the host port at node 0."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from golden.chip import REGRESSION_CHIP, ChipConfig
from golden.network_interface import NiConfig
from golden.pim_tile import TileConfig

from ..cells import add_cell
from ..noc.network import NocNetwork
from ..registry import block
from ..noc.network_interface import receive_layout, send_layout
from .node import ELEM_WIDTH, HOST_FIRST, CoreNode

__all__ = ["AtleusChip", "chip_config", "chip_ni_config", "PRESETS", "SMALL_CHIP", "HOST_NODE"]

#: The smallest chip (quick synthesis tests): one systolic node over one ReRAM node, a 2-crossbar
#: 8x8 tile, a 32x2 array (32-lane vectors: the systolic core's 292-bit command must fit one).
SMALL_CHIP = ChipConfig(
    dims=(1, 1, 2), tiles_per_core=1,
    tile=TileConfig(crossbars=2, rows=8, cols=8, input_bits=2, weight_bits=2, adc_bits=4,
                    resolutions=(3, 4), group=2, row_blocks=1, outputs=8, scale_bits=6,
                    scale_frac_bits=4, out_bits=8),
    systolic_rows=32, systolic_cols=2, systolic_sram_bits=16 * 16 * 32, acc_width=16,
    topology="mesh", vcs=1, noc_buffer=3, pim_mem_words=16, cmd_depth=2)

#: Named configurations for the command line (``--config``).
PRESETS = {"atleus": ChipConfig(), "regression": REGRESSION_CHIP, "small": SMALL_CHIP}

#: The node with the host port (``ChipConfig.node(0, 0, 0)``: tier 0, a systolic core).
HOST_NODE = 0

#: The chip's tag fields (the core interface's NiConfig).
LAYER_BITS, STAGE_BITS, OFFSET_BITS = 6, 4, 16


def chip_ni_config(config):
    """The :class:`golden.network_interface.NiConfig` of every node of ``config``:
    ``payload_width = flit_bits``, 16-bit elements, ``length = vector_length``, all nodes,
    6/4/16-bit layer/stage/offset tags."""
    X, Y, Z = config.dims
    return NiConfig(payload_width=config.flit_bits, elem_width=ELEM_WIDTH,
                    length=config.vector_length, nodes=X * Y * Z, layer_bits=LAYER_BITS,
                    stage_bits=STAGE_BITS, offset_bits=OFFSET_BITS)


def chip_config(config="atleus"):
    """The :class:`golden.chip.ChipConfig` that ``AtleusChip(config)`` builds (a ChipConfig,
    a name of :data:`PRESETS`, or None: Atleus')."""
    if config is None:
        return ChipConfig()
    if isinstance(config, str):
        if config not in PRESETS:
            raise TypeError(f"Config must be a golden.chip.ChipConfig or one of "
                            f"{', '.join(PRESETS)}, not {config!r}")
        return PRESETS[config]
    if not isinstance(config, ChipConfig):
        raise TypeError(f"Config must be a golden.chip.ChipConfig or one of "
                        f"{', '.join(PRESETS)}, not {config!r}")
    return config


def _check_divides(name, value, L):
    if L % value:
        raise ValueError(f"{name} ({value}) must divide the vector length {L} "
                         f"(max(tile.rows, systolic_rows))")


@block("atleus_chip",
       config="the chip: atleus (golden.chip.ChipConfig(): 4x4x4, 16 tiles of 96 128x128 "
              "crossbars per ReRAM core, 128x32 systolic cores), regression "
              "(golden.chip.REGRESSION_CHIP) or small (1x1x2, for quick synthesis)")
class AtleusChip(wiring.Component):
    """The Atleus chip (Fig. 2): ``X * Y * tiers`` cores on the NoC, a host port at node 0.

    Tier 0 holds systolic cores (:class:`hdl.systolic.core.SystolicCore`), tiers 1 and up
    ReRAM cores (:class:`hdl.pim_tile.core.PimCore`, ``analog="macro"``: each tile's analog
    crossbars are a blackbox module ``reram_crossbars_<X>x<R>x<C>``). Every core sits behind
    a :class:`CoreNode` shell (network interface, receive demux, command fence, loopback);
    node ``ChipConfig.node(x, y, z)`` is router ``x + X * (y + Y * z)`` of a
    :class:`hdl.noc.NocNetwork` with ``topology = config.topology_name()``, ``vcs``,
    ``buffer = noc_buffer`` and ``payload_width = flit_bits``. Vectors are
    ``vector_length`` = max(tile.rows, systolic_rows) 16-bit elements.

    The host port (it stands for HBM) is node 0's: vectors on ``host_i`` (``data``,
    ``dest``, ``tag``) enter node 0's injection, merged with its core's output vector by
    vector; vectors received at node 0 with an offset in ``0x8000 .. 0xFFFE`` leave on
    ``host_o``. Commands are vectors with offset 0xFFFF (lane 0: the fence's write count,
    bits 16 and up: the core's command); see :class:`CoreNode`.

    Each core class, each shell class (node 0's, the other systolic nodes', the ReRAM
    nodes') and each router configuration is one Verilog module.

    Parameters
    ----------
    config : golden.chip.ChipConfig or str or None
        The chip (``"atleus"`` or None: ``ChipConfig()``, Atleus' 4x4x4 chip;
        ``"regression"``: :data:`golden.chip.REGRESSION_CHIP`; ``"small"``:
        :data:`SMALL_CHIP`). Every field that the RTL uses reaches it by its name: ``dims``,
        ``tiles_per_core``, ``tile``, ``systolic_rows``, ``systolic_cols``,
        ``systolic_sram_bits`` (the systolic core's memory: ``systolic_sram_bits / (16 *
        vector_length)`` words), ``acc_width``, ``topology``, ``flit_bits``, ``vcs``,
        ``noc_buffer``, ``pim_mem_words``, ``cmd_depth`` (each shell's command queue).
        ``nl_lanes`` does not (the systolic core's nonlinear unit takes one element per
        cycle); the clocks and the HBM bandwidth are the timing model's only (one clock
        domain here).

    Members
    -------
    host_i : In(stream.Signature(send_layout(ni)))
        Vectors from the host.
    host_o : Out(stream.Signature(receive_layout(ni)))
        Vectors to the host.
    error : Out(nodes)
        Bit ``n``: node ``n`` flagged an error (sticky: a dropped packet, an out-of-range
        write, a refused command, or a head flit for no node refused by its router).
    busy : Out(nodes)
        Bit ``n``: node ``n``'s core is busy or has a command waiting.
    """

    def __init__(self, config="atleus"):
        self._config = config = chip_config(config)
        L = config.vector_length
        _check_divides("systolic_rows", config.systolic_rows, L)
        _check_divides("systolic_cols", config.systolic_cols, L)
        _check_divides("tile.rows", config.tile.rows, L)
        self._ni = ni = chip_ni_config(config)
        if self.systolic_mem_words < 1:
            raise ValueError(f"systolic_sram_bits ({config.systolic_sram_bits}) must hold at "
                             f"least one {16 * L}-bit word")
        n = ni.nodes
        super().__init__({
            "host_i": In(stream.Signature(send_layout(ni))),
            "host_o": Out(stream.Signature(receive_layout(ni))),
            "error": Out(n),
            "busy": Out(n),
        })

    @classmethod
    def from_config(cls, config):
        """The chip of a :class:`golden.chip.ChipConfig`."""
        if not isinstance(config, ChipConfig):
            raise TypeError(f"Config must be a golden.chip.ChipConfig, not {config!r}")
        return cls(config)

    @property
    def config(self):
        """The parameters (:class:`golden.chip.ChipConfig`)."""
        return self._config

    @property
    def ni(self):
        """The nodes' :class:`golden.network_interface.NiConfig`."""
        return self._ni

    @property
    def nodes(self):
        return self._ni.nodes

    @property
    def systolic_mem_words(self):
        """Words of a systolic core's memory: ``systolic_sram_bits // (16 * L)``, at most
        32768 (the host window starts above)."""
        return min(HOST_FIRST, self._config.systolic_sram_bits // (ELEM_WIDTH * self._ni.length))

    def core_spec(self, tier):
        """``(core class, mem_words, core_args)`` of the cores on ``tier``."""
        c = self._config
        if tier == 0:
            from ..systolic.core import SystolicCore
            return SystolicCore, self.systolic_mem_words, (
                ("rows", c.systolic_rows), ("cols", c.systolic_cols),
                ("acc_width", c.acc_width))
        from ..pim_tile.core import PimCore
        return PimCore, c.pim_mem_words, (("tiles", c.tiles_per_core), ("tile", c.tile),
                                          ("analog", "macro"))

    def elaborate(self, platform):
        m = Module()
        c = self._config
        X, Y, Z = c.dims
        m.submodules.network = net = NocNetwork(
            c.topology_name(), dims=c.dims, vcs=c.vcs, buffer=c.noc_buffer,
            payload_width=c.flit_bits)
        specs = {0: self.core_spec(0)}
        if Z > 1:
            specs[1] = self.core_spec(1)
        for z in range(Z):
            core, mem_words, args = specs[min(z, 1)]
            for y in range(Y):
                for x in range(X):
                    n = c.node(x, y, z)
                    host = n == HOST_NODE
                    kind = "host" if host else "systolic" if z == 0 else "pim"
                    node = add_cell(m, f"node_{x}_{y}_{z}", CoreNode, self._ni, core=core,
                                    core_args=args, mem_words=mem_words, host=host,
                                    cmd_depth=c.cmd_depth,
                                    module_name=f"{kind}_node")
                    m.d.comb += node.node_id.eq(n)
                    wiring.connect(m, node.inject, net.inject[n])
                    wiring.connect(m, net.eject[n], node.eject)
                    if host:
                        wiring.connect(m, wiring.flipped(self.host_i), node.host_i)
                        wiring.connect(m, node.host_o, wiring.flipped(self.host_o))
                    net_error = Signal(name=f"net_error_{n}")
                    with m.If(net.error[n]):
                        m.d.sync += net_error.eq(1)
                    m.d.comb += [self.error[n].eq(node.error | net_error),
                                 self.busy[n].eq(node.busy)]
        return m
