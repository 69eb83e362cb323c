"""Node logs: key=value lines, quoting, and rotation that keeps the disk bounded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bft.node import logs
from bft.node.logs import kv, setup_node_logging


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
