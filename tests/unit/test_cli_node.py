"""`bft --version` and the logging options of `bft node` (parsing and what reaches `run_node`)."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path
from typing import Any

import pytest

import bft
from bft import cli


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"bft {importlib.metadata.version('bft-node')}\n"


def test_version_falls_back_to_the_module_version_without_package_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert cli.package_version() == bft.__version__


def test_the_fallback_version_is_the_packaged_one() -> None:
    assert bft.__version__ == importlib.metadata.version("bft-node")


@pytest.mark.parametrize(
    ("argv", "level", "stdout"),
    [
        ([], logging.INFO, False),
        (["--log-level", "debug"], logging.DEBUG, False),
        (["--log-level", "warning", "--log-stdout"], logging.WARNING, True),
        (["--log-level", "error"], logging.ERROR, False),
        (["--state-sync"], logging.INFO, False),
        (["--state-sync", "--sync-from", "http://a:1,http://b:2"], logging.INFO, False),
    ],
)
def test_node_passes_its_log_options_to_run_node(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], level: int, stdout: bool
) -> None:
    calls: list[dict[str, Any]] = []

    def fake_run_node(home: Path, byzantine: str | None = None, **options: Any) -> int:
        calls.append({"home": home, "byzantine": byzantine, **options})
        return 0

    monkeypatch.setattr("bft.node.process.run_node", fake_run_node)
    assert cli.main(["node", "--home", str(tmp_path), *argv]) == 0
    sync = "--state-sync" in argv
    servers = ["http://a:1", "http://b:2"] if "--sync-from" in argv else None
    assert calls == [
        {
            "home": tmp_path,
            "byzantine": None,
            "log_level": level,
            "log_stdout": stdout,
            "state_sync": sync,
            "sync_from": servers,
        }
    ]


def test_node_refuses_an_unknown_log_level(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["node", "--home", str(tmp_path), "--log-level", "verbose"])
    assert exited.value.code == 2
    assert "invalid choice: 'verbose'" in capsys.readouterr().err
