"""The layering rules of DESIGN.md, checked on the source: `bft/core` is pure (no I/O, clocks,
randomness or runtime packages; only `cbor.py` touches cbor2) and `crypto` uses only the stdlib
and `cryptography`. Every import counts, including ones inside functions."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "bft" / "core"
CRYPTO = ROOT / "crypto"

# The one core module that touches cbor2 (DESIGN.md, Layout).
CBOR_MODULE = "cbor.py"

FORBIDDEN_IN_CORE = (
    "trio",
    "socket",
    "time",
    "os",
    "random",
    "logging",
    "asyncio",
    "threading",
    "subprocess",
    "secrets",
    "importlib",
    "bft.node",
    "bft.sim",
    "bft.adversary",
    "bft.cli",
    "net",
)


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])


def imported_modules(source: str, package: str) -> set[str]:
    """Every module an import statement anywhere in `source` names, resolved to absolute names.

    `from a import b` yields both `a` and `a.b` (b may be a submodule); relative imports are
    resolved against `package`. A call to `__import__` is reported as the module `__import__`.
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*base_parts, node.module] if node.module else base_parts)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "__import__":
            found.add("__import__")
    return found


def _is_within(module: str, forbidden: str) -> bool:
    return module == forbidden or module.startswith(forbidden + ".")


def violations_in_core(source: str, filename: str, package: str = "bft.core") -> list[str]:
    problems: list[str] = []
    for module in sorted(imported_modules(source, package)):
        if module == "__import__":
            problems.append(f"{filename}: dynamic __import__")
        for forbidden in FORBIDDEN_IN_CORE:
            if _is_within(module, forbidden):
                problems.append(f"{filename}: imports {module}")
        if _is_within(module, "cbor2") and filename != CBOR_MODULE:
            problems.append(f"{filename}: imports cbor2 (only {CBOR_MODULE} may)")
    return problems


def violations_in_crypto(source: str, filename: str) -> list[str]:
    problems: list[str] = []
    for module in sorted(imported_modules(source, "crypto")):
        top = module.split(".")[0]
        if top == "__import__":
            problems.append(f"{filename}: dynamic __import__")
        elif top not in sys.stdlib_module_names and top not in ("cryptography", "crypto"):
            problems.append(f"{filename}: imports {module}")
    return problems


def _sources(directory: Path) -> list[Path]:
    files = sorted(directory.rglob("*.py"))
    assert files, f"no sources found under {directory}"
    return files


def test_core_imports_nothing_impure_or_from_higher_layers() -> None:
    problems: list[str] = []
    for path in _sources(CORE):
        problems += violations_in_core(path.read_text(), path.name, _package_of(path))
    assert problems == []


def test_only_the_cbor_module_imports_cbor2_and_it_does() -> None:
    users = [
        p.name
        for p in _sources(CORE)
        if any(_is_within(m, "cbor2") for m in imported_modules(p.read_text(), _package_of(p)))
    ]
    assert users == [CBOR_MODULE]


def test_no_core_module_imports_inside_a_function() -> None:
    # A lazy import hides a cycle (messages -> wire -> messages once did); imports go at the top.
    problems: list[str] = []
    for path in _sources(CORE):
        for scope in ast.walk(ast.parse(path.read_text())):
            if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                problems += [
                    f"{path.name}:{node.lineno}"
                    for node in ast.walk(scope)
                    if isinstance(node, ast.Import | ast.ImportFrom)
                ]
    assert problems == []


def test_crypto_imports_only_stdlib_cryptography_and_itself() -> None:
    problems: list[str] = []
    for path in _sources(CRYPTO):
        problems += violations_in_crypto(path.read_text(), path.name)
    assert problems == []


def test_the_walk_sees_every_core_module() -> None:
    names = {p.name for p in _sources(CORE)}
    expected = {"replica.py", "safety.py", "wire.py", "cbor.py", "ids.py", "votes.py", "pacemaker.py"}
    assert expected | {"commit_rule.py"} <= names


# The checker itself must catch what it is meant to catch.


@pytest.mark.parametrize(
    "source",
    [
        "import time\n",
        "import os.path\n",
        "from random import Random\n",
        "def f():\n    import trio\n",
        "class C:\n    def m(self):\n        from socket import socket\n",
        "from bft.sim import world\n",
        "from bft import sim\n",
        "from bft import adversary as a\n",
        "from .. import node\n",
        "import net.transport\n",
        "from net import framing\n",
        "import logging as log\n",
        "import cbor2\n",
        "from cbor2 import dumps\n",
        "m = __import__('time')\n",
        "try:\n    import asyncio\nexcept ImportError:\n    pass\n",
        "if False:\n    import threading\n",
        "import subprocess\n",
    ],
)
def test_checker_flags_forbidden_imports(source: str) -> None:
    assert violations_in_core(source, "replica.py", "bft.core") != []


@pytest.mark.parametrize(
    "source",
    [
        "import itertools\n",
        "from dataclasses import dataclass\n",
        "from crypto.hashing import sha256\n",
        "from bft.core import wire\n",
        "from . import wire\n",
        "from .wire import encode\n",
        "import typing\n",
        "import network_things_local_name_only_matching_by_prefix_is_not_enough\n",
    ],
)
def test_checker_allows_pure_imports(source: str) -> None:
    assert violations_in_core(source, "replica.py", "bft.core") == []


def test_checker_allows_cbor2_in_the_cbor_module_only() -> None:
    assert violations_in_core("import cbor2\n", "cbor.py") == []
    assert violations_in_core("import cbor2\n", "wire.py") != []
    assert violations_in_core("from cbor2 import loads\n", "ids.py") != []
    assert violations_in_core("import cbor2\n", "messages.py") != []


def test_crypto_checker_flags_third_party_and_project_imports() -> None:
    assert violations_in_crypto("import trio\n", "keys.py") != []
    assert violations_in_crypto("def f():\n    from bft.core import wire\n", "keys.py") != []
    assert violations_in_crypto("import cbor2\n", "keys.py") != []
    assert (
        violations_in_crypto("import os\nfrom cryptography import x509\nfrom . import hashing\n", "k.py")
        == []
    )


def test_app_imports_only_the_stdlib_and_itself() -> None:
    # DESIGN.md: an application depends on nothing of the node, so a program can plug in its own.
    problems: list[str] = []
    for path in _sources(ROOT / "bft" / "app"):
        for module in sorted(imported_modules(path.read_text(), "bft.app")):
            if module.split(".")[0] not in sys.stdlib_module_names and not _is_within(module, "bft.app"):
                problems.append(f"{path.name}: imports {module}")
    assert problems == []
