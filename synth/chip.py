# amaranth: UnusedElaboratable=no
"""The chip's area report: :class:`hdl.chip.AtleusChip` by core class, against Atleus Table IV.

``make synth`` synthesizes the chip (block ``atleus_chip``) like every block: per unit (the
top and each shared cell module, each once, cached by its text, so the tiles, systolic rows,
PEs and routers already synthesized as the ``pim_tile``, ``systolic_array``/``systolic_core``
and ``noc_network`` blocks are read from the module cache) and counted by instance. The
analog crossbar macros (``reram_crossbars_<X>x<R>x<C>``, one per tile: arrays and SAR
comparators) are empty stubs here (:func:`add_macro_stubs`): their area is not included.

:func:`chip_breakdown` splits the total by class: the ReRAM core's digital logic (per core:
its tiles' periphery plus the core's sequencer, memory and row buffer; per tile), the
systolic core, the routers, the node shells (network interface, demux, fence, loopback,
queues) and the top's glue, and compares in ratio with Atleus Table IV (ReRAM tile
0.37 mm^2, systolic core 2.55 mm^2, 32 nm). The Liberty here is IHP SG13G2 (130 nm); the
32 nm figures scale it by (32/130)^2 (ideal scaling, an estimate).
"""

import re

__all__ = ["ATLEUS_TILE_MM2", "ATLEUS_SYSTOLIC_MM2", "ATLEUS_NODE_NM", "macro_stub_rtlil",
           "add_macro_stubs", "chip_breakdown", "breakdown_lines", "write_chip_report"]

#: Atleus Table IV (32 nm): one ReRAM tile (96 crossbars with ADCs, DACs, S&A, buffers) and one
#: 128x32 systolic core (with its 1 Mb SRAM).
ATLEUS_TILE_MM2 = 0.37
ATLEUS_SYSTOLIC_MM2 = 2.55
ATLEUS_NODE_NM = 32.0
#: The node of the shipped Liberty (IHP SG13G2).
LIBERTY_NODE_NM = 130.0

_MACRO = re.compile(r"^\s*cell \\(reram_crossbars_\d+x\d+x\d+) ", re.M)


def macro_stub_rtlil(tile):
    """An empty RTLIL module with the ports of a tile's analog macro
    (:func:`hdl.pim_tile.core.macro_name`): ``clk``, ``rst`` and the tile's analog outputs in,
    ``decision`` out (undriven). Synthesized, it is empty: the analog area is not counted."""
    from amaranth.hdl import Shape

    from hdl.pim_tile import PimTile
    from hdl.pim_tile.core import macro_name
    sig = PimTile(**tile.__dict__).signature.members
    ports = [("clk", 1, "input"), ("rst", 1, "input")]
    for name in ("drive", "sample", "column", "trial", "trial_en"):
        ports.append((name, Shape.cast(sig[name].shape).width, "input"))
    ports.append(("decision", Shape.cast(sig["decision"].shape).width, "output"))
    lines = ["attribute \\keep_hierarchy 1", f"module \\{macro_name(tile)}"]
    for k, (name, width, direction) in enumerate(ports, 1):
        lines.append(f"  wire width {width} {direction} {k} \\{name}")
    lines.append("end")
    return "\n".join(lines) + "\n"


def add_macro_stubs(text, config):
    """``text`` (the chip's RTLIL) with an empty module for each analog macro it instantiates
    (:func:`macro_stub_rtlil` of ``config.tile``)."""
    from hdl.pim_tile.core import macro_name
    names = set(_MACRO.findall(text))
    if not names:
        return text
    expected = macro_name(config.tile)
    if names != {expected}:
        raise ValueError(f"Unexpected analog macros {sorted(names)} (expected {expected})")
    return text + macro_stub_rtlil(config.tile)


def _hier(rep, module, key):
    mods = rep["modules"]
    m = mods[module]
    return (m.get(key) or 0) + sum(n * _hier(rep, c, key) for c, n in
                                   m.get("submodules", {}).items() if c in mods)


def chip_breakdown(rep, config):
    """The chip report ``rep`` (a block report of ``atleus_chip``) by class.

    Returns
    -------
    dict
        ``classes``: ``[{"class", "module", "instances", "area_um2" (one instance, with its
        submodules), "total_um2", "share"}]``; ``total_um2``; ``atleus``: the ratio
        comparison; ``not_included``: the analog macros.
    """
    mods = rep["modules"]
    key = "area_um2" if rep.get("area_um2") is not None else "cells"

    def h(m):
        return _hier(rep, m, key) if m in mods else 0.0

    def n(m):
        return mods[m]["instances"] if m in mods else 0

    total = rep["area_um2"] if key == "area_um2" else rep["cells"]["total"]
    rows = []

    def add(cls, module, per, count, note=""):
        rows.append({"class": cls, "module": module, "instances": count, "per_instance": per,
                     "total": per * count, "share": per * count / total if total else 0.0,
                     "note": note})

    tile_area = h("pim_tile")
    core_area = h("pim_core")
    add("ReRAM tile (digital periphery)", "pim_tile", tile_area, n("pim_tile"),
        "ADC controllers, S&A, dequantizers, sequencer, accumulator")
    tiles_per_core = mods.get("pim_core", {}).get("submodules", {}).get("pim_tile", 0)
    add("ReRAM core logic outside its tiles", "pim_core", core_area - tiles_per_core * tile_area,
        n("pim_core"), "command sequencer, local memory, row buffer")
    add("systolic core", "systolic_core", h("systolic_core"), n("systolic_core"),
        "array, nonlinear unit, local memory, sequencer")
    for r in sorted(m for m in mods if re.fullmatch(r"noc_router(_\d+)?", m)):
        add(f"router ({r})", r, h(r), n(r), "")
    core_of = {"host_node": "systolic_core", "systolic_node": "systolic_core",
               "pim_node": "pim_core"}
    for node, core in core_of.items():
        if node in mods:
            add(f"node shell ({node})", node, h(node) - h(core), n(node),
                "network interface, demux, fence, loopback"
                + (", host port" if node == "host_node" else ""))
    top = rep.get("module", "atleus_chip")
    add("top glue", top, mods[top].get(key) or 0.0, 1, "error flags, constants")
    accounted = sum(r["total"] for r in rows)
    macros = sorted(m for m in mods if m.startswith("reram_crossbars_"))
    out = {"unit": "um^2" if key == "area_um2" else "generic cells", "total": total,
           "accounted": accounted, "classes": rows,
           "not_included": [{"module": m, "instances": n(m),
                             "what": "analog crossbar arrays with their SAR comparators, DACs "
                                     "(blackbox; Atleus counts them in the tile's 0.37 mm^2)"}
                            for m in macros]}
    if key == "area_um2":
        scale = (ATLEUS_NODE_NM / LIBERTY_NODE_NM) ** 2
        sys_mm2 = h("systolic_core") / 1e6
        tile_mm2 = tile_area / 1e6
        out["atleus"] = {
            "liberty_node_nm": LIBERTY_NODE_NM, "atleus_node_nm": ATLEUS_NODE_NM,
            "scale_to_32nm": scale,
            "tile_mm2": tile_mm2, "tile_mm2_at_32nm": tile_mm2 * scale,
            "atleus_tile_mm2": ATLEUS_TILE_MM2,
            "systolic_core_mm2": sys_mm2, "systolic_core_mm2_at_32nm": sys_mm2 * scale,
            "atleus_systolic_core_mm2": ATLEUS_SYSTOLIC_MM2,
            "systolic_over_tile": sys_mm2 / tile_mm2 if tile_mm2 else None,
            "atleus_systolic_over_tile": ATLEUS_SYSTOLIC_MM2 / ATLEUS_TILE_MM2,
            "notes": [
                "Areas from the IHP SG13G2 130 nm Liberty; the 32 nm columns scale them by "
                "(32/130)^2 (ideal scaling).",
                "The tile here is its digital periphery only: the analog crossbars, SAR "
                "comparators and DACs are blackboxes (not included); Atleus' 0.37 mm^2 "
                "includes them (ISAAC's ADCs alone are 0.0012 mm^2 x 96 at 32 nm).",
                "Memories became SRAM macros where the shipped IHP macros are smaller than "
                "flip-flops (synth/README.md); Atleus' systolic core includes its 1 Mb SRAM.",
            ]}
    return out


def breakdown_lines(b):
    """Markdown lines of :func:`chip_breakdown`."""
    unit = b["unit"]
    lines = [f"| class | module | instances | per instance ({unit}) | total ({unit}) | share |",
             "|---|---|---:|---:|---:|---:|"]
    for r in b["classes"]:
        lines.append(f"| {r['class']} | `{r['module']}` | {r['instances']} | "
                     f"{r['per_instance']:,.0f} | {r['total']:,.0f} | {100 * r['share']:.1f}% |")
    lines.append(f"| **chip** | | | | {b['total']:,.0f} | 100% |")
    for m in b["not_included"]:
        lines.append(f"\nNot included: `{m['module']}` x {m['instances']}: {m['what']}.")
    a = b.get("atleus")
    if a:
        lines += ["", "| vs Atleus Table IV | here (130 nm) | here scaled to 32 nm "
                  "| Atleus (32 nm) |",
                  "|---|---:|---:|---:|",
                  f"| ReRAM tile | {a['tile_mm2']:.3f} mm^2 (digital only) | "
                  f"{a['tile_mm2_at_32nm']:.4f} mm^2 | {a['atleus_tile_mm2']} mm^2 |",
                  f"| systolic core | {a['systolic_core_mm2']:.3f} mm^2 | "
                  f"{a['systolic_core_mm2_at_32nm']:.4f} mm^2 | "
                  f"{a['atleus_systolic_core_mm2']} mm^2 |",
                  f"| systolic core / tile | {a['systolic_over_tile']:.2f} | | "
                  f"{a['atleus_systolic_over_tile']:.2f} |", ""]
        lines += [f"- {t}" for t in a["notes"]]
    return lines


def write_chip_report(rep, config, out_dir):
    """Write ``chip.json`` (the breakdown) and ``chip.md`` into ``out_dir``; returns the
    breakdown."""
    import json
    from pathlib import Path
    b = chip_breakdown(rep, config)
    b["parameters"] = rep.get("parameters")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "chip.json").write_text(json.dumps(b, indent=1) + "\n")
    (out_dir / "chip.md").write_text("# Area of the Atleus chip by core class\n\n"
                                     + "\n".join(breakdown_lines(b)) + "\n")
    return b
