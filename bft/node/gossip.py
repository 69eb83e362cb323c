"""Mempool gossip on the wire: the `Transactions` message, its codec, and the decoding of any frame
a peer sends (a protocol message for the replica, or gossip for the node).

Owns: `Transactions` and its byte layout `[7, [tx, ...]]` (tag 7, which `bft.core.wire` leaves
to the node), and `decode_frame`. A chain that runs the quorum store has no gossip: its batches
carry the transactions, and its nodes refuse a `Transactions` frame unread (`bft.node.runtime`).
May not: define or decode protocol messages (`bft.core.wire` does), or touch cbor2 directly
(`bft.core.cbor` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bft.core import cbor, wire
from bft.core.cbor import MAX_MESSAGE_SIZE_BYTES, MAX_TX_SIZE_BYTES, MAX_TXS_PER_BLOCK
from bft.core.messages import Message

TAG_TRANSACTIONS: Final = wire.TAG_RESERVED_FOR_NODE


@dataclass(frozen=True, slots=True)
class Transactions:
    """Transactions one mempool passes to its peers' mempools, so that whoever leads next has them.

    Not a protocol message: the node handles it and the replica never sees it.
    """

    txs: tuple[bytes, ...]


# Everything a peer may send: the replica's messages and mempool gossip.
Frame = Message | Transactions


def encode_transactions(msg: Transactions) -> bytes:
    """The canonical encoding of `msg`."""
    return cbor.dumps([TAG_TRANSACTIONS, list(msg.txs)])


def _to_transactions(obj: object) -> Transactions:
    _, txs = cbor.array(obj, 2, "Transactions")
    tx_list = cbor.bounded_list(txs, MAX_TXS_PER_BLOCK, "Transactions txs")
    return Transactions(
        tuple(cbor.byte_string(tx, "transaction", max_len=MAX_TX_SIZE_BYTES) for tx in tx_list)
    )


def decode_transactions(data: bytes, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES) -> Transactions:
    """The gossip `data` canonically encodes; a `DecodeError` subclass for anything else."""
    return cbor.decode_as(data, _to_transactions, "Transactions", max_size_bytes)


def decode_frame(data: bytes, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES) -> Frame:
    """What a peer sent: mempool gossip if its tag says so, else a protocol message; a
    `DecodeError` subclass for anything else. The tag is peeked, so the bytes are parsed once."""
    if cbor.peek_tag(data) == TAG_TRANSACTIONS:
        return decode_transactions(data, max_size_bytes)
    return wire.decode(data, max_size_bytes)
