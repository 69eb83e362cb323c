"""An independent model of the key-value ledger, for judging a chaos run's committed chain.

Owns: `parse_kv_tx` (what a transaction's bytes mean, written from DESIGN.md's transaction
format, not from the ledger's code), `KvModel` (the replay of a committed order of transactions,
keeping every key's history so that a read at any height is answered in O(log n)) and
`TxEffect` / `Replayed` (what one transaction did in the replay).
May not: import `bft.app` (an oracle that shares the implementation's code shares its bugs), or
do I/O.

The rules, from DESIGN.md ("Interfaces other programs rely on"): a transaction is a UTF-8 JSON
object `{"op": "put", "key": K, "value": V}`, `{"op": "del", "key": K}` or
`{"op": "cas", "key": K, "expect": V_or_null, "value": V}`, each with an optional `"nonce"` (a
JSON string or integer) and no other field; keys and values are strings. `put` sets, `del`
removes (an absent key stays absent), `cas` sets `key` to `value` only if its current value
equals `expect` (null: the key is absent). Anything the model cannot read as one of these
(bad UTF-8 or JSON, a duplicate, missing or extra field, a wrong type, an empty key, a lone
surrogate, a size over the ledger's documented limits) changes nothing: a Byzantine leader may
order junk, and the ledger refuses it. Where the model is stricter or laxer than the ledger, the
checker reports a wrong read or a wrong cas: that disagreement is itself worth a look.
"""

from __future__ import annotations

import bisect
import enum
import json
from dataclasses import dataclass
from typing import Final

# The ledger's documented size limits (bft/app/kv.py's header); repeated, not imported.
MAX_KEY_BYTES: Final = 1024
MAX_VALUE_BYTES: Final = 64 * 1024
MAX_TX_BYTES: Final = 70 * 1024

_FIELDS: Final[dict[str, frozenset[str]]] = {
    "put": frozenset({"op", "key", "value"}),
    "del": frozenset({"op", "key"}),
    "cas": frozenset({"op", "key", "expect", "value"}),
}


@dataclass(frozen=True, slots=True)
class ModelOp:
    """One readable transaction. `value` is None for a del; `expect` is only meaningful for a cas
    (None: the key must be absent)."""

    op: str  # "put" | "del" | "cas"
    key: str
    value: str | None
    expect: str | None


class TxEffect(enum.StrEnum):
    """What one transaction did when the model replayed it."""

    APPLIED = "applied"  # a put, a del, or a cas whose expectation held
    REFUSED = "refused"  # a cas whose expectation did not hold: nothing changed
    UNREADABLE = "unreadable"  # not a key-value transaction: nothing changed


@dataclass(frozen=True, slots=True)
class Replayed:
    """One transaction's replay: its effect, its operation (None if unreadable) and the key's
    value just before it ran (None: absent, or unreadable)."""

    effect: TxEffect
    op: ModelOp | None
    before: str | None


class _Unreadable(Exception):
    """Raised inside JSON hooks; never escapes `parse_kv_tx`."""


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise _Unreadable("duplicate field")
    return dict(pairs)


def _no_constants(name: str) -> object:
    raise _Unreadable(name)


def _text(value: object, limit_bytes: int) -> str | None:
    """`value` if it is a string of valid Unicode within `limit_bytes` as UTF-8, else None."""
    if not isinstance(value, str):
        return None
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return None
    return value if size <= limit_bytes else None


def parse_kv_tx(tx: bytes) -> ModelOp | None:
    """The operation `tx` spells, or None if it is not one (see the module's header). Pure."""
    if len(tx) > MAX_TX_BYTES:
        return None
    try:
        doc = json.loads(tx.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (_Unreadable, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    op = doc.get("op")
    if not isinstance(op, str) or op not in _FIELDS or set(doc) - {"nonce"} != _FIELDS[op]:
        return None
    if "nonce" in doc:
        nonce = doc["nonce"]
        # A JSON true is a Python bool, which is an int; it is not a JSON integer.
        if isinstance(nonce, bool) or not isinstance(nonce, str | int):
            return None
        if isinstance(nonce, str) and _text(nonce, MAX_TX_BYTES) is None:
            return None
    key = _text(doc["key"], MAX_KEY_BYTES)
    if not key:
        return None
    if op == "del":
        return ModelOp("del", key, None, None)
    value = _text(doc["value"], MAX_VALUE_BYTES)
    if value is None:
        return None
    if op == "put":
        return ModelOp("put", key, value, None)
    expect = None if doc["expect"] is None else _text(doc["expect"], MAX_VALUE_BYTES)
    if doc["expect"] is not None and expect is None:
        return None
    return ModelOp("cas", key, value, expect)


class KvModel:
    """The ledger's state replayed from a committed order of blocks, with every key's history.

    Contract: `apply_block` is called for heights 1, 2, 3... in order (a skipped or repeated height
    raises ValueError: the caller replays one chain). `value_at(key, h)` is the key's value after
    height h (None: absent) for any h >= 0, in O(log n) of the key's writes; above the replayed
    height it is the current value. Memory is O(writes).
    """

    __slots__ = ("_current", "_height", "_heights", "_values")

    def __init__(self) -> None:
        self._height = 0
        self._current: dict[str, str | None] = {}
        # Per key, parallel lists: the heights it was written at (increasing, one entry per height:
        # the last write of a block wins) and the value after that height (None: deleted).
        self._heights: dict[str, list[int]] = {}
        self._values: dict[str, list[str | None]] = {}

    @property
    def height(self) -> int:
        """The last height replayed (0 before any block)."""
        return self._height

    def current(self, key: str) -> str | None:
        """The key's value after the last replayed height (None: absent)."""
        return self._current.get(key)

    def apply_block(self, height: int, txs: tuple[bytes, ...]) -> list[Replayed]:
        """Replay one block: what each of its txs did, in order."""
        if height != self._height + 1:
            raise ValueError(f"model replay: height {height} after {self._height}")
        self._height = height
        return [self._apply(height, tx) for tx in txs]

    def _apply(self, height: int, tx: bytes) -> Replayed:
        op = parse_kv_tx(tx)
        if op is None:
            return Replayed(TxEffect.UNREADABLE, None, None)
        before = self._current.get(op.key)
        if op.op == "cas" and before != op.expect:
            return Replayed(TxEffect.REFUSED, op, before)
        self._write(height, op.key, op.value)
        return Replayed(TxEffect.APPLIED, op, before)

    def _write(self, height: int, key: str, value: str | None) -> None:
        self._current[key] = value
        heights = self._heights.setdefault(key, [])
        values = self._values.setdefault(key, [])
        if heights and heights[-1] == height:
            values[-1] = value
        else:
            heights.append(height)
            values.append(value)

    def value_at(self, key: str, height: int) -> str | None:
        """The value of `key` after `height` (None: absent at that height)."""
        heights = self._heights.get(key)
        if not heights:
            return None
        i = bisect.bisect_right(heights, height)
        return None if i == 0 else self._values[key][i - 1]
