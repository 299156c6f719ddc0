"""Synthesis of one design with Yosys, keeping its hierarchy, one module at a time.

The Verilog is split into its modules, grouped into units (the top and each shared cell
module, each with the Amaranth submodules under it flattened into it:
:func:`synth.design.synthesis_units`); each unit reachable from the top is synthesized on
its own (the shared cells it instantiates read as blackboxes with ``read_verilog -lib``), up
to ``jobs`` Yosys processes at a time, and cached by its text. The hierarchy is then
counted by instance in Python. Per unit:

1. ``synth -noabc`` (each shared cell module is synthesized once and counted by instance);
2. ``dfflegalize`` to plain ``$_DFF_P_``/``$_DFF_N_`` (enables, resets and initial values
   become gates, so every flip-flop is counted), then ABC to generic gates: ``stat -json``
   for the generic cell counts and ``stat -tech cmos`` for the transistor estimate;
3. with a Liberty, from the netlist of step 1: ``dfflibmap -liberty``, ``abc -liberty`` and
   ``stat -liberty`` for the area
   (total and sequential) in um^2, and ``write_json`` of the mapped netlist for the
   critical-path estimate (:mod:`synth.depth`); without one, the depth is counted in generic
   gate levels.

Modules with more than ``LEAN_REGISTER_BITS`` flip-flop bits (pim_tile's top and its
accumulator at the defaults) get a *lean* script instead of ``synth``: the same coarse and
fine mapping without ``fsm``, ``share``, ``check`` and the ``opt -full`` iterations, and ABC's
quick script ``strash; dretime; map`` for the generic and the Liberty mapping (ABC's full
script is several times slower on such modules). Lean areas are an upper bound of the full
script's. Each module's ``mapping`` in the report says which script it got; lean modules are
not timed.
"""

import concurrent.futures
import hashlib
import heapq
import itertools
import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path

from . import design as _design
from .depth import module_depths
from .liberty import load_liberty
from .yosys import YosysError, run_yosys

__all__ = ["synthesize", "instance_counts", "yosys_pool", "default_jobs"]


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
LEAN_REGISTER_BITS = 5_000
QUICK_GENERIC_BYTES = 500_000     # modules with more RTLIL get ABC's quick generic mapping
# ABC's quick mapping (what older Yosys ran for ``abc -fast``): no fraiging, no choices.
ABC_FAST_SCRIPT = "+strash;dretime;map"
MODULE_FLOW_VERSION = "m5"
LEAN_FLOW_VERSION = "l3"   # part of the cache key of lean modules only
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


class _Pool:
    """Runs Yosys jobs with at most ``jobs`` processes at a time (shared by all threads);
    waiting jobs start largest first (``priority``: the module's Verilog size)."""

    def __init__(self, jobs):
        self.jobs = max(1, int(jobs))
        self._cond = threading.Condition()
        self._running = 0
        self._waiting = []
        self._ticket = itertools.count()

    def run(self, script, cwd, log=None, priority=0):
        entry = (-priority, next(self._ticket))
        with self._cond:
            heapq.heappush(self._waiting, entry)
            while self._running >= self.jobs or self._waiting[0] != entry:
                self._cond.wait()
            heapq.heappop(self._waiting)
            self._running += 1
        start = time.perf_counter()
        try:
            return run_yosys(script, cwd=cwd, log=log)
        finally:
            # Yosys time of this thread's runs (not the time spent waiting for a slot).
            _RUN_TIME.seconds = getattr(_RUN_TIME, "seconds", 0.0) + time.perf_counter() - start
            with self._cond:
                self._running -= 1
                self._cond.notify_all()


_RUN_TIME = threading.local()


def default_jobs():
    """Concurrent Yosys processes: ``SYNTH_JOBS`` or the number of CPUs (at most 2 here)."""
    env = os.environ.get("SYNTH_JOBS")
    if env:
        return max(1, int(env))
    return max(1, min(2, os.cpu_count() or 1))


_POOLS = {}
_POOLS_LOCK = threading.Lock()


def yosys_pool(jobs=None):
    """The process-wide Yosys job limiter for ``jobs`` concurrent runs."""
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    with _POOLS_LOCK:
        if jobs not in _POOLS:
            _POOLS[jobs] = _Pool(jobs)
        return _POOLS[jobs]


# Coarse and fine scripts. Standard: Yosys' ``synth`` (split at ``fine`` so memories can be
# turned into SRAM macros in between). Lean, for modules of more than LEAN_REGISTER_BITS
# flip-flop bits (see the module docstring): the same mapping without the
# passes that are slow on a huge flat module (``check``, ``fsm``, ``share``, the ``opt -full``
# iterations) and with ABC's quick script.
def _coarse(top, lean):
    if not lean:
        return [f"synth -top {top} -run :fine"]
    return ["proc", "opt_expr", "opt_clean", "opt_dff", "opt_clean", "wreduce", "peepopt",
            "opt_clean", "alumacc", "opt_merge", "memory -nomap", "opt_clean"]


def _fine(top, lean):
    if not lean:
        # ABC runs in back_end(), after the flip-flops are legalized (see there).
        return [f"synth -top {top} -run fine:check -noabc"]
    return ["memory_map", "opt_clean", "techmap", "opt_expr", "opt_clean"]


def _synth_module(name, text, child_texts, *, lib, work, pool, macros, fast, lean, timed,
                  child_names, flatten=False):
    """One module, its shared cells as blackboxes (its other submodules, in ``text`` too,
    flattened into it with ``flatten``): the per-module part of the report."""
    quick_generic = lean or len(text) > QUICK_GENERIC_BYTES
    work.mkdir(parents=True, exist_ok=True)
    _RUN_TIME.seconds = 0.0
    rtlil = _design.is_rtlil(text)
    ext, reader = ("il", "read_rtlil") if rtlil else ("v", "read_verilog -sv")
    (work / f"module.{ext}").write_text(text)
    read = []
    if child_texts:
        (work / f"children.{ext}").write_text("".join(_design.stub(t) for t in child_texts))
        read.append(f"{reader} -lib children.{ext}")
    read += [f"{reader} module.{ext}", f"hierarchy -check -top {name}"]
    if flatten:
        read += ["proc", "flatten", "opt_clean"]

    def decide(memories):
        srams = []
        if lib is None:
            srams = [dict(m, macro=None, count=0, area_um2=0.0) for m in memories
                     if m["width"] * m["depth"] >= SRAM_MIN_BITS_GENERIC]
        elif memories and macros:
            ff_area = min((c.area for c in lib.cells.values() if c.sequential and
                           c.area == c.area and c.memory is None), default=0.0)
            for mem in memories:
                choice = best_macro(mem["width"], mem["depth"], macros)
                # A macro when it beats flip-flops (plus a quarter for the read multiplexer).
                if choice and choice["area_um2"] < 1.25 * ff_area * mem["width"] * mem["depth"]:
                    srams.append(dict(mem, **choice))
        return srams

    def back_end():
        # Generic gates: flip-flops legalized to plain $_DFF_P_/$_DFF_N_ (enables and resets
        # become gates) *before* ABC, so ABC optimizes them with the logic in one run. Yosys'
        # abc otherwise maps every enable/reset domain on its own (one ABC run per domain,
        # hundreds on a router or the tile's top). The Liberty mapping starts
        # from the netlist before this ABC run (flip-flops still with their enables, for
        # dfflibmap).
        # The generic gates (cell counts, transistor estimate) of big modules (routers, the
        # array's and the tile's tops) come from ABC's quick script (the full one is a large
        # part of their synthesis time). Their area in um^2 (below) uses the full script.
        abc_script = f" -script {ABC_FAST_SCRIPT}" if quick_generic else ""
        script = ["design -save pre_abc",
                  "dfflegalize -cell $_DFF_P_ 01 -cell $_DFF_N_ 01",
                  "abc" + abc_script, "opt -fast",
                  "tee -q -o generic.stat.json stat -json",
                  "tee -q -o cmos.stat.json stat -json -tech cmos"]
        if lib is None and timed:
            script += [f"select ={name}", "write_json -selected generic.netlist.json",
                       "select -clear"]
        script += ["design -load pre_abc"]
        if lib is not None:
            # Relative to the Yosys working directory: the WebAssembly Yosys maps its own
            # temporary folder over /tmp, so an absolute path under /tmp (a clone there) is
            # not found; relative paths reach the host's folders through its '..' mounts.
            path = os.path.relpath(Path(lib.path).resolve(), work.resolve())
            script += [f"read_liberty -lib {path}",
                       f"dfflibmap -liberty {path}",
                       f"abc -liberty {path}" + (f" -script {ABC_FAST_SCRIPT}"
                                                 if (fast or lean) else ""),
                       "opt_clean",
                       f"tee -q -o liberty.stat.json stat -json -liberty {path}"]
            if timed:
                script += [f"select ={name}", "write_json -selected mapped.netlist.json",
                           "select -clear"]
        return script

    mem_list = ["tee -q -o memories.txt select -list t:$mem_v2",
                "tee -q -o memories.il dump t:$mem_v2"]
    two_pass = _design.has_memory(text)
    memories, srams = [], []
    if not two_pass:
        # One run; memories found here (none expected) are flip-flops unless they would be
        # SRAM macros, in which case the two-pass run below redoes the module.
        pool.run(read + _coarse(name, lean) + mem_list + _fine(name, lean) + back_end(),
                 cwd=work, log=work / "yosys.log", priority=len(text))
        memories = _parse_memories((work / "memories.txt").read_text(),
                                   (work / "memories.il").read_text())
        srams = decide(memories)
        two_pass = bool(srams)
    if two_pass:
        pool.run(read + _coarse(name, lean) + ["write_rtlil coarse.il"] + mem_list,
                 cwd=work, log=work / "yosys1.log", priority=len(text))
        memories = _parse_memories((work / "memories.txt").read_text(),
                                   (work / "memories.il").read_text())
        srams = decide(memories)
        script = ["read_rtlil coarse.il"]
        script += [f"chtype -set {SRAM_CELL} {m['module']}/{m['cell']}" for m in srams]
        pool.run(script + _fine(name, lean) + back_end(), cwd=work, log=work / "yosys.log",
                 priority=len(text))

    def module_entry(path):
        stat = json.loads((work / path).read_text())
        for key, m in stat["modules"].items():
            if _clean(key) == name:
                return m
        return {}

    generic = module_entry("generic.stat.json")
    cmos = module_entry("cmos.stat.json")
    result = {"module": name,
              "lean": lean, "fast": fast, "quick_generic": quick_generic,
              "generic": {"num_cells_by_type": generic.get("num_cells_by_type", {})},
              "transistors": int(str(cmos.get("estimated_num_transistors", 0)).rstrip("+")),
              "memories": memories, "srams": srams, "levels": None, "delay_ns": None}
    if lib is not None:
        mapped = module_entry("liberty.stat.json")
        result["liberty"] = {"num_cells_by_type": mapped.get("num_cells_by_type", {})}
        netlist = work / "mapped.netlist.json"
    else:
        netlist = work / "generic.netlist.json"
    if timed and netlist.exists():
        d = module_depths(json.loads(netlist.read_text()), lib, child_names).get(name)
        if d is not None:
            result.update(levels=d["levels"], delay_ns=d["delay_ns"])
    result["yosys_seconds"] = round(_RUN_TIME.seconds, 2)     # wall time of its Yosys runs
    return result


def synthesize(verilog, top, *, liberty=None, work_dir=None, keep=False, sram_macros=None,
               fast=False, jobs=None, cache_dir=None, lean_bits=None):
    """Synthesize ``verilog`` (text) with top module ``top``; returns the report dictionary.

    Each module is synthesized on its own (its submodules as blackboxes), concurrently over
    ``jobs`` Yosys processes, and the hierarchy is counted by instance in Python.

    Parameters
    ----------
    verilog : str
        Verilog or RTLIL text of the whole design (top module and shared cell modules;
        :func:`synth.design.generate_rtlil`).
    top : str
        Top module name.
    liberty : str or Path or None
        Liberty file for the area in um^2 and the delay estimate. Checked first
        (:class:`synth.liberty.LibertyError` if missing or unreadable).
    work_dir : Path or None
        Directory for the Yosys scripts, logs and reports (a temporary one if None), one
        subdirectory per module.
    sram_macros : list or None
        ``[(name, words, bits, area_um2, file)]`` SRAM macros for memories (with a Liberty
        only); None: the macros in the ``*.lib`` files beside ``liberty``. A memory becomes
        macros (one type, tiled; costed as single-port) when that is smaller than its
        flip-flops; otherwise it is synthesized to flip-flops. Without a Liberty, memories
        of at least 4096 bits stay SRAM blocks counted at 6 transistors per bit.
    fast : bool
        ABC's quick script (``ABC_FAST_SCRIPT``: quicker, somewhat larger)
        instead of ABC's default Liberty script for every module (lean modules always use
        it).
    jobs : int or None
        Concurrent Yosys processes (default :func:`default_jobs`).
    cache_dir : Path or None
        Per-module result cache, keyed by the module's Verilog, its submodules' Verilog, the
        Liberty and the flow options.
    lean_bits : int or None
        Modules with more flip-flop bits than this (:func:`synth.design.register_bits`) get
        the lean script (default ``LEAN_REGISTER_BITS``).

    Returns
    -------
    dict
        ``cells`` (hierarchical total, by type), ``transistors``, ``area_um2``,
        ``seq_area_um2``, ``modules`` (per module: instances, local cells, local area,
        levels, delay, mapping), ``mapping``, ``depth`` (the critical module), ``seconds``.
    """
    lib = load_liberty(liberty) if liberty is not None else None
    lean_bits = LEAN_REGISTER_BITS if lean_bits is None else lean_bits
    pool = yosys_pool(jobs)
    start = time.perf_counter()
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="pimrtl-synth-")
        work_dir = Path(tmp.name)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        (work_dir / ("design.il" if _design.is_rtlil(verilog) else "design.v")).write_text(
            verilog)
        all_mods = _design.split_modules(verilog)
        if top not in all_mods:
            raise YosysError(f"top module {top!r} not found in the Verilog")
        # One synthesis per unit: a top or shared cell module with its Amaranth submodules.
        units = _design.synthesis_units(all_mods)
        unit_of = {m: u for u, members in units.items() for m in members}
        mods = {u: "".join(all_mods[m] for m in members) for u, members in units.items()}
        all_children = _design.children(all_mods)
        children = {u: sorted({unit_of[c] for m in members for c in all_children[m]} - {u})
                    for u, members in units.items()}
        # Only the modules reachable from the top.
        reach, stack = set(), [top]
        while stack:
            m = stack.pop()
            if m not in reach:
                reach.add(m)
                stack.extend(children[m])
        macros = None
        if lib is not None:
            macros = find_sram_macros(lib.path) if sram_macros is None else sram_macros
        lib_key = ""
        if lib is not None:
            lib_key = f"{Path(lib.path).resolve()}:{os.stat(lib.path).st_mtime_ns}"
            lib_key += json.dumps(macros)

        def one(name):
            lean = _design.register_bits(mods[name]) > lean_bits
            h = hashlib.sha256()
            for part in (MODULE_FLOW_VERSION, name, mods[name], lib_key, str(fast),
                         str(lean) + (LEAN_FLOW_VERSION if lean else ""),
                         *(mods[c] for c in children[name])):
                h.update(part.encode())
                h.update(b"\0")
            digest = h.hexdigest()[:16]
            cache_file = None if cache_dir is None else \
                Path(cache_dir) / f"{_file_name(name)}-{digest}.json"
            # Designs synthesized concurrently often share modules (the rows and PEs of two
            # array shapes, one router in several networks): the first one synthesizes it,
            # the others wait and read the cache.
            with _module_lock(digest):
                return cached(cache_file) or synth_one(name, lean, cache_file)

        def cached(cache_file):
            if cache_file is not None and cache_file.exists():
                res = json.loads(cache_file.read_text())
                res["cached"] = True
                return res
            return None

        def synth_one(name, lean, cache_file):
            # The critical-path walk only for modules of moderate size (the critical cells).
            timed = not lean
            res = _synth_module(name, mods[name], [all_mods[c] for c in children[name]],
                                lib=lib, work=work_dir / _file_name(name), pool=pool,
                                macros=macros, fast=fast, lean=lean, timed=timed,
                                child_names=children[name], flatten=len(units[name]) > 1)
            if cache_file is not None:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                tmp_file = cache_file.with_suffix(f".{os.getpid()}.{threading.get_ident()}")
                tmp_file.write_text(json.dumps(res))
                os.replace(tmp_file, cache_file)
            res["cached"] = False
            return res

        order = sorted(reach, key=lambda m: -len(mods[m]))     # largest first
        with concurrent.futures.ThreadPoolExecutor(max_workers=pool.jobs) as ex:
            results = dict(zip(order, ex.map(one, order)))
        return _combine(results, top, lib, work_dir, start, macros if lib is not None else None)
    finally:
        if tmp is not None and not keep:
            tmp.cleanup()


_MODULE_LOCKS = {}
_MODULE_LOCKS_LOCK = threading.Lock()


def _module_lock(digest):
    with _MODULE_LOCKS_LOCK:
        return _MODULE_LOCKS.setdefault(digest, threading.Lock())


def _file_name(module):
    return re.sub(r"[^\w.-]", "_", module)


def _combine(results, top, lib, work_dir, start, macros):
    names = set(results)
    stat = {"modules": {"\\" + m: r["generic"] for m, r in results.items()}}
    (work_dir / "generic.stat.json").write_text(json.dumps(stat))
    counts = instance_counts(stat, top)
    modules, cells_by_type = {}, {}
    transistors = 0
    srams = [s for r in results.values() for s in r["srams"]]
    memories = [m for r in results.values() for m in r["memories"]]
    for name, r in results.items():
        by_type = r["generic"].get("num_cells_by_type", {})
        local = _local_cells(r["generic"], names)
        n = counts.get(name, 0)
        for t, k in local.items():
            cells_by_type[t] = cells_by_type.get(t, 0) + n * k
        transistors += n * r["transistors"]
        modules[name] = {"instances": n,
                         "cells": sum(local.values()),
                         "cells_by_type": dict(sorted(local.items())),
                         "submodules": {_clean(t): k for t, k in by_type.items()
                                        if _clean(t) in names},
                         "mapping": _mapping_label(r, lib)}
    transistors += sum(SRAM_TRANSISTORS_PER_BIT * m["width"] * m["depth"] *
                       counts.get(m["module"], 0) for m in srams)
    sram_area = {}
    for mem in srams:
        sram_area[mem["module"]] = sram_area.get(mem["module"], 0.0) + mem["area_um2"]

    def is_sram(m):
        return any((x["module"], x["cell"]) == (m["module"], m["cell"]) for x in srams)

    report = {
        "top": top,
        "memories": [dict(next((x for x in srams if (x["module"], x["cell"]) ==
                                (m["module"], m["cell"])), m),
                          instances=counts.get(m["module"], 0),
                          implementation="sram" if is_sram(m) else "flip-flops")
                     for m in memories],
        "cells": {"total": sum(cells_by_type.values()),
                  "by_type": dict(sorted(cells_by_type.items()))},
        "transistors": transistors,
        "area_um2": None,
        "seq_area_um2": None,
    }
    if lib is not None:
        total = seq_total = 0.0
        for name, r in results.items():
            local = _local_cells(r["liberty"], names)
            area = sum(k * (lib.area(t) or 0.0) for t, k in local.items())
            seq = sum(k * (lib.area(t) or 0.0) for t, k in local.items()
                      if t in lib.cells and lib.cells[t].sequential)
            n = counts.get(name, 0)
            total += n * area
            seq_total += n * seq
            area += sram_area.get(name, 0.0)
            modules[name].update(area_um2=round(area, 3), seq_area_um2=round(seq, 3),
                                 sram_area_um2=round(sram_area.get(name, 0.0), 3),
                                 std_cells=sum(local.values()))
        sram_total = sum(counts.get(m, 0) * a for m, a in sram_area.items())
        report["area_um2"] = round(total + sram_total, 3)
        report["seq_area_um2"] = round(seq_total, 3)
        report["sram_area_um2"] = round(sram_total, 3)
        for mem in report["memories"]:
            if mem["implementation"] == "sram":
                mem["liberty"] = next((f for n, *_, f in macros if n == mem["macro"]), None)
    for name, r in results.items():
        modules[name].update(levels=r["levels"], delay_ns=r["delay_ns"],
                             yosys_seconds=r["yosys_seconds"], cached=r.get("cached", False))
    key = (lambda m: (modules[m].get("delay_ns") or 0.0, modules[m]["levels"])) \
        if lib is not None else (lambda m: modules[m]["levels"])
    timed_modules = [m for m in modules if modules[m]["levels"] is not None]
    critical = max(timed_modules, key=key, default=top)
    report["depth"] = {"module": critical,
                       "levels": modules[critical].get("levels"),
                       "level_unit": "liberty cells" if lib is not None else "generic gates",
                       "delay_ns": modules[critical].get("delay_ns")}
    report["modules"] = modules
    report["mapping"] = {m: modules[m]["mapping"] for m in sorted(modules)}
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


def _mapping_label(result, lib):
    if result.get("lean"):
        label = "lean script (no fsm/share/opt -full), abc -script " + ABC_FAST_SCRIPT
        if lib is not None:
            label += f", abc -liberty -script {ABC_FAST_SCRIPT}"
        return label
    return ("synth" + (", generic abc -script " + ABC_FAST_SCRIPT
                       if result.get("quick_generic") else "")
            + ((f", abc -liberty -script {ABC_FAST_SCRIPT}" if result.get("fast")
                else ", abc -liberty") if lib is not None else ""))
