"""`bft` and Ctrl-C outside a command's own signal handling: one line and exit 130, no traceback."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import pytest

import bft.node.testnet
from bft.cli import main


def _interrupt(*_args: object, **_kwargs: object) -> NoReturn:
    raise KeyboardInterrupt


def _interrupt_in_a_group(*_args: object, **_kwargs: object) -> NoReturn:
    raise BaseExceptionGroup("nursery", [KeyboardInterrupt()])


def _fail_in_a_group(*_args: object, **_kwargs: object) -> NoReturn:
    raise BaseExceptionGroup("nursery", [KeyboardInterrupt(), ValueError("a bug")])


@pytest.mark.parametrize("raiser", [_interrupt, _interrupt_in_a_group])
def test_a_ctrl_c_in_a_command_is_one_line_and_exit_130(
    raiser: object, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bft.node.testnet, "write_testnet", raiser)
    assert main(["testnet", "--nodes", "4", "--out", str(tmp_path)]) == 130
    captured = capsys.readouterr()
    assert captured.err == "bft testnet: interrupted\n"


def test_a_bug_next_to_a_ctrl_c_is_not_hidden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bft.node.testnet, "write_testnet", _fail_in_a_group)
    with pytest.raises(BaseExceptionGroup):
        main(["testnet", "--nodes", "4", "--out", str(tmp_path)])
