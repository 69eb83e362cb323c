"""SimDisk: what survives a crash, and injected crash points."""

from __future__ import annotations

import pytest

from bft.core.messages import QuorumCert, SafetyState
from bft.core.safety_store import DurableFileStore
from bft.core.types import BlockId, View
from bft.sim.disk import SimCrash, SimDisk


def _state(v: int) -> SafetyState:
    qc = QuorumCert(View(0), BlockId(b"\x00" * 32), ())
    return SafetyState(View(v), qc, View(v), None, None)


def test_unsynced_write_of_new_file_is_lost() -> None:
    d = SimDisk()
    d.write("a", b"1")
    assert d.read("a") == b"1"
    d.crash()
    assert d.read("a") is None


def test_fsync_without_fsync_dir_loses_a_new_entry() -> None:
    d = SimDisk()
    d.write("a", b"1")
    d.fsync("a")
    d.crash()
    assert d.read("a") is None


def test_fsynced_and_dir_synced_file_survives() -> None:
    d = SimDisk()
    d.write("a", b"1")
    d.fsync("a")
    d.fsync_dir()
    d.crash()
    assert d.read("a") == b"1"
    assert d.durable_read("a") == b"1"


def test_unsynced_overwrite_reverts_to_durable_content() -> None:
    d = SimDisk()
    d.write("a", b"1")
    d.fsync("a")
    d.fsync_dir()
    d.write("a", b"2")
    assert d.read("a") == b"2"
    assert d.durable_read("a") == b"1"
    d.crash()
    assert d.read("a") == b"1"


def test_dir_synced_entry_without_data_sync_reads_empty() -> None:
    d = SimDisk()
    d.write("a", b"1")
    d.fsync_dir()
    d.crash()
    assert d.read("a") == b""


def test_rename_without_fsync_dir_is_undone() -> None:
    d = SimDisk()
    d.write("rec", b"old")
    d.fsync("rec")
    d.fsync_dir()
    d.write("tmp", b"new")
    d.fsync("tmp")
    d.rename("tmp", "rec")
    assert d.read("rec") == b"new"
    assert d.read("tmp") is None
    d.crash()
    assert d.read("rec") == b"old"
    assert d.read("tmp") is None  # its entry was never made durable


def test_rename_with_fsync_dir_is_durable() -> None:
    d = SimDisk()
    d.write("tmp", b"new")
    d.fsync("tmp")
    d.rename("tmp", "rec")
    d.fsync_dir()
    d.crash()
    assert d.read("rec") == b"new"
    assert d.read("tmp") is None


def test_missing_files_raise() -> None:
    d = SimDisk()
    with pytest.raises(FileNotFoundError):
        d.fsync("nope")
    with pytest.raises(FileNotFoundError):
        d.rename("nope", "x")


def test_crash_after_ops_raises_at_the_kth_op_without_applying_it() -> None:
    d = SimDisk()
    d.crash_after_ops(3)
    d.write("a", b"1")  # op 1
    d.fsync("a")  # op 2
    with pytest.raises(SimCrash):
        d.rename("a", "b")  # op 3: raises before taking effect
    with pytest.raises(SimCrash):
        d.read("a")  # a dead process does nothing more
    d.crash()
    assert d.read("b") is None
    assert d.read("a") is None
    d.write("c", b"ok")  # alive again after the crash


def test_crash_after_ops_rejects_zero_and_can_be_cancelled() -> None:
    d = SimDisk()
    with pytest.raises(ValueError):
        d.crash_after_ops(0)
    d.crash_after_ops(1)
    assert d.crash_armed
    d.cancel_crash()
    d.write("a", b"1")
    assert not d.crash_armed


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_crash_mid_save_leaves_the_previous_state(k: int) -> None:
    d = SimDisk()
    store = DurableFileStore(d)
    store.save(_state(1))
    d.crash_after_ops(k)
    with pytest.raises(SimCrash):
        store.save(_state(2))
    d.crash()
    assert DurableFileStore(d).load() == _state(1)


def test_completed_save_survives_and_first_save_can_be_lost() -> None:
    d = SimDisk()
    store = DurableFileStore(d)
    d.crash_after_ops(4)
    with pytest.raises(SimCrash):
        store.save(_state(1))
    d.crash()
    assert store.load() is None
    store.save(_state(5))
    d.crash()
    assert store.load() == _state(5)
