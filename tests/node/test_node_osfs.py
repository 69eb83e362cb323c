"""OsFilesystem: the real disk under the safety store's temp/fsync/rename/fsync-dir discipline."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from bft.core.blocktree import genesis
from bft.core.messages import QuorumCert, SafetyState
from bft.core.safety_store import DurableFileStore
from bft.core.types import BlockId, ValidatorIndex, View
from bft.node.errors import StorageError
from bft.node.osfs import OsFilesystem


def _state(view: int) -> SafetyState:
    _, genesis_qc = genesis("osfs-test")
    locked = QuorumCert(View(view - 1), BlockId(bytes([view]) * 32), ((ValidatorIndex(0), b"s" * 64),))
    return SafetyState(
        last_voted_view=View(view),
        locked_qc=locked if view > 1 else genesis_qc,
        highest_timeout_view=View(view),
        last_vote=b"vote-bytes",
        last_timeout=None,
    )


def test_durable_file_store_round_trip(tmp_path: Path) -> None:
    store = DurableFileStore(OsFilesystem(tmp_path))
    assert store.load() is None
    store.save(_state(1))
    store.save(_state(5))
    assert DurableFileStore(OsFilesystem(tmp_path)).load() == _state(5)


def test_save_leaves_only_the_record_with_mode_0600(tmp_path: Path) -> None:
    DurableFileStore(OsFilesystem(tmp_path)).save(_state(3))
    assert sorted(os.listdir(tmp_path)) == [DurableFileStore.RECORD]
    assert stat.S_IMODE((tmp_path / DurableFileStore.RECORD).stat().st_mode) == 0o600


def test_write_truncates_and_narrows_mode(tmp_path: Path) -> None:
    fs = OsFilesystem(tmp_path)
    (tmp_path / "f").write_bytes(b"a much longer old content")
    (tmp_path / "f").chmod(0o644)
    fs.write("f", b"new")
    fs.fsync("f")
    assert fs.read("f") == b"new"
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600


def test_read_missing_is_none_and_rename_replaces(tmp_path: Path) -> None:
    fs = OsFilesystem(tmp_path)
    assert fs.read("nothing") is None
    fs.write("a", b"1")
    fs.write("b", b"2")
    fs.rename("a", "b")
    fs.fsync_dir()
    assert fs.read("a") is None
    assert fs.read("b") == b"1"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "/etc/passwd", "nul\0"])
def test_refuses_names_that_are_not_plain(tmp_path: Path, name: str) -> None:
    fs = OsFilesystem(tmp_path)
    with pytest.raises(ValueError, match="plain file name"):
        fs.write(name, b"x")
    with pytest.raises(ValueError, match="plain file name"):
        fs.read(name)


def test_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a directory"):
        OsFilesystem(tmp_path / "missing")
