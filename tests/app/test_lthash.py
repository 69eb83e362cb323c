"""Tests of `bft.app.lthash` and of the key-value ledger's incremental state commitment over it."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bft.app.kv import KeyValueLedger, cas_tx, del_tx, kv_element, put_tx, state_lthash
from bft.app.lthash import DOMAIN, LANES, SIZE_BYTES, LtHash

ELEMENTS = st.binary(max_size=64)


def reference_lanes(elements: Sequence[bytes], removed: Sequence[bytes] = ()) -> bytes:
    """The lane vector computed the slow, obvious way: 1024 u16 lanes, added mod 2**16."""
    lanes = [0] * LANES
    for sign, group in ((1, elements), (-1, removed)):
        for element in group:
            vector = struct.unpack(f"<{LANES}H", hashlib.shake_128(DOMAIN + element).digest(SIZE_BYTES))
            lanes = [(a + sign * b) % 65536 for a, b in zip(lanes, vector, strict=True)]
    return struct.pack(f"<{LANES}H", *lanes)


def built(elements: list[bytes]) -> LtHash:
    value = LtHash()
    for element in elements:
        value.add(element)
    return value


def test_the_empty_set_is_all_zero_lanes() -> None:
    assert LtHash().to_bytes() == bytes(SIZE_BYTES)
    assert LtHash().digest() == hashlib.sha256(bytes(SIZE_BYTES)).digest()


@given(st.lists(ELEMENTS, max_size=12), st.lists(ELEMENTS, max_size=4))
@settings(max_examples=60, deadline=None)
def test_lanes_equal_the_reference_computation(added: list[bytes], removed: list[bytes]) -> None:
    value = built(added)
    for element in removed:
        value.remove(element)
    assert value.to_bytes() == reference_lanes(added, removed)
    assert value.digest() == hashlib.sha256(reference_lanes(added, removed)).digest()


def test_lanes_wrap_around_in_both_directions() -> None:
    full = LtHash.from_bytes(b"\xff" * SIZE_BYTES)
    full.add(b"x")
    vector = struct.unpack(f"<{LANES}H", hashlib.shake_128(DOMAIN + b"x").digest(SIZE_BYTES))
    assert full.to_bytes() == struct.pack(f"<{LANES}H", *((lane - 1) % 65536 for lane in vector))
    empty = LtHash()
    empty.remove(b"x")
    assert empty.to_bytes() == struct.pack(f"<{LANES}H", *((-lane) % 65536 for lane in vector))
    empty.add(b"x")
    assert empty == LtHash()


@given(st.lists(ELEMENTS, max_size=10), st.randoms(use_true_random=False))
@settings(max_examples=50, deadline=None)
def test_add_and_remove_commute(elements: list[bytes], rng: random.Random) -> None:
    operations = [(True, element) for element in elements] + [(False, element) for element in elements[:3]]
    shuffled = list(operations)
    rng.shuffle(shuffled)
    one, two = LtHash(), LtHash()
    for (add_one, element_one), (add_two, element_two) in zip(operations, shuffled, strict=True):
        (one.add if add_one else one.remove)(element_one)
        (two.add if add_two else two.remove)(element_two)
    assert one == two
    assert one == built(elements[3:])


@given(st.lists(ELEMENTS, max_size=8), ELEMENTS)
@settings(max_examples=50, deadline=None)
def test_remove_undoes_add(elements: list[bytes], extra: bytes) -> None:
    value = built(elements)
    before = value.copy()
    value.add(extra)
    assert value != before
    value.remove(extra)
    assert value == before and value.to_bytes() == before.to_bytes()


@given(st.lists(ELEMENTS, max_size=8))
@settings(max_examples=50, deadline=None)
def test_bytes_round_trip(elements: list[bytes]) -> None:
    value = built(elements)
    raw = value.to_bytes()
    assert len(raw) == SIZE_BYTES
    again = LtHash.from_bytes(raw)
    assert again == value and again.to_bytes() == raw and again.digest() == value.digest()
    # The copy is independent of the original.
    again.add(b"more")
    assert again != value


@pytest.mark.parametrize("size", [0, SIZE_BYTES - 1, SIZE_BYTES + 1])
def test_from_bytes_refuses_another_size(size: int) -> None:
    with pytest.raises(ValueError, match="2048"):
        LtHash.from_bytes(bytes(size))


def test_distinct_small_sets_have_distinct_digests() -> None:
    # Every subset of 10 elements (1,024 sets, among them near neighbours that differ in one element).
    elements = [b"e%d" % i for i in range(10)]
    digests = set()
    for mask in range(1 << len(elements)):
        value = LtHash()
        for index, element in enumerate(elements):
            if mask >> index & 1:
                value.add(element)
        digests.add(value.digest())
    assert len(digests) == 1 << len(elements)
    # A multiset hash: the same element twice is not the element once.
    assert built([elements[0], elements[0]]) != built([elements[0]])


def test_equality_is_by_value() -> None:
    assert built([b"a", b"b"]) == built([b"b", b"a"])
    assert built([b"a"]) != built([b"b"])
    assert LtHash() != b"not an lthash"


# The ledger's incremental state(h) equals the LtHash built from scratch over its final state.

KEYS = [f"k{i}" for i in range(12)] + ["ключ", "\x00"]
VALUES = st.text(max_size=6)


@st.composite
def kv_txs(draw: st.DrawFn) -> bytes:
    key = draw(st.sampled_from(KEYS))
    kind = draw(st.sampled_from(["put", "del", "cas", "cas-absent", "junk"]))
    if kind == "put":
        return put_tx(key, draw(VALUES))
    if kind == "del":
        return del_tx(key)
    if kind == "cas":
        return cas_tx(key, draw(VALUES), draw(VALUES))
    if kind == "cas-absent":
        return cas_tx(key, None, draw(VALUES))
    return b"{not a tx"


@given(st.lists(st.lists(kv_txs(), max_size=15), min_size=1, max_size=12))
@settings(max_examples=60, deadline=None)
def test_incremental_state_equals_the_state_built_from_scratch(blocks: list[list[bytes]]) -> None:
    conn = sqlite3.connect(":memory:")
    with KeyValueLedger.over(conn, "memory", hash_version=2) as app:
        model: dict[str, str] = {}
        for height, txs in enumerate(blocks, start=1):
            result = app.execute_block(height, txs)
            app.commit()
            for tx, tx_result in zip(txs, result.results, strict=True):
                if not tx_result.ok:
                    continue
                op = json.loads(tx)
                if op["op"] == "del":
                    model.pop(op["key"], None)
                else:
                    model[op["key"]] = op["value"]
            incremental = app.state_lthash()
            rows = [(bytes(k), bytes(v)) for k, v in conn.execute("SELECT key, value FROM kv")]
            assert incremental == state_lthash(rows)
        expected = {key.encode(): value.encode() for key, value in model.items()}
        assert dict(rows) == expected
        assert incremental == built([kv_element(k, v) for k, v in expected.items()])


def test_the_state_commitment_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    blocks = [[put_tx(f"k{i}", str(i)) for i in range(50)], [del_tx("k3"), put_tx("k4", "x"), b"junk"]]
    with KeyValueLedger(path, hash_version=2) as app:
        for height, txs in enumerate(blocks, start=1):
            app.execute_block(height, txs)
            app.commit()
        lattice, info = app.state_lthash(), app.info()
    with KeyValueLedger(path, hash_version=2) as app:
        assert app.state_lthash() == lattice and app.info() == info
        assert lattice is not None and lattice != LtHash()
