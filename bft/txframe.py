"""The binary body of `POST /txs` (`Content-Type: application/octet-stream`): a sequence of
transactions, each a 4-byte big-endian unsigned length followed by that many bytes, nothing
before, between or after them.

Owns: the framing, both ways (`encode_binary_txs`, `decode_binary_txs`), its media type, and the
refusal of a body that is not such a sequence (`FrameRefusal`, a value naming the offset).
Shared by the node's API (`bft.node.api`) and the client (`bft.client`), so that the two cannot
frame differently.
May not: know what a transaction means, or how many bytes a request may have (the API's limits
come in as arguments); import anything beyond the stdlib.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

BINARY_MEDIA_TYPE: Final = "application/octet-stream"
LENGTH_PREFIX_BYTES: Final = 4
MAX_FRAMED_TX_BYTES: Final = 2**32 - 1

_LENGTH: Final = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class FrameRefusal:
    """Why a body is not a framed sequence of transactions. `too_many`: it frames more than the
    most allowed (the rest was not read); otherwise it is malformed (`reason` names the offset)."""

    reason: str
    too_many: bool = False


def encode_binary_txs(txs: Sequence[bytes]) -> bytes:
    """`txs` framed, in order; ValueError for one longer than a 4-byte length can say."""
    parts: list[bytes] = []
    for i, tx in enumerate(txs):
        if len(tx) > MAX_FRAMED_TX_BYTES:
            raise ValueError(f"transaction {i} is {len(tx)} bytes, more than {MAX_FRAMED_TX_BYTES}")
        parts.append(_LENGTH.pack(len(tx)))
        parts.append(bytes(tx))
    return b"".join(parts)


def decode_binary_txs(body: bytes, max_txs: int) -> list[bytes] | FrameRefusal:
    """The transactions `body` frames (zero-length ones included: what they mean is not the
    framing's concern), or why it is not a framing of at most `max_txs` of them. An empty body
    frames none; whether that is acceptable is the caller's call. Reading stops at the first
    problem, or at transaction `max_txs + 1`, so a body of tiny frames costs at most `max_txs`."""
    txs: list[bytes] = []
    offset = 0
    size = len(body)
    while offset < size:
        if len(txs) == max_txs:
            return FrameRefusal(
                f"more than {max_txs} transactions (the next starts at offset {offset})", True
            )
        if size - offset < LENGTH_PREFIX_BYTES:
            return FrameRefusal(
                f"truncated length prefix at offset {offset}: {size - offset} of {LENGTH_PREFIX_BYTES} bytes"
            )
        (length,) = _LENGTH.unpack_from(body, offset)
        start = offset + LENGTH_PREFIX_BYTES
        if length > size - start:
            return FrameRefusal(
                f"transaction {len(txs)} at offset {offset} declares {length} bytes,"
                f" but only {size - start} follow its length prefix"
            )
        txs.append(body[start : start + length])
        offset = start + length
    return txs
