"""The key-value ledger's batched SQLite I/O (`bft.app.kv`): a block's keys read in chunked `IN`
queries and its overlay written with `executemany` give the same results, logs, data, app hashes
and durable state as the documented semantics, checked against a dict-based reference model."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import sqlite3
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest

from bft.app.interface import CODE_OK, GENESIS_APP_HASH, BlockResult, TxResult
from bft.app.kv import (
    _READ_CHUNK_KEYS,
    CODE_CAS_MISMATCH,
    MAX_KEY_BYTES,
    CompareAndSet,
    Delete,
    KeyValueLedger,
    KvOp,
    Put,
    Rejection,
    cas_tx,
    del_tx,
    encode_tx,
    parse_tx,
    put_tx,
)


def _field(text: str) -> bytes:
    encoded = text.encode("utf-8")
    return struct.pack(">I", len(encoded)) + encoded


class Reference:
    """The ledger's documented semantics (bft/app/kv.py's header) over a dict, one tx at a time."""

    def __init__(self) -> None:
        self.state: dict[str, str] = {}
        self.height = 0
        self.app_hash = GENESIS_APP_HASH

    def run(self, txs: Sequence[bytes]) -> BlockResult:
        self.height += 1
        hasher = hashlib.sha256(b"bft-kv/v1" + self.app_hash + struct.pack(">QI", self.height, len(txs)))
        results = []
        for tx in txs:
            result, write = self._apply(parse_tx(tx))
            hasher.update(hashlib.sha256(tx).digest() + struct.pack(">I", result.code) + write)
            results.append(result)
        self.app_hash = hasher.digest()
        return BlockResult(height=self.height, results=tuple(results), app_hash=self.app_hash)

    def _apply(self, op: KvOp | Rejection) -> tuple[TxResult, bytes]:
        if isinstance(op, Rejection):
            return TxResult(op.code, op.log), b"\x00"
        previous = self.state.get(op.key)
        data = json.dumps(previous, ensure_ascii=False).encode("utf-8")
        if isinstance(op, Delete):
            self.state.pop(op.key, None)
            log = "deleted" if previous is not None else "deleted (was absent)"
            return TxResult(CODE_OK, log, data), b"\x02" + _field(op.key)
        if isinstance(op, CompareAndSet) and previous != op.expect:
            log = "cas mismatch: " + ("key is absent" if previous is None else "current value differs")
            return TxResult(CODE_CAS_MISMATCH, log, data), b"\x00"
        self.state[op.key] = op.value
        log = "put" if isinstance(op, Put) else "cas"
        return TxResult(CODE_OK, log, data), b"\x01" + _field(op.key) + _field(op.value)


def stored_state(path: Path) -> dict[str, str]:
    """Every committed key and value in the ledger's file, read with a connection of our own."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT key, value FROM kv").fetchall()
    return {bytes(key).decode("utf-8"): bytes(value).decode("utf-8") for key, value in rows}


def run_both(app: KeyValueLedger, reference: Reference, txs: Sequence[bytes], context: str) -> BlockResult:
    """Execute and commit `txs` in both; they must agree on every result and the app hash."""
    expected = reference.run(txs)
    block = app.execute_block(expected.height, txs)
    for index, (got, want) in enumerate(zip(block.results, expected.results, strict=True)):
        assert got == want, f"{context}, height {expected.height}, tx {index}: {txs[index]!r}"
    assert block == expected, f"{context}, height {expected.height}"
    assert app.commit() == expected.app_hash
    return block


# --- random blocks ----------------------------------------------------------------------------

_HOT_KEYS = ["a", "é", "ключ", "🔑", "k\x00", "a b", "x" * MAX_KEY_BYTES]
_VALUES = ["", "0", "1", "é", "🔑🔑🔑", "\x00"]
_ALPHABET = 'ab\u00e9\u0416\U0001f511\x00"\\ '
_GARBAGE = [
    b"",
    b"\xff\xfe",
    b"{}",
    b"[1, 2]",
    b'{"op":"put","key":"","value":"v"}',
    b'{"op":"put","key":"\\ud800","value":"v"}',
    b'{"op":"put","key":"a","key":"b","value":"v"}',
    b'{"op":"del","key":"a","value":"v"}',
    b'{"op":"cas","key":"a","value":"v"}',
    b'{"op":"put","key":1,"value":"v"}',
    b'{"op":"put","key":"a","value":NaN}',
    b'{"op":"get","key":"a"}',
    put_tx("x" * (MAX_KEY_BYTES + 1), "v"),
]


class Blocks:
    """Seeded random blocks: puts, dels and cas over hot and wide keys, garbage, repeated txs."""

    def __init__(self, seed: int, reference: Reference) -> None:
        self.rng = random.Random(seed)
        # The reference's committed state, so some cas expectations are right.
        self.reference = reference
        self.wide_keys = [f"k{n}" for n in range(self.rng.choice([20, 3000]))]

    def _text(self) -> str:
        if self.rng.random() < 0.5:
            return self.rng.choice(_VALUES)
        return "".join(self.rng.choice(_ALPHABET) for _ in range(self.rng.randint(0, 12)))

    def _op(self) -> KvOp:
        rng = self.rng
        key = rng.choice(_HOT_KEYS) if rng.random() < 0.3 else rng.choice(self.wide_keys)
        kind = rng.random()
        if kind < 0.4:
            return Put(key, self._text())
        if kind < 0.6:
            return Delete(key)
        expect: str | None
        draw = rng.random()
        if draw < 0.2:
            expect = None
        elif draw < 0.5:
            expect = self.reference.state.get(key)
        else:
            expect = self._text()
        return CompareAndSet(key, expect, self._text())

    def _tx(self, block: list[bytes]) -> bytes:
        rng = self.rng
        draw = rng.random()
        if draw < 0.05 and block:
            return rng.choice(block)
        if draw < 0.10:
            return rng.choice(_GARBAGE)
        if draw < 0.13:
            return rng.randbytes(rng.randint(1, 40))
        op = self._op()
        nonce = rng.choice([None, None, rng.randint(0, 9), self._text()])
        if draw < 0.20:
            # Another client's spelling: fields reordered, spaced, non-ASCII escaped.
            doc = json.loads(encode_tx(op, nonce))
            names = list(doc)
            rng.shuffle(names)
            return json.dumps({name: doc[name] for name in names}, indent=1, ensure_ascii=True).encode()
        return encode_tx(op, nonce)

    def block(self) -> list[bytes]:
        size = self.rng.choice([0, 1, self.rng.randint(2, 50), self.rng.randint(500, 3000)])
        txs: list[bytes] = []
        for _ in range(size):
            txs.append(self._tx(txs))
        return txs


@pytest.mark.parametrize("seed", range(6))
def test_random_blocks_match_the_reference_and_survive_reopen(tmp_path: Path, seed: int) -> None:
    """Seeded: a failure names its seed (the test id) and replays from it."""
    path = tmp_path / "kv.sqlite"
    reference = Reference()
    blocks = Blocks(seed, reference)
    outcomes: set[tuple[int, str]] = set()
    hashes = {}
    with KeyValueLedger(path) as app:
        for _ in range(30):
            txs = blocks.block()
            block = run_both(app, reference, txs, f"seed {seed}")
            hashes[reference.height] = reference.app_hash
            outcomes.update((r.code, r.log.split(":")[0]) for r in block.results)
        assert stored_state(path) == reference.state, f"seed {seed}"
    with KeyValueLedger(path) as app:
        assert (app.info().last_height, app.info().app_hash) == (reference.height, reference.app_hash)
        assert all(app.app_hash_at(height) == app_hash for height, app_hash in hashes.items())
        for key in [*_HOT_KEYS, *blocks.wide_keys]:
            assert app.get(key) == (reference.state.get(key), reference.height), f"seed {seed}: {key!r}"
        # The reopened ledger reads its keys from disk alone.
        run_both(app, reference, blocks.block() + blocks.block(), f"seed {seed}, after reopen")
    assert stored_state(path) == reference.state, f"seed {seed}"
    # The generator reaches every outcome, else agreeing would prove little.
    assert {(CODE_OK, "put"), (CODE_OK, "cas"), (CODE_OK, "deleted")} <= outcomes, outcomes
    assert {(CODE_OK, "deleted (was absent)"), (CODE_CAS_MISMATCH, "cas mismatch")} <= outcomes, outcomes
    assert any(code not in (CODE_OK, CODE_CAS_MISMATCH) for code, _ in outcomes), outcomes


# --- volume: many chunks ----------------------------------------------------------------------


def test_blocks_of_ten_thousand_keys_read_every_chunk(tmp_path: Path) -> None:
    """Blocks touching more keys than several read chunks hold, each block's existing keys spread
    over every chunk, the last included: a read that dropped the last chunk (whole, or partial as
    in the 10,001-key block) would report those keys absent, so cas results, delete logs, the app
    hash and the stored state would all differ from the reference's."""
    assert 4 * _READ_CHUNK_KEYS <= 10_000 and 10_001 % _READ_CHUNK_KEYS != 0
    path = tmp_path / "kv.sqlite"
    reference = Reference()
    old = [f"k{i:05d}" for i in range(10_000)]
    with KeyValueLedger(path) as app:
        run_both(app, reference, [put_tx(key, f"v{key}") for key in old], "all absent")
        # Half of the keys exist, alternating with absent ones, so every chunk holds both kinds.
        mixed = [old[i] if i % 2 == 0 else f"n{i:05d}" for i in range(10_000)]
        block = run_both(
            app,
            reference,
            [cas_tx(key, f"v{key}" if key in reference.state else None, "w") for key in mixed],
            "half exist",
        )
        assert all(result.code == CODE_OK for result in block.results)
        assert block.results[-2].data == json.dumps(f"v{mixed[-2]}").encode()
        # 10,001 keys: a last chunk of one key, which exists.
        doomed = [*[key for key in reference.state if key != old[0]][:10_000], old[0]]
        block = run_both(app, reference, [del_tx(key) for key in doomed], "partial last chunk")
        assert [result.log for result in block.results] == ["deleted"] * 10_001
    assert stored_state(path) == reference.state


# --- the overlay and commit -------------------------------------------------------------------


def test_each_key_is_stored_with_its_last_write_in_the_block(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    reference = Reference()
    with KeyValueLedger(path) as app:
        run_both(app, reference, [put_tx("gone", "0"), put_tx("kept", "0")], "setup")
        txs = [
            put_tx("kept", "1"),
            del_tx("kept"),
            cas_tx("kept", None, "2"),
            del_tx("gone"),
            put_tx("gone", "3"),
            del_tx("gone"),
            del_tx("never"),
            put_tx("новый", "4"),
            cas_tx("новый", "x", "5"),
        ]
        run_both(app, reference, txs, "rewrites")
    assert stored_state(path) == {"kept": "2", "новый": "4"} == reference.state
