"""Encrypted and plain framing (sans-I/O): round trips, chunking, and every way a stream can be bad."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from net.errors import (
    FrameAuthError,
    FrameError,
    FrameMalformed,
    FrameTooLarge,
    FrameTruncated,
    NonceExhausted,
)
from net.frames import (
    COUNTER_LIMIT,
    HANDSHAKE_MAX_FRAME_BYTES,
    LENGTH_BYTES,
    TAG_BYTES,
    FrameOpener,
    FrameSealer,
    PlainFrameReader,
    encode_plain_frame,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
CAP = 1024 * 1024


def sealed_stream(payloads: list[bytes], key: bytes = KEY) -> bytes:
    sealer = FrameSealer(key)
    return b"".join(sealer.seal(payload) for payload in payloads)


def test_round_trip_in_one_chunk() -> None:
    payloads = [b"a", b"", b"hello" * 100, bytes(range(256))]
    assert FrameOpener(KEY, CAP).feed(sealed_stream(payloads)) == payloads


def test_round_trip_byte_by_byte_buffers_partial_input() -> None:
    payloads = [b"first", b"second payload"]
    opener = FrameOpener(KEY, CAP)
    out: list[bytes] = []
    stream = sealed_stream(payloads)
    for i in range(len(stream)):
        out += opener.feed(stream[i : i + 1])
    assert out == payloads
    assert opener.buffered_bytes == 0


def test_frame_layout_length_prefix_counts_ciphertext() -> None:
    frame = FrameSealer(KEY).seal(b"xyz")
    assert int.from_bytes(frame[:LENGTH_BYTES], "big") == 3 + TAG_BYTES
    assert len(frame) == LENGTH_BYTES + 3 + TAG_BYTES


def test_each_direction_counter_makes_identical_payloads_differ() -> None:
    sealer = FrameSealer(KEY)
    assert sealer.seal(b"same") != sealer.seal(b"same")
    assert sealer.frames_sealed == 2


def test_truncated_frame_stays_buffered_then_close_is_an_error() -> None:
    frame = FrameSealer(KEY).seal(b"payload")
    opener = FrameOpener(KEY, CAP)
    assert opener.feed(frame[:-3]) == []
    assert opener.buffered_bytes == len(frame) - 3
    with pytest.raises(FrameTruncated, match="stream ended inside a frame"):
        opener.close()


def test_close_after_whole_frames_is_clean() -> None:
    opener = FrameOpener(KEY, CAP)
    opener.feed(sealed_stream([b"one"]))
    opener.close()


def test_partial_length_prefix_is_also_truncation() -> None:
    opener = FrameOpener(KEY, CAP)
    assert opener.feed(b"\x00\x00") == []
    with pytest.raises(FrameTruncated):
        opener.close()


def test_oversized_length_prefix_refused_before_the_body_is_buffered() -> None:
    opener = FrameOpener(KEY, max_frame_bytes=1000)
    with pytest.raises(FrameTooLarge, match="exceeds the cap of 1000"):
        opener.feed((0xFFFFFFFF).to_bytes(4, "big"))
    # Nothing but the 4 prefix bytes was ever held.
    assert opener.buffered_bytes <= LENGTH_BYTES


def test_oversized_length_prefix_refused_even_with_body_bytes_following() -> None:
    opener = FrameOpener(KEY, max_frame_bytes=1000)
    with pytest.raises(FrameTooLarge):
        opener.feed((1001).to_bytes(4, "big") + b"\x00" * 2000)
    assert opener.buffered_bytes <= LENGTH_BYTES


def test_frame_exactly_at_the_cap_is_accepted() -> None:
    payload = b"x" * (1000 - TAG_BYTES)
    assert FrameOpener(KEY, 1000).feed(FrameSealer(KEY).seal(payload)) == [payload]


def test_length_below_tag_size_is_malformed() -> None:
    with pytest.raises(FrameMalformed):
        FrameOpener(KEY, CAP).feed((TAG_BYTES - 1).to_bytes(4, "big"))


def test_one_flipped_ciphertext_bit_fails_authentication() -> None:
    frame = bytearray(FrameSealer(KEY).seal(b"important vote"))
    frame[LENGTH_BYTES + 2] ^= 0x04
    with pytest.raises(FrameAuthError):
        FrameOpener(KEY, CAP).feed(bytes(frame))


def test_every_single_bit_flip_is_detected() -> None:
    frame = FrameSealer(KEY).seal(b"0123456789")
    for bit in range(8 * len(frame)):
        mutated = bytearray(frame)
        mutated[bit // 8] ^= 1 << (bit % 8)
        opener = FrameOpener(KEY, CAP)
        # A longer announced length just waits for more bytes: no payload either way.
        with contextlib.suppress(FrameAuthError, FrameMalformed, FrameTooLarge):
            assert opener.feed(bytes(mutated)) == []


def test_wrong_key_fails_authentication() -> None:
    with pytest.raises(FrameAuthError):
        FrameOpener(OTHER_KEY, CAP).feed(sealed_stream([b"secret"]))


def test_replayed_frame_fails_authentication() -> None:
    frame = FrameSealer(KEY).seal(b"once")
    opener = FrameOpener(KEY, CAP)
    assert opener.feed(frame) == [b"once"]
    with pytest.raises(FrameAuthError):
        opener.feed(frame)


def test_reordered_frames_fail_authentication() -> None:
    sealer = FrameSealer(KEY)
    first, second = sealer.seal(b"1"), sealer.seal(b"2")
    with pytest.raises(FrameAuthError):
        FrameOpener(KEY, CAP).feed(second + first)


def test_an_opener_stays_failed() -> None:
    opener = FrameOpener(KEY, CAP)
    with pytest.raises(FrameAuthError):
        opener.feed(sealed_stream([b"x"], OTHER_KEY))
    with pytest.raises(FrameAuthError, match="already failed"):
        opener.feed(sealed_stream([b"x"]))


def test_sealer_refuses_wrapping_the_counter() -> None:
    sealer = FrameSealer(KEY)
    sealer._counter = COUNTER_LIMIT - 1
    sealer.seal(b"last")
    with pytest.raises(NonceExhausted):
        sealer.seal(b"one too many")


def test_opener_refuses_wrapping_the_counter() -> None:
    opener = FrameOpener(KEY, CAP)
    opener._counter = COUNTER_LIMIT
    with pytest.raises(NonceExhausted):
        opener.feed(FrameSealer(KEY).seal(b"x"))


def test_sealer_refuses_payload_above_the_cap() -> None:
    sealer = FrameSealer(KEY, max_frame_bytes=100)
    with pytest.raises(FrameTooLarge):
        sealer.seal(b"x" * (100 - TAG_BYTES + 1))
    assert sealer.frames_sealed == 0


def test_bad_key_length_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        FrameSealer(b"short")
    with pytest.raises(ValueError):
        FrameOpener(b"short", CAP)


def test_plain_frames_round_trip_and_cap() -> None:
    reader = PlainFrameReader()
    stream = encode_plain_frame(b"one") + encode_plain_frame(b"") + encode_plain_frame(b"three")
    assert reader.feed(stream[:5]) == []
    assert reader.feed(stream[5:]) == [b"one", b"", b"three"]
    with pytest.raises(FrameTooLarge):
        encode_plain_frame(b"x" * (HANDSHAKE_MAX_FRAME_BYTES + 1))
    with pytest.raises(FrameTooLarge):
        PlainFrameReader().feed((HANDSHAKE_MAX_FRAME_BYTES + 1).to_bytes(4, "big"))


def test_plain_reader_stops_after_max_frames_and_keeps_the_rest() -> None:
    reader = PlainFrameReader()
    tail = b"\xff\xff\xff\xff encrypted bytes, not a plain frame"
    assert reader.feed(encode_plain_frame(b"last handshake message") + tail, max_frames=1) == [
        b"last handshake message"
    ]
    assert reader.take_unconsumed() == tail


@settings(max_examples=300)
@given(st.binary(max_size=2048), st.integers(min_value=1, max_value=64))
def test_random_bytes_yield_only_frames_or_frame_errors(data: bytes, chunk: int) -> None:
    opener = FrameOpener(KEY, 4096)
    try:
        for i in range(0, len(data), chunk):
            assert opener.feed(data[i : i + chunk]) == []
        opener.close()
    except FrameError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=2048), st.integers(min_value=1, max_value=64))
def test_random_bytes_to_plain_reader_yield_only_frames_or_frame_errors(data: bytes, chunk: int) -> None:
    reader = PlainFrameReader()
    try:
        for i in range(0, len(data), chunk):
            for frame in reader.feed(data[i : i + chunk]):
                assert len(frame) <= HANDSHAKE_MAX_FRAME_BYTES
        reader.close()
    except FrameError:
        pass


@settings(max_examples=200)
@given(
    st.lists(st.binary(max_size=300), max_size=8),
    st.lists(st.integers(min_value=1, max_value=50), min_size=1),
)
def test_any_chunking_of_a_valid_stream_gives_the_payloads(payloads: list[bytes], cuts: list[int]) -> None:
    stream = sealed_stream(payloads)
    opener = FrameOpener(KEY, 4096)
    out: list[bytes] = []
    position, i = 0, 0
    while position < len(stream):
        size = cuts[i % len(cuts)]
        out += opener.feed(stream[position : position + size])
        position += size
        i += 1
    opener.close()
    assert out == payloads
