"""The repository is self-contained: a user's clone has nothing beside it."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Documentation may point at the source papers beside the project's own checkout; nothing that
# builds, synthesizes or tests may reach outside the repository.
OUTSIDE = re.compile(r"\.\./shared|parent\s*/\s*[\"']shared[\"']|[\"']shared/pdk")


def _tracked_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        return [ROOT / f for f in out.stdout.splitlines()]
    # A copy without .git (as .ci/run makes): every file but the tool folders.
    skip = {".git", ".venv", "build", "__pycache__", ".pytest_cache"}
    return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_nothing_but_documentation_reaches_outside_the_repository():
    offenders = []
    for path in _tracked_files():
        if path.suffix in (".md", ".lib") or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line) and "OUTSIDE" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "files that reach outside the repository:\n" + "\n".join(offenders)


def test_the_default_liberty_ships_with_the_repository():
    from synth.liberty import DEFAULT_LIBERTY, load_liberty
    assert ROOT in DEFAULT_LIBERTY.parents
    lib = load_liberty(DEFAULT_LIBERTY)
    assert lib.cells and all(c.area == c.area for c in lib.cells.values())
    macros = sorted(DEFAULT_LIBERTY.parent.glob("RM_IHPSG13_*.lib"))
    assert len(macros) == 5
    for f in [DEFAULT_LIBERTY, *macros]:
        assert "Licensed under the Apache License, Version 2.0" in f.read_text()[:2000]
