"""The key-value ledger's modules: the names that moved from `bft.app.kv` into `bft.app.kv_state`
(the state commitment) and `bft.app.kv_snapshots` (the snapshots) stay importable from
`bft.app.kv`, as the very same objects, so that no caller has to change its imports."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from bft.app import kv, kv_snapshots, kv_state

MOVED: dict[ModuleType, tuple[str, ...]] = {
    kv_state: ("MAX_KEY_BYTES", "MAX_VALUE_BYTES", "app_hash_v2", "kv_element", "state_lthash"),
    kv_snapshots: (
        "DEFAULT_SNAPSHOTS_KEPT",
        "DEFAULT_SNAPSHOT_CHUNK_BYTES",
        "MAX_ENTRY_BYTES",
        "MAX_KV_SNAPSHOT_CHUNKS",
        "SNAPSHOT_FORMAT",
    ),
}


@pytest.mark.parametrize("module", list(MOVED), ids=lambda module: module.__name__)
def test_moved_names_are_re_exported_as_the_same_objects(module: ModuleType) -> None:
    for name in MOVED[module]:
        assert name in kv.__all__, name
        assert getattr(kv, name) is getattr(module, name), name


def test_every_exported_name_resolves() -> None:
    missing = [name for name in kv.__all__ if not hasattr(kv, name)]
    assert missing == []


def test_the_factory_names_an_importable_callable() -> None:
    module_name, _, attribute = kv.KV_FACTORY.partition(":")
    assert getattr(importlib.import_module(module_name), attribute) is kv.open_kv_app
