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
