"""bft/sim's layering: it drives bft.core with simulated I/O only, and Byzantine behaviours, the
node's storage and its application are injected as factories, never imported. The wall clock is
read in runner.py alone (schedules/s)."""

from __future__ import annotations

import ast
from pathlib import Path

SIM = Path(__file__).resolve().parents[2] / "bft" / "sim"
FORBIDDEN = (
    "bft.adversary",
    "bft.app",
    "bft.node",
    "bft.cli",
    "bft.campaign",
    "net",
    "trio",
    "socket",
    "os",
    "subprocess",
    "asyncio",
    "threading",
    "pathlib",
    "io",
    "logging",
    "sqlite3",
)


def _imports(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "bft.sim uses absolute imports"
            base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def test_sim_imports_no_runtime_io_or_adversary() -> None:
    files = sorted(SIM.glob("*.py"))
    assert len(files) >= 8
    problems = []
    for path in files:
        for module in _imports(path.read_text()):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN):
                problems.append(f"{path.name}: {module}")
            if (module == "time" or module.startswith("time.")) and path.name != "runner.py":
                problems.append(f"{path.name}: {module} (only runner.py reads the wall clock)")
    assert problems == []
