"""Writing the area reports: ``area.json`` (schema below), ``area.md`` and ``area.png``.

``area.json`` schema (``schema`` = 1)::

    {
      "schema": 1,
      "tools": {"yosys": "Yosys 0.70 (git sha1 ...)", "amaranth": "0.5.x", "python": "3.x"},
      "liberty": "/path/to/lib" or null,      # null: no areas in um^2, no delays
      "wall_seconds": float,                  # the whole `python -m synth all` run
      "cpu_seconds": float,                   # its CPU time (Python + every Yosys process)
      "benchmark": {"command", "wall_seconds", "cpu_seconds", "jobs", "cpus",
                    "load_average_at_start",  # the machine is shared: read wall with it
                    "designs", "designs_cached",          # designs synthesized / from cache
                    "modules_synthesized", "modules_cached",
                    "slowest": [[block, parameters, seconds], ...], "target"},
      "blocks": [
        {
          "block": "systolic_array",          # registry name
          "module": "systolic_array",         # Verilog top module
          "parameters": {"rows": 128, ...},   # every constructor parameter (defaults)
          "cells": {"total": int,             # generic Yosys gates + flip-flops, counted
                    "by_type": {"$_AND_": int, ...}},   # over all instances
          "transistors": int,                 # `stat -tech cmos` after dfflegalize
          "area_um2": float or null,          # `stat -liberty` after dfflibmap + abc -liberty
          "seq_area_um2": float or null,      # of which flip-flops and latches
          "sram_area_um2": float,             # of which SRAM macros (Liberty only)
          "memories": [{"module", "cell", "width", "depth", "read_ports", "write_ports",
                        "instances", "implementation": "sram" | "flip-flops",
                        "macro", "count", "area_um2", "liberty"}],  # one instance's macros
          "depth": {"module": str,            # the critical (slowest) module
                    "levels": int,            # cells on its longest path
                    "level_unit": "liberty cells" | "generic gates",
                    "delay_ns": float or null},   # nominal-delay estimate (Liberty only)
          "modules": {name: {"instances": int, "cells": int, "cells_by_type": {...},
                             "area_um2": float, "seq_area_um2": float,   # one instance,
                             "levels": int, "delay_ns": float,          # local logic only
                             "mapping": str,  # script: "synth, abc -liberty" or "lean ..."
                             "yosys_seconds": float, "cached": bool}},
          "mapping": {module: str},           # the same, per module: which modules got the
                                              # lean script (see synth/flow.py)
          "seconds": float                    # wall time of this block's synthesis
        }, ...
      ],
      "errors": {block: "message"},           # blocks that failed to elaborate/synthesize
      "comparisons": {"adc"|"dequant"|"systolic"|"router": {
          "title", "claim", "configuration", "available", "rows": [...], "notes": [...]}}
    }
"""

import json
from pathlib import Path

__all__ = ["write_json", "write_markdown", "write_plot", "format_summary"]


def _fmt(x, digits=0):
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _params(params):
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def write_json(report, path):
    Path(path).write_text(json.dumps(report, indent=1) + "\n")


def block_table(rows, unit_note=True):
    lines = ["| block | parameters | cells | transistors | area um^2 | seq. area um^2 | "
             "critical module | levels | delay ns | synth s |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        d = r["depth"]
        lines.append(f"| {r['block']} | {_params(r['parameters'])} | {_fmt(r['cells']['total'])}"
                     f" | {_fmt(r['transistors'])} | {_fmt(r['area_um2'])} | "
                     f"{_fmt(r['seq_area_um2'])} | {d['module']} | {_fmt(d['levels'])} | "
                     f"{_fmt(d['delay_ns'], 2)} | {_fmt(r['seconds'], 1)} |")
    return lines


def comparison_lines(comp):
    lines = [f"### {comp['title']}", ""]
    if comp.get("claim"):
        lines.append(f"Claim: {comp['claim']}.  ")
    if comp.get("configuration"):
        lines.append(f"Configuration: {comp['configuration']}.")
    lines.append("")
    if comp["rows"]:
        extra = []
        for r in comp["rows"]:
            for k in r:
                if k not in ("configuration", "parameters", "cells", "transistors", "area_um2",
                             "seq_area_um2", "depth") and k not in extra:
                    extra.append(k)
        lines.append("| configuration | cells | transistors | area um^2 | seq. um^2 | delay ns | "
                     + " | ".join(extra) + " |")
        lines.append("|---|---:|---:|---:|---:|---:|" + "---:|" * len(extra))
        for r in comp["rows"]:
            lines.append(f"| {r['configuration']} | {_fmt(r['cells'])} | {_fmt(r['transistors'])}"
                         f" | {_fmt(r['area_um2'])} | {_fmt(r['seq_area_um2'])} | "
                         f"{_fmt(r['depth'].get('delay_ns'), 2)} | "
                         + " | ".join(_fmt(r.get(k), 2) for k in extra) + " |")
        lines.append("")
    for note in comp["notes"]:
        lines.append(f"- {note}")
    lines.append("")
    return lines


def write_markdown(report, path):
    lines = ["# Area report", "",
             f"Yosys: {report['tools']['yosys']}; Amaranth {report['tools']['amaranth']}.  ",
             f"Liberty: {report['liberty'] or 'none (no um^2 areas, depth in generic gates)'}.  ",
             f"Wall time: {report['wall_seconds']:.1f} s"
             + (f", CPU time {report['cpu_seconds']:.1f} s" if "cpu_seconds" in report else "")
             + (f" ({report['benchmark']['jobs']} Yosys jobs, load average "
                f"{report['benchmark']['load_average_at_start']} at start, "
                f"{report['benchmark']['designs_cached']} of {report['benchmark']['designs']} "
                f"designs from the cache)" if "benchmark" in report else "") + ".", "",
             "Hierarchy kept: each shared cell module is synthesized once and counted by "
             "instance. Transistors: `stat -tech cmos` after `dfflegalize`. Delay: nominal "
             "Liberty arc delays (0.1 ns slew, 10 fF load) along the longest path of the "
             "critical module, clock-to-Q included, no wires. Modules marked *lean* (more "
             "flip-flop bits than `synth.flow.LEAN_REGISTER_BITS`) were mapped without "
             "`fsm`/`share`/`opt -full` and with ABC's quick script (`strash; dretime; map`), "
             "also for the Liberty; they are not timed.", "",
             "## Blocks at their default parameters", ""]
    lines += block_table(report["blocks"])
    lines.append("")
    for name, msg in report.get("errors", {}).items():
        lines.append(f"- {name}: failed: {msg}")
    mems = [(r["block"], m) for r in report["blocks"] for m in r.get("memories", [])]
    if mems:
        lines += ["", "## Memories", "",
                  "| block | module/memory | words x bits | instances | as | macros | um^2 each |",
                  "|---|---|---:|---:|---|---|---:|"]
        for block, m in mems:
            lines.append(f"| {block} | {m['module']}/{m['cell']} | {m['depth']} x {m['width']} | "
                         f"{m['instances']} | {m['implementation']} | "
                         f"{(str(m.get('count')) + ' x ' + m['macro']) if m.get('macro') else '-'}"
                         f" | {_fmt(m.get('area_um2') or None)} |")
    lines += ["", "## Modules (one instance each, local logic)", ""]
    for r in report["blocks"]:
        lines.append(f"**{r['block']}**: " + "; ".join(
            f"{m} x{v['instances']}: {_fmt(v.get('area_um2', None))} um^2, "
            + ("lean, not timed" if v.get("mapping", "").startswith("lean")
               else f"{v.get('levels', '-')} levels") for m, v in r["modules"].items()))
        lines.append("")
    if report.get("comparisons"):
        lines += ["## Comparisons", ""]
        for comp in report["comparisons"].values():
            lines += comparison_lines(comp)
    Path(path).write_text("\n".join(lines) + "\n")


def write_plot(report, path):
    """100% stacked bar per block: share of each module type (area x instances), with the
    block total in the tick label (area with a Liberty, generic cells without)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = report["blocks"]
    if not rows:
        return False
    use_area = report["liberty"] is not None
    names = sorted({m for r in rows for m in r["modules"]})
    cmap = plt.get_cmap("tab20")
    colors = {m: cmap(i % 20) for i, m in enumerate(names)}
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(rows)) + 2, 4.8))
    labelled = set()
    ticks = []
    for i, r in enumerate(rows):
        parts = {m: ((v.get("area_um2") or 0.0) if use_area else float(v["cells"]))
                 * v["instances"] for m, v in r["modules"].items()}
        total = sum(parts.values()) or 1.0
        bottom = 0.0
        for m in sorted(parts):
            share = 100.0 * parts[m] / total
            if share <= 0:
                continue
            ax.bar(i, share, bottom=bottom, color=colors[m],
                   label=None if m in labelled else m, edgecolor="white", linewidth=0.5)
            labelled.add(m)
            bottom += share
        total_text = (f"{total / 1e6:.3g} mm^2" if use_area else f"{total:,.0f} cells")
        ticks.append(f"{r['block']}\n{total_text}")
    ax.set_xticks(range(len(rows)), ticks, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("share of block " + ("area" if use_area else "cells") + " (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Area breakdown by module (module area x instances)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def format_summary(report):
    """A one-screen text summary."""
    out = [f"Area ({report['liberty'] or 'no Liberty'}), {report['wall_seconds']:.0f} s:"]
    out.append(f"  {'block':<24}{'cells':>10}{'transistors':>13}{'area um^2':>14}"
               f"{'seq %':>7}{'delay ns':>10}  critical")
    for r in report["blocks"]:
        seq = "-" if not r["area_um2"] else f"{100 * r['seq_area_um2'] / r['area_um2']:.0f}"
        out.append(f"  {r['block']:<24}{_fmt(r['cells']['total']):>10}"
                   f"{_fmt(r['transistors']):>13}{_fmt(r['area_um2']):>14}{seq:>7}"
                   f"{_fmt(r['depth']['delay_ns'], 2):>10}  {r['depth']['module']}")
    for name, msg in report.get("errors", {}).items():
        out.append(f"  {name:<24}failed: {msg.splitlines()[0]}")
    for comp in report.get("comparisons", {}).values():
        if not comp["available"]:
            out.append(f"  {comp['title']}: {comp['notes'][-1]}")
            continue
        parts = []
        for r in comp["rows"]:
            key = next((k for k in ("module_vs_fixed6_pct", "overhead_pct", "area_per_pe_um2",
                                    "vs_first_pct") if r.get(k) is not None), None)
            metric = r["area_um2"] if r["area_um2"] is not None else r["transistors"]
            parts.append(f"{r['configuration']}: {_fmt(metric)}"
                         + (f" ({key.replace('_', ' ')} {_fmt(r[key], 1)})" if key else ""))
        out.append(f"  {comp['title']}: " + "; ".join(parts))
    return "\n".join(out)
