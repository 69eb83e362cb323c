"""net/ imports only the stdlib, cryptography, trio and crypto; its log lines stay one line each."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from net.transport import _log_line

NET = Path(__file__).resolve().parents[2] / "net"
ALLOWED = {"cryptography", "trio", "crypto", "net", "__future__"}


def test_net_imports_only_what_it_may() -> None:
    problems = []
    files = sorted(NET.glob("*.py"))
    assert files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top not in ALLOWED and top not in sys.stdlib_module_names:
                    problems.append(f"{path.name}: imports {name}")
    assert problems == []


def test_log_lines_quote_and_escape_attacker_text() -> None:
    reason = "wrong chain id " + repr('evil"\nchain')
    line = _log_line("handshake_refused", 0, remote="127.0.0.1:5555", reason=reason)
    assert "\n" not in line
    assert line.startswith('event=handshake_refused me=0 remote=127.0.0.1:5555 reason="wrong chain id ')
    assert _log_line("x", 1, reason="unknown validator key") == 'event=x me=1 reason="unknown validator key"'


def test_the_node_logs_thin_with_the_same_class_as_the_transport() -> None:
    from bft.node import logs
    from net import ratelog

    assert logs.RateLimitedLog is ratelog.RateLimitedLog
    assert (logs.LOG_WINDOW_S, logs.LOG_MAX_KEYS) == (ratelog.LOG_WINDOW_S, ratelog.LOG_MAX_KEYS)
