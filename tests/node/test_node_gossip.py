"""Mempool gossip on the wire (`bft.node.gossip`): its layout, and frames decoded as either gossip
or a protocol message."""

from __future__ import annotations

import cbor2
import pytest

from bft.core import wire
from bft.core.errors import DecodeError, TooLarge, WrongType
from bft.core.messages import Vote
from bft.core.types import BlockId, ValidatorIndex, View
from bft.node.gossip import (
    TAG_TRANSACTIONS,
    Transactions,
    decode_frame,
    decode_transactions,
    encode_transactions,
)

VOTE = Vote(View(5), BlockId(bytes([5]) * 32), ValidatorIndex(2), bytes([5]) * 64)


def dumps(obj: object) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def test_layout_is_tag_7_and_the_transactions() -> None:
    gossip = Transactions((b"a", b"bc"))
    assert TAG_TRANSACTIONS == 7
    assert encode_transactions(gossip) == dumps([7, [b"a", b"bc"]])
    assert encode_transactions(Transactions(())) == dumps([7, []])


def test_transactions_gossip_is_a_frame_but_not_a_protocol_message() -> None:
    gossip = Transactions((b"a", b"bc"))
    data = encode_transactions(gossip)
    assert decode_frame(data) == gossip
    assert decode_transactions(data) == gossip
    assert decode_frame(wire.encode(VOTE)) == VOTE
    with pytest.raises(DecodeError):
        wire.decode(data)
    with pytest.raises(DecodeError):
        decode_transactions(wire.encode(VOTE))


@pytest.mark.parametrize(
    "data",
    [
        dumps([7, [bytes(wire.MAX_TX_SIZE_BYTES + 1)]]),
        dumps([7, [b"a"], 0]),
        dumps([7, b"a"]),
        dumps([7, [1]]),
        dumps([7]),
        dumps([7, [b"a"]]) + b"\x00",
        b"\x82\x07",
        b"",
        b"\x07",
    ],
)
def test_malformed_frames_are_decode_errors(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_frame(data)


def test_frame_size_limit_applies_to_gossip() -> None:
    data = encode_transactions(Transactions((b"abc",)))
    with pytest.raises(TooLarge):
        decode_frame(data, max_size_bytes=len(data) - 1)


def test_unknown_tags_still_refused_by_the_core() -> None:
    with pytest.raises(WrongType):
        decode_frame(dumps([23, []]))
