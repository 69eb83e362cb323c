"""Node logs: key=value lines, quoting, and rotation that keeps the disk bounded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bft.node import logs
from bft.node.logs import RateLimitedLog, kv, setup_node_logging


def test_kv_quotes_values_that_would_break_the_line() -> None:
    line = kv(event="refusal", node=0, reason='wrong leader for view 12: "3"', empty="")
    assert line == 'event=refusal node=0 reason="wrong leader for view 12: \\"3\\"" empty=""'
    assert "\n" not in kv(reason="a\nb")


def test_log_file_rotates_and_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "LOG_MAX_BYTES", 4096)
    log_file = tmp_path / "node.log"
    setup_node_logging(log_file)
    log = logging.getLogger("bft.node")
    try:
        for i in range(2000):  # far more than LOG_MAX_BYTES * (LOG_BACKUPS + 1)
            log.info(kv(event="refusal", node=0, peer=3, view=i, reason="far-future view"))
    finally:
        for handler in logging.getLogger("bft").handlers:
            handler.close()
        logging.getLogger("bft").handlers.clear()
    files = sorted(tmp_path.glob("node.log*"))
    assert len(files) == logs.LOG_BACKUPS + 1
    assert all(f.stat().st_size <= 4096 + 200 for f in files)
    assert log_file.read_text().splitlines()[-1].startswith("ts=")


def test_a_flood_of_one_kind_writes_one_line_per_window_and_says_how_many_it_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [0.0]
    logger = logging.getLogger("test.ratelimit")
    limited = RateLimitedLog(logger, window_s=5.0, max_keys=3, clock=lambda: clock[0])
    with caplog.at_level(logging.INFO, logger="test.ratelimit"):
        written = [limited.log(logging.INFO, ("peer 3", "vote"), f"refusal n={i}") for i in range(10_000)]
        assert written.count(True) == 1
        limited.log(logging.INFO, ("peer 2", "vote"), "refusal from another peer")  # its own key
        clock[0] = 5.0
        limited.log(logging.INFO, ("peer 3", "vote"), "refusal n=10000")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refusal n=0", "refusal from another peer", "refusal n=10000 suppressed=9999"]
    caplog.clear()
    # Bounded in keys: the oldest is forgotten, its count logged first.
    with caplog.at_level(logging.INFO, logger="test.ratelimit"):
        assert not limited.log(logging.INFO, ("peer 3", "vote"), "again")  # within its new window
        for k in range(3):
            limited.log(logging.INFO, ("new", k), f"new {k}")
    lines = [r.getMessage() for r in caplog.records]
    assert "new 0" in lines and "new 2" in lines
    assert any("event=log_suppressed" in line and "suppressed=1" in line for line in lines)
    assert len(limited._keys) <= 3


def _close_bft_handlers() -> None:
    for handler in logging.getLogger("bft").handlers:
        handler.close()
    logging.getLogger("bft").handlers.clear()


def test_log_stdout_writes_the_same_lines_to_stdout_as_to_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "node.log"
    setup_node_logging(log_file, stdout=True)
    try:
        logging.getLogger("bft.node").info(kv(event="commit", node=0, height=7))
        logging.getLogger("bft.net").debug(kv(event="dial_failed", peer=1))
    finally:
        _close_bft_handlers()
    printed = capsys.readouterr().out.splitlines()
    assert printed == log_file.read_text().splitlines()
    assert len(printed) == 1 and printed[0].endswith("level=info event=commit node=0 height=7")


def test_the_level_is_applied_to_every_bft_logger_and_stdout_is_off_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "node.log"
    setup_node_logging(log_file, level=logs.LOG_LEVELS["debug"])
    try:
        logging.getLogger("bft.net").debug(kv(event="dial_failed", peer=1))
        logging.getLogger("bft.api").warning(kv(event="slow"))
    finally:
        _close_bft_handlers()
    assert [line.split(" ", 2)[1] for line in log_file.read_text().splitlines()] == [
        "level=debug",
        "level=warning",
    ]
    assert capsys.readouterr().out == ""
    setup_node_logging(log_file, level=logs.LOG_LEVELS["error"])
    try:
        logging.getLogger("bft.api").warning(kv(event="slow again"))
    finally:
        _close_bft_handlers()
    assert "slow again" not in log_file.read_text()
    assert sorted(logs.LOG_LEVELS) == ["debug", "error", "info", "warning"]
