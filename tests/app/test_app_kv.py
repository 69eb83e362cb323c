"""Tests of the key-value ledger (`bft.app.kv`) against the `bft.app.interface` contract."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bft.app.interface import (
    CODE_OK,
    GENESIS_APP_HASH,
    QUERY_BAD_REQUEST,
    QUERY_NOT_FOUND,
    QUERY_OK,
    QUERY_UNKNOWN_PATH,
    AppClosed,
    AppError,
    Application,
    BlockResult,
    OutOfOrder,
    StateCorrupt,
)
from bft.app.kv import (
    CODE_CAS_MISMATCH,
    CODE_MALFORMED,
    CODE_TOO_LARGE,
    MAX_KEY_BYTES,
    MAX_TX_BYTES,
    MAX_VALUE_BYTES,
    CompareAndSet,
    Delete,
    KeyValueLedger,
    KvOp,
    Put,
    Rejection,
    canonical_tx,
    cas_tx,
    del_tx,
    encode_tx,
    parse_tx,
    put_tx,
)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[KeyValueLedger]:
    with KeyValueLedger(tmp_path / "kv.sqlite") as app:
        yield app


def run_block(app: Application, txs: Sequence[bytes]) -> BlockResult:
    """Execute and commit the next block; check that commit returns the executed hash."""
    result = app.execute_block(app.info().last_height + 1, txs)
    assert app.commit() == result.app_hash
    return result


# --- the protocol ---------------------------------------------------------------------------


def test_satisfies_application_protocol(ledger: KeyValueLedger) -> None:
    # The annotation is what mypy checks; isinstance checks the methods exist at runtime.
    app: Application = ledger
    assert isinstance(app, Application)
    assert app.info().last_height == 0
    assert app.info().app_hash == GENESIS_APP_HASH
    assert app.check_tx(put_tx("a", "1")).ok
    block = app.execute_block(1, [put_tx("a", "1")])
    assert block.height == 1 and [r.code for r in block.results] == [CODE_OK]
    assert app.query("/kv", b"a").code == QUERY_NOT_FOUND  # staged, not committed
    assert app.commit() == block.app_hash
    assert app.info().last_height == 1 and app.info().app_hash == block.app_hash
    answer = app.query("/kv", b"a")
    assert (answer.code, answer.value, answer.height) == (QUERY_OK, b"1", 1)


def test_error_hierarchy() -> None:
    assert issubclass(OutOfOrder, AppError)
    assert issubclass(StateCorrupt, AppError)
    assert issubclass(AppClosed, AppError)


# --- semantics --------------------------------------------------------------------------------


def test_put_get_del(ledger: KeyValueLedger) -> None:
    assert ledger.get("k") == (None, 0)
    block = run_block(ledger, [put_tx("k", "v1"), put_tx("k", "v2")])
    assert [r.data for r in block.results] == [b"null", b'"v1"']
    assert ledger.get("k") == ("v2", 1)
    block = run_block(ledger, [del_tx("k")])
    assert block.results[0].code == CODE_OK and block.results[0].data == b'"v2"'
    assert ledger.get("k") == (None, 2)


def test_del_of_absent_key_is_a_successful_no_op(ledger: KeyValueLedger) -> None:
    block = run_block(ledger, [del_tx("never")])
    assert block.results[0].code == CODE_OK
    assert block.results[0].data == b"null"
    assert ledger.get("never") == (None, 1)


def test_cas(ledger: KeyValueLedger) -> None:
    block = run_block(
        ledger,
        [
            cas_tx("k", None, "a"),  # absent as expected: set
            cas_tx("k", None, "b"),  # no longer absent: mismatch
            cas_tx("k", "x", "b"),  # wrong expectation: mismatch
            cas_tx("k", "a", "c"),  # right expectation: set
        ],
    )
    assert [r.code for r in block.results] == [CODE_OK, CODE_CAS_MISMATCH, CODE_CAS_MISMATCH, CODE_OK]
    # A failed cas reports the current value, so the client can retry.
    assert [r.data for r in block.results] == [b"null", b'"a"', b'"a"', b'"a"']
    assert ledger.get("k") == ("c", 1)
    block = run_block(ledger, [del_tx("k"), cas_tx("k", "c", "d"), cas_tx("k", None, "e")])
    assert [r.code for r in block.results] == [CODE_OK, CODE_CAS_MISMATCH, CODE_OK]
    assert ledger.get("k") == ("e", 2)


def test_empty_string_value_is_distinct_from_absent(ledger: KeyValueLedger) -> None:
    block = run_block(ledger, [put_tx("k", ""), cas_tx("k", None, "x"), cas_tx("k", "", "y")])
    assert [r.code for r in block.results] == [CODE_OK, CODE_CAS_MISMATCH, CODE_OK]
    assert ledger.get("k") == ("y", 1)


def test_unicode_keys_and_values(ledger: KeyValueLedger) -> None:
    run_block(ledger, [put_tx("clé\x00ü", "värde ☃")])
    assert ledger.get("clé\x00ü") == ("värde ☃", 1)
    assert ledger.query("/kv", "clé\x00ü".encode()).value == "värde ☃".encode()


def test_query_codes(ledger: KeyValueLedger) -> None:
    run_block(ledger, [put_tx("a", "1")])
    assert ledger.query("/nope", b"a").code == QUERY_UNKNOWN_PATH
    assert ledger.query("/kv", b"\xff").code == QUERY_BAD_REQUEST
    missing = ledger.query("/kv", b"b")
    assert (missing.code, missing.value, missing.height) == (QUERY_NOT_FOUND, None, 1)


def test_parse_tx_accepts_hand_written_json() -> None:
    assert parse_tx(b'{"key": "k", "op": "put", "value": "v"}') == Put("k", "v")
    assert parse_tx(b' {"op":"del","key":"k","nonce":7} ') == Delete("k")
    assert parse_tx(b'{"op":"cas","key":"k","expect":null,"value":"v","nonce":"n"}') == CompareAndSet(
        "k", None, "v"
    )
    assert parse_tx('{"op":"put","key":"\\u00e9","value":"é"}'.encode()) == Put("é", "é")


# --- malformed transactions -------------------------------------------------------------------

MALFORMED: list[tuple[bytes, int, str]] = [
    (b"\xff\xfe", CODE_MALFORMED, "UTF-8"),
    (b"{not json", CODE_MALFORMED, "JSON"),
    (b"", CODE_MALFORMED, "JSON"),
    (b'{"op":"put","key":"k","value":"v"} trailing', CODE_MALFORMED, "JSON"),
    (b'["put","k","v"]', CODE_MALFORMED, "object"),
    (b'"put"', CODE_MALFORMED, "object"),
    (b"null", CODE_MALFORMED, "object"),
    (b'{"key":"k","value":"v"}', CODE_MALFORMED, "missing field 'op'"),
    (b'{"op":"get","key":"k"}', CODE_MALFORMED, "unknown op"),
    (b'{"op":1,"key":"k"}', CODE_MALFORMED, "unknown op"),
    (b'{"op":"put","key":"k"}', CODE_MALFORMED, "missing"),
    (b'{"op":"cas","key":"k","value":"v"}', CODE_MALFORMED, "missing"),
    (b'{"op":"del"}', CODE_MALFORMED, "missing"),
    (b'{"op":"del","key":"k","value":"v"}', CODE_MALFORMED, "unexpected"),
    (b'{"op":"put","key":"k","value":"v","extra":1}', CODE_MALFORMED, "unexpected"),
    (b'{"op":"put","key":"k","value":"v","key":"j"}', CODE_MALFORMED, "duplicate"),
    (b'{"op":"put","key":1,"value":"v"}', CODE_MALFORMED, "'key' must be a string"),
    (b'{"op":"put","key":null,"value":"v"}', CODE_MALFORMED, "'key' must be a string"),
    (b'{"op":"put","key":"k","value":1}', CODE_MALFORMED, "'value' must be a string"),
    (b'{"op":"put","key":"k","value":["v"]}', CODE_MALFORMED, "'value' must be a string"),
    (b'{"op":"cas","key":"k","expect":1,"value":"v"}', CODE_MALFORMED, "'expect' must be a string"),
    (b'{"op":"put","key":"","value":"v"}', CODE_MALFORMED, "empty"),
    (b'{"op":"put","key":"\\ud800","value":"v"}', CODE_MALFORMED, "surrogate"),
    (b'{"op":"put","key":"k","value":"v","nonce":true}', CODE_MALFORMED, "nonce"),
    (b'{"op":"put","key":"k","value":"v","nonce":1.5}', CODE_MALFORMED, "nonce"),
    (b'{"op":"put","key":"k","value":"v","nonce":{}}', CODE_MALFORMED, "nonce"),
    (b'{"op":"put","key":"k","value":"v","nonce":NaN}', CODE_MALFORMED, "NaN"),
    (b'{"op":"put","key":"k","value":"v","nonce":' + b"9" * 5000 + b"}", CODE_MALFORMED, "JSON"),
    (b"[" * 50_000 + b"]" * 50_000, CODE_TOO_LARGE, "limit"),
    (b"[" * 30_000 + b"]" * 30_000, CODE_MALFORMED, "JSON"),
    (put_tx("k" * (MAX_KEY_BYTES + 1), "v"), CODE_TOO_LARGE, "'key' is 1025 bytes"),
    (put_tx("é" * (MAX_KEY_BYTES // 2 + 1), "v"), CODE_TOO_LARGE, "'key'"),
    (put_tx("k", "v" * (MAX_VALUE_BYTES + 1)), CODE_TOO_LARGE, "'value'"),
    (cas_tx("k", "v" * (MAX_VALUE_BYTES + 1), "v"), CODE_TOO_LARGE, "'expect'"),
    (put_tx("k", "v", nonce="n" * MAX_TX_BYTES), CODE_TOO_LARGE, "tx is"),
]


@pytest.mark.parametrize(("tx", "code", "log_part"), MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_tx_is_refused_and_changes_nothing(
    ledger: KeyValueLedger, tx: bytes, code: int, log_part: str
) -> None:
    check = ledger.check_tx(tx)
    assert not check.ok and check.error is not None and log_part in check.error
    rejection = parse_tx(tx)
    assert isinstance(rejection, Rejection) and rejection.code == code
    run_block(ledger, [put_tx("k", "before")])
    info = ledger.info()
    # The bad tx sits between good ones: it gets its own result and stops nothing.
    block = run_block(ledger, [put_tx("a", "1"), tx, put_tx("b", "2")])
    assert [r.code for r in block.results] == [CODE_OK, code, CODE_OK]
    assert log_part in block.results[1].log
    assert ledger.get("k") == ("before", 2)
    assert ledger.get("a") == ("1", 2) and ledger.get("b") == ("2", 2)
    assert ledger.info().app_hash != info.app_hash


def test_limits_are_inclusive(ledger: KeyValueLedger) -> None:
    tx = put_tx("k" * MAX_KEY_BYTES, "v" * MAX_VALUE_BYTES)
    assert len(tx) <= MAX_TX_BYTES
    assert ledger.check_tx(tx).ok
    assert run_block(ledger, [tx]).results[0].code == CODE_OK


def test_check_tx_never_mutates(ledger: KeyValueLedger) -> None:
    info = ledger.info()
    for tx in [put_tx("k", "v"), del_tx("k"), cas_tx("k", None, "v"), b"junk"]:
        ledger.check_tx(tx)
    assert ledger.info() == info
    assert ledger.get("k") == (None, 0)
    # check_tx is stateless: a cas that would fail now is still admitted.
    run_block(ledger, [put_tx("k", "v")])
    assert ledger.check_tx(cas_tx("k", None, "w")).ok


# --- identity of transactions -----------------------------------------------------------------


def test_identical_bytes_vs_nonce_distinct(ledger: KeyValueLedger) -> None:
    plain, first, second = put_tx("k", "v"), put_tx("k", "v", nonce=1), put_tx("k", "v", nonce="1")
    assert len({plain, first, second}) == 3
    assert len({hashlib.sha256(tx).digest() for tx in (plain, first, second)}) == 3
    assert parse_tx(plain) == parse_tx(first) == parse_tx(second) == Put("k", "v")
    # Deduplication is the mempool's job; the ledger applies whatever the block holds.
    block = run_block(ledger, [plain, plain, first])
    assert [r.code for r in block.results] == [CODE_OK] * 3
    assert [r.data for r in block.results] == [b"null", b'"v"', b'"v"']


def test_encoders_are_canonical() -> None:
    assert put_tx("k", "v") == b'{"key":"k","op":"put","value":"v"}'
    assert del_tx("k", nonce=3) == b'{"key":"k","nonce":3,"op":"del"}'
    assert cas_tx("k", None, "é") == '{"expect":null,"key":"k","op":"cas","value":"é"}'.encode()
    assert encode_tx(Put("k", "v")) == put_tx("k", "v")
    assert encode_tx(Delete("k"), nonce=3) == del_tx("k", nonce=3)
    assert encode_tx(CompareAndSet("k", None, "é"), "n") == cas_tx("k", None, "é", "n")


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        (b'{"op": "put", "key": "k", "value": "v"}', put_tx("k", "v")),
        (b' {"value":"v","op":"put","key":"k"}\n', put_tx("k", "v")),
        (b'{"op":"put","key":"\\u00e9","value":"\\u2603"}', put_tx("é", "☃")),
        (b'{"nonce": 7, "op": "del", "key": "k"}', del_tx("k", 7)),
        (b'{"op":"del","key":"k","nonce":"7"}', del_tx("k", "7")),
        (b'{"op":"cas","key":"k","value":"v","expect":null}', cas_tx("k", None, "v")),
        (b'{"op":"cas","key":"k","value":"v","expect":"w","nonce":-1}', cas_tx("k", "w", "v", -1)),
    ],
)
def test_canonical_tx_rewrites_any_spelling_of_an_operation_to_the_encoders_bytes(
    written: bytes, canonical: bytes
) -> None:
    assert canonical_tx(written) == canonical
    assert canonical_tx(canonical) == canonical


def test_canonical_tx_refuses_what_is_not_a_transaction() -> None:
    for tx, code, log_part in MALFORMED:
        refused = canonical_tx(tx)
        assert isinstance(refused, Rejection) and refused.code == code and log_part in refused.log


# --- determinism and the app hash -------------------------------------------------------------

BLOCKS: list[list[bytes]] = [
    [put_tx("a", "1"), put_tx("b", "2"), b"junk"],
    [cas_tx("a", "1", "3"), del_tx("b"), cas_tx("b", "2", "x")],
    [],
    [put_tx("c", "4", nonce=1), del_tx("zz")],
]


def test_two_ledgers_agree(tmp_path: Path) -> None:
    with KeyValueLedger(tmp_path / "one.sqlite") as one, KeyValueLedger(tmp_path / "two.sqlite") as two:
        for txs in BLOCKS:
            assert run_block(one, txs) == run_block(two, txs)
        assert one.info() == two.info()
        for height in range(len(BLOCKS) + 1):
            assert one.app_hash_at(height) == two.app_hash_at(height) is not None
        assert one.app_hash_at(len(BLOCKS) + 1) is None


def test_order_changes_the_hash(tmp_path: Path) -> None:
    with KeyValueLedger(tmp_path / "one.sqlite") as one, KeyValueLedger(tmp_path / "two.sqlite") as two:
        txs = [put_tx("a", "1"), put_tx("b", "2")]
        assert run_block(one, txs).app_hash != run_block(two, txs[::-1]).app_hash
        # Same final state, different history: the chain keeps them apart from then on.
        assert one.get("a") == two.get("a") and one.get("b") == two.get("b")
        assert run_block(one, []).app_hash != run_block(two, []).app_hash


def test_height_and_previous_hash_change_the_hash(tmp_path: Path) -> None:
    with KeyValueLedger(tmp_path / "one.sqlite") as one, KeyValueLedger(tmp_path / "two.sqlite") as two:
        run_block(one, [])
        run_block(two, [b"junk"])
        # Same block at the same height after different histories.
        assert run_block(one, [put_tx("a", "1")]).app_hash != run_block(two, [put_tx("a", "1")]).app_hash


def test_app_hash_follows_the_documented_formula(ledger: KeyValueLedger) -> None:
    txs = [put_tx("k", "v"), del_tx("k"), b"junk"]
    block = run_block(ledger, txs)

    def u32(n: int) -> bytes:
        return struct.pack(">I", n)

    expected = hashlib.sha256(
        b"bft-kv/v1"
        + GENESIS_APP_HASH
        + struct.pack(">Q", 1)
        + u32(3)
        + hashlib.sha256(txs[0]).digest()
        + u32(0)
        + b"\x01"
        + u32(1)
        + b"k"
        + u32(1)
        + b"v"
        + hashlib.sha256(txs[1]).digest()
        + u32(0)
        + b"\x02"
        + u32(1)
        + b"k"
        + hashlib.sha256(txs[2]).digest()
        + u32(CODE_MALFORMED)
        + b"\x00"
    ).digest()
    assert block.app_hash == expected


# --- call order -------------------------------------------------------------------------------


def test_wrong_height_raises(ledger: KeyValueLedger) -> None:
    for height in (0, 2, -1):
        with pytest.raises(OutOfOrder, match="expected height 1"):
            ledger.execute_block(height, [])
    run_block(ledger, [])
    with pytest.raises(OutOfOrder, match="expected height 2"):
        ledger.execute_block(1, [])
    assert ledger.info().last_height == 1


def test_double_execute_and_empty_commit_raise(ledger: KeyValueLedger) -> None:
    with pytest.raises(OutOfOrder, match="no block executed"):
        ledger.commit()
    ledger.execute_block(1, [put_tx("a", "1")])
    with pytest.raises(OutOfOrder, match="not committed"):
        ledger.execute_block(1, [put_tx("a", "2")])
    ledger.commit()
    with pytest.raises(OutOfOrder):
        ledger.commit()
    assert ledger.get("a") == ("1", 1)


def test_use_after_close_raises(tmp_path: Path) -> None:
    app = KeyValueLedger(tmp_path / "kv.sqlite")
    app.close()
    app.close()  # idempotent
    with pytest.raises(AppClosed):
        app.info()
    with pytest.raises(AppClosed):
        app.get("k")


# --- durability -------------------------------------------------------------------------------


def test_commit_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    with KeyValueLedger(path) as app:
        run_block(app, [put_tx("a", "1")])
        last = run_block(app, [put_tx("b", "2"), del_tx("a")])
    with KeyValueLedger(path) as app:
        assert app.info().last_height == 2 and app.info().app_hash == last.app_hash
        assert app.get("a") == (None, 2) and app.get("b") == ("2", 2)
        assert run_block(app, [put_tx("c", "3")]).height == 3


def test_crash_between_execute_and_commit_replays_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    block2 = [put_tx("n", "2"), cas_tx("n", "1", "x"), cas_tx("counter", "1", "2")]
    with KeyValueLedger(path) as app:
        first = run_block(app, [put_tx("n", "1"), put_tx("counter", "1")])
        staged = app.execute_block(2, block2)
        # Closed without commit: the staged block is lost, as in a crash.
    with KeyValueLedger(path) as app:
        assert app.info().last_height == 1 and app.info().app_hash == first.app_hash
        assert app.get("n") == ("1", 1) and app.get("counter") == ("1", 1)
        replayed = run_block(app, block2)
        assert replayed == staged
        assert app.get("counter") == ("2", 2)  # applied once: a second cas would have failed


def test_hard_crash_after_execute(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from bft.app.kv import KeyValueLedger, put_tx\n"
        "app = KeyValueLedger(Path(sys.argv[1]))\n"
        "app.execute_block(1, [put_tx('a', '1')]); app.commit()\n"
        "app.execute_block(2, [put_tx('a', '2')])\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    with KeyValueLedger(path) as app:
        assert app.info().last_height == 1
        assert app.get("a") == ("1", 1)
        assert run_block(app, [put_tx("a", "2")]).results[0].data == b'"1"'


def test_unknown_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kv.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StateCorrupt, match="schema version 99"):
        KeyValueLedger(path)


# --- model check ------------------------------------------------------------------------------

_keys = st.sampled_from(["a", "b", "c", "é", "k\x00"])
_values = st.text(max_size=8)
_ops = st.one_of(
    st.builds(Put, _keys, _values),
    st.builds(Delete, _keys),
    st.builds(CompareAndSet, _keys, st.none() | _values | st.sampled_from(["0", "1"]), _values),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.lists(st.lists(_ops, max_size=6), max_size=6))
def test_matches_dict_model(tmp_path_factory: pytest.TempPathFactory, blocks: list[list[KvOp]]) -> None:
    path = tmp_path_factory.mktemp("model") / "kv.sqlite"
    model: dict[str, str] = {}
    with KeyValueLedger(path) as app:
        for height, ops in enumerate(blocks, start=1):
            txs = [encode_tx(op, nonce) for nonce, op in enumerate(ops)]
            block = run_block(app, txs)
            assert block.height == height
            for op, result in zip(ops, block.results, strict=True):
                previous = model.get(op.key)
                assert result.data == json.dumps(previous, ensure_ascii=False).encode()
                if isinstance(op, Put):
                    model[op.key] = op.value
                elif isinstance(op, Delete):
                    model.pop(op.key, None)
                elif previous == op.expect:
                    model[op.key] = op.value
                else:
                    assert result.code == CODE_CAS_MISMATCH
                    continue
                assert result.code == CODE_OK
            for key in ["a", "b", "c", "é", "k\x00"]:
                assert app.get(key) == (model.get(key), height)


_nonces = st.none() | st.integers(-(2**70), 2**70) | st.text(max_size=8)


@settings(max_examples=200, deadline=None)
@given(op=_ops, nonce=_nonces, indent=st.none() | st.integers(0, 2), data=st.data())
def test_every_spelling_of_an_operation_has_one_canonical_form(
    op: KvOp, nonce: str | int | None, indent: int | None, data: st.DataObject
) -> None:
    canonical = encode_tx(op, nonce)
    assert parse_tx(canonical) == op
    assert canonical_tx(canonical) == canonical
    # The same operation as another client might write it: fields in any order, spaced, escaped.
    doc = json.loads(canonical)
    order = data.draw(st.permutations(sorted(doc)))
    spelled = json.dumps({name: doc[name] for name in order}, indent=indent, ensure_ascii=True).encode()
    assert canonical_tx(spelled) == canonical
