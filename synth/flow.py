"""Synthesis of one design with Yosys, keeping its hierarchy.

One Yosys run per design:

1. ``synth -top <top>`` (generic gates; no ``-flatten``: each shared cell module is
   synthesized once and counted by instance) and ``stat -json`` for the generic cell counts;
2. ``dfflegalize`` to plain ``$_DFF_P_``/``$_DFF_N_`` (enables, resets and initial values
   become gates, so every flip-flop is counted) and ``stat -tech cmos`` for the transistor
   estimate;
3. with a Liberty: ``dfflibmap -liberty``, ``abc -liberty`` and ``stat -liberty`` for the area
   (total and sequential) in um^2, and ``write_json`` of the mapped netlist for the
   critical-path estimate (:mod:`synth.depth`); without one, the depth is counted in generic
   gate levels.
"""

import json
import re
import tempfile
import time
from pathlib import Path

from .depth import module_depths
from .liberty import load_liberty
from .yosys import run_yosys

__all__ = ["synthesize", "instance_counts"]


def _clean(name):
    return name[1:] if name.startswith("\\") else name


def instance_counts(stat, top):
    """``{module: number of instances in the design}`` from a ``stat -json`` report."""
    modules = {_clean(k): v for k, v in stat["modules"].items()}
    counts = {top: 1}
    order = [top]
    # Topological order: a module's count is complete once all its parents are processed.
    children = {m: {_clean(t): n for t, n in v.get("num_cells_by_type", {}).items()
                    if _clean(t) in modules} for m, v in modules.items()}
    indegree = {m: 0 for m in modules}
    for m, ch in children.items():
        for c in ch:
            indegree[c] += 1
    ready = [m for m, d in indegree.items() if d == 0]
    order = []
    while ready:
        m = ready.pop()
        order.append(m)
        for c in children[m]:
            indegree[c] -= 1
            if indegree[c] == 0:
                ready.append(c)
    counts = {m: 0 for m in modules}
    counts[top] = 1
    for m in order:
        for c, n in children[m].items():
            counts[c] += counts[m] * n
    return {m: n for m, n in counts.items() if n}


SRAM_CELL = "$__pimrtl_sram"
SRAM_MIN_BITS_GENERIC = 4096
DEPTH_MAX_COARSE_CELLS = 20000
SRAM_TRANSISTORS_PER_BIT = 6


def find_sram_macros(liberty_path):
    """SRAM macro cells (Liberty cells with a ``memory`` group) in the ``*.lib`` files next to
    the standard-cell Liberty: ``[(name, words, bits, area_um2, file)]``."""
    macros = []
    lib_path = Path(liberty_path).resolve()
    for f in sorted(lib_path.parent.glob("*.lib")):
        if f == lib_path:
            continue
        try:
            lib = load_liberty(f)
        except Exception:
            continue
        for c in lib.cells.values():
            if c.memory is not None and c.area == c.area:
                macros.append((c.name, c.memory[0], c.memory[1], c.area, str(f)))
    return macros


def best_macro(width, depth, macros):
    """Cheapest tiling of a ``depth x width`` memory with one macro type, or None."""
    best = None
    for name, words, bits, area, _ in macros:
        n = -(-width // bits) * -(-depth // words)
        if best is None or n * area < best["area_um2"]:
            best = {"macro": name, "count": n, "area_um2": round(n * area, 3)}
    return best


def _parse_memories(listing, dump):
    """Memories of ``select -list t:$mem_v2`` and ``dump t:$mem_v2`` (same order)."""
    names = [ln.strip() for ln in listing.splitlines() if "/" in ln]
    params = []
    for block in dump.split("cell $mem_v2")[1:]:
        width = re.search(r"parameter \\WIDTH (\d+)", block)
        size = re.search(r"parameter \\SIZE (\d+)", block)
        rd = re.search(r"parameter \\RD_PORTS (\d+)", block)
        wr = re.search(r"parameter \\WR_PORTS (\d+)", block)
        params.append({"width": int(width.group(1)) if width else 0,
                       "depth": int(size.group(1)) if size else 0,
                       "read_ports": int(rd.group(1)) if rd else 1,
                       "write_ports": int(wr.group(1)) if wr else 1})
    out = []
    for name, p in zip(names, params):
        module, cell = name.split("/", 1)
        out.append(dict(p, module=module, cell=cell))
    return out


def _local_cells(stat_module, module_names):
    return {t: n for t, n in stat_module.get("num_cells_by_type", {}).items()
            if _clean(t) not in module_names}


def synthesize(verilog, top, *, liberty=None, work_dir=None, keep=False, sram_macros=None,
               fast=False):
    """Synthesize ``verilog`` (text) with top module ``top``; returns the report dictionary.

    Parameters
    ----------
    verilog : str
        Verilog text of the whole design (top module and shared cell modules).
    top : str
        Top module name.
    liberty : str or Path or None
        Liberty file for the area in um^2 and the delay estimate. Checked first
        (:class:`synth.liberty.LibertyError` if missing or unreadable).
    work_dir : Path or None
        Directory for the Yosys script, log and reports (a temporary one if None).
    sram_macros : list or None
        ``[(name, words, bits, area_um2, file)]`` SRAM macros for memories (with a Liberty
        only); None: the macros in the ``*.lib`` files beside ``liberty``. A memory becomes
        macros (one type, tiled; costed as single-port) when that is smaller than its
        flip-flops; otherwise it is synthesized to flip-flops. Without a Liberty, memories
        of at least 4096 bits stay SRAM blocks counted at 6 transistors per bit.
    fast : bool
        ``abc -fast -liberty`` (quicker, a few percent more area) instead of ABC's default
        Liberty script.

    Returns
    -------
    dict
        ``cells`` (hierarchical total, by type), ``transistors``, ``area_um2``,
        ``seq_area_um2``, ``modules`` (per module: instances, local cells, local area,
        levels, delay), ``depth`` (the critical module), ``seconds``.
    """
    lib = load_liberty(liberty) if liberty is not None else None
    start = time.perf_counter()
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="pimrtl-synth-")
        work_dir = Path(tmp.name)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        (work_dir / "design.v").write_text(verilog)
        # Pass 1: coarse synthesis, then list the memories still in the design.
        run_yosys(["read_verilog -sv design.v",
                   f"hierarchy -check -top {top}",
                   f"synth -top {top} -run :fine",
                   "write_rtlil coarse.il",
                   "tee -q -o coarse.stat.json stat -json",
                   "tee -q -o memories.txt select -list t:$mem_v2",
                   "tee -q -o memories.il dump t:$mem_v2"], cwd=work_dir)
        memories = _parse_memories((work_dir / "memories.txt").read_text(),
                                   (work_dir / "memories.il").read_text())
        srams = []
        if lib is None:
            # No Liberty: large memories stay SRAM blocks (6 transistors per bit).
            srams = [dict(m, macro=None, count=0, area_um2=0.0) for m in memories
                     if m["width"] * m["depth"] >= SRAM_MIN_BITS_GENERIC]
        elif memories:
            macros = find_sram_macros(lib.path) if sram_macros is None else sram_macros
            ff_area = min((c.area for c in lib.cells.values() if c.sequential and
                           c.area == c.area and c.memory is None), default=0.0)
            for mem in memories:
                choice = best_macro(mem["width"], mem["depth"], macros) if macros else None
                # A macro when it beats flip-flops (plus a quarter for the read multiplexer).
                if choice and choice["area_um2"] < 1.25 * ff_area * mem["width"] * mem["depth"]:
                    srams.append(dict(mem, **choice))
        coarse = json.loads((work_dir / "coarse.stat.json").read_text())
        # Depth analysis only for modules of moderate size (word-level cells before mapping):
        # the critical cells (PE, router, controller); a huge flat top is left out.
        timed = [_clean(k) for k, m in coarse["modules"].items()
                 if m.get("num_cells", 0) <= DEPTH_MAX_COARSE_CELLS]
        select = ("select " + " ".join(f"={name}" for name in timed)) if timed else "select -none"
        script = ["read_rtlil coarse.il"]
        for mem in srams:
            script.append(f"chtype -set {SRAM_CELL} {mem['module']}/{mem['cell']}")
        script += [
            f"synth -top {top} -run fine:check",
            "tee -q -o generic.stat.json stat -json",
        ]
        if lib is None:
            script += [select, "write_json -selected generic.netlist.json", "select -clear"]
        script += [
            "design -save generic",
            "dfflegalize -cell $_DFF_P_ 01 -cell $_DFF_N_ 01",
            "opt_clean",
            "tee -q -o cmos.stat.json stat -json -tech cmos",
            "design -load generic",
        ]
        if lib is not None:
            path = str(Path(lib.path).resolve())
            script += [
                f"read_liberty -lib {path}",
                f"dfflibmap -liberty {path}",
                f"abc {'-fast ' if fast else ''}-liberty {path}",
                "opt_clean",
                f"tee -q -o liberty.stat.json stat -json -liberty {path}",
                select, "write_json -selected mapped.netlist.json", "select -clear",
            ]
        run_yosys(script, log=work_dir / "yosys.log", cwd=work_dir)
        generic = json.loads((work_dir / "generic.stat.json").read_text())
        cmos = json.loads((work_dir / "cmos.stat.json").read_text())
        names = {_clean(k) for k in generic["modules"]}
        counts = instance_counts(generic, top)
        modules = {}
        for key, m in generic["modules"].items():
            name = _clean(key)
            local = _local_cells(m, names)
            modules[name] = {"instances": counts.get(name, 0),
                             "cells": sum(local.values()),
                             "cells_by_type": dict(sorted(local.items())),
                             "submodules": {_clean(t): n for t, n in
                                            m.get("num_cells_by_type", {}).items()
                                            if _clean(t) in names}}
        design = generic["design"]
        cells_by_type = {t: n for t, n in design.get("num_cells_by_type", {}).items()
                         if _clean(t) not in names}
        sram_area = {}
        for mem in srams:
            sram_area[mem["module"]] = sram_area.get(mem["module"], 0.0) + mem["area_um2"]
        report = {
            "top": top,
            "memories": [dict(next((x for x in srams if (x["module"], x["cell"]) ==
                                    (m["module"], m["cell"])), m),
                              instances=counts.get(m["module"], 0),
                              implementation=("sram" if any(
                                  (x["module"], x["cell"]) == (m["module"], m["cell"])
                                  for x in srams) else "flip-flops"))
                         for m in memories],
            "cells": {"total": sum(cells_by_type.values()),
                      "by_type": dict(sorted(cells_by_type.items()))},
            "transistors": int(str(cmos["design"].get("estimated_num_transistors", 0)).rstrip("+"))
            + sum(SRAM_TRANSISTORS_PER_BIT * m["width"] * m["depth"] * counts.get(m["module"], 0)
                  for m in srams),
            "area_um2": None,
            "seq_area_um2": None,
        }
        if lib is not None:
            stat = json.loads((work_dir / "liberty.stat.json").read_text())
            sram_total = sum(counts.get(m, 0) * a for m, a in sram_area.items())
            report["area_um2"] = round(float(stat["design"]["area"]) + sram_total, 3)
            report["seq_area_um2"] = round(float(stat["design"].get("sequential_area", 0.0)), 3)
            report["sram_area_um2"] = round(sram_total, 3)
            for mem in report["memories"]:
                if mem["implementation"] == "sram":
                    mem["liberty"] = next((f for n, *_, f in (
                        find_sram_macros(lib.path) if sram_macros is None else sram_macros)
                        if n == mem["macro"]), None)
            for key, m in stat["modules"].items():
                name = _clean(key)
                local = _local_cells(m, names)
                area = sum(n * (lib.area(t) or 0.0) for t, n in local.items())
                seq = sum(n * (lib.area(t) or 0.0) for t, n in local.items()
                          if t in lib.cells and lib.cells[t].sequential)
                area += sram_area.get(name, 0.0)
                modules[name].update(area_um2=round(area, 3), seq_area_um2=round(seq, 3),
                                     sram_area_um2=round(sram_area.get(name, 0.0), 3),
                                     std_cells=sum(local.values()))
            netlist = json.loads((work_dir / "mapped.netlist.json").read_text())
        else:
            netlist = json.loads((work_dir / "generic.netlist.json").read_text())
        depths = module_depths(netlist, lib)
        for name, d in depths.items():
            if name in modules:
                modules[name].update(levels=d["levels"], delay_ns=d["delay_ns"])
        key = (lambda m: (modules[m].get("delay_ns") or 0.0, modules[m]["levels"])) \
            if lib is not None else (lambda m: modules[m]["levels"])
        for name in modules:
            modules[name].setdefault("levels", None)
            modules[name].setdefault("delay_ns", None)
        timed_modules = [m for m in modules if modules[m]["levels"] is not None]
        critical = max(timed_modules, key=key, default=top)
        report["depth"] = {"module": critical,
                           "levels": modules[critical].get("levels"),
                           "level_unit": "liberty cells" if lib is not None else "generic gates",
                           "delay_ns": modules[critical].get("delay_ns")}
        report["modules"] = modules
        report["seconds"] = round(time.perf_counter() - start, 2)
        return report
    finally:
        if tmp is not None and not keep:
            tmp.cleanup()
