"""The transactions of `bft bench`: key-value puts of an exact encoded size with unique keys.

Owns: the bench key (`bench-<run>-<client>-<seq>`, fixed widths so that every transaction of a
run has the same overhead), the run id, the smallest and largest size a bench transaction can
have, and `build_tx`.
May not: submit anything; depend on anything of `bft.app` but the key-value ledger's encoding.
"""

from __future__ import annotations

import secrets
from typing import Final

from bft.app.kv import MAX_TX_BYTES, MAX_VALUE_BYTES, put_tx
from bft.bench.errors import BenchError

# Fixed widths keep the encoded overhead of every transaction of a run the same.
RUN_ID_HEX_CHARS: Final = 8
_CLIENT_DIGITS: Final = 4
_SEQ_DIGITS: Final = 10
_PAD_CHAR: Final = "x"


def new_run_id() -> str:
    return secrets.token_hex(RUN_ID_HEX_CHARS // 2)


def bench_key(run_id: str, client: int, seq: int) -> str:
    """The unique key of transaction `seq` of `client` in run `run_id`."""
    return f"bench-{run_id}-{client:0{_CLIENT_DIGITS}d}-{seq:0{_SEQ_DIGITS}d}"


def tx_size_limits() -> tuple[int, int]:
    """The smallest and largest encoded size of a bench put transaction, in bytes."""
    overhead = len(put_tx(bench_key("0" * RUN_ID_HEX_CHARS, 0, 0), ""))
    return overhead, min(MAX_TX_BYTES, overhead + MAX_VALUE_BYTES)


def check_tx_size(size_bytes: int) -> None:
    low, high = tx_size_limits()
    if size_bytes < low:
        raise BenchError(
            f"--tx-size {size_bytes} is too small: a put transaction with a bench key "
            f"takes at least {low} bytes"
        )
    if size_bytes > high:
        raise BenchError(
            f"--tx-size {size_bytes} is too large: the key-value ledger takes at most {high} bytes"
        )


def build_tx(run_id: str, client: int, seq: int, size_bytes: int) -> bytes:
    """A put transaction (`bft.app.kv.put_tx`) with a unique key whose encoding is exactly
    `size_bytes` long, the value padded to fit; BenchError if it cannot be that size."""
    key = bench_key(run_id, client, seq)
    pad = size_bytes - len(put_tx(key, ""))
    if pad < 0 or pad > MAX_VALUE_BYTES:
        check_tx_size(size_bytes)
        raise BenchError(f"key {key!r} does not fit a {size_bytes}-byte transaction")
    tx = put_tx(key, _PAD_CHAR * pad)
    assert len(tx) == size_bytes, f"built {len(tx)} bytes for a {size_bytes}-byte transaction"
    return tx
