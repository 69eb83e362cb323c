"""The handshake state machines (sans-I/O): agreement, and a refusal with its reason for every attack."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from net_helpers import CHAIN_ID, make_keys, run_handshake, stranger_key, validator_map

from crypto.keys import PrivateKey
from crypto.signing import Tag, sign
from net.errors import HandshakeRefused, RefusalKind
from net.frames import FrameOpener, FrameSealer, PlainFrameReader, encode_plain_frame
from net.handshake import (
    MSG_REPLY,
    PROTOCOL_VERSION,
    DialerHandshake,
    ListenerHandshake,
    _transcript_hash,
    short_key,
)

KEYS = make_keys(4)
VALIDATORS = validator_map(KEYS)
# The all-zero point, the point 1, an order-8 point and two non-canonical encodings (p-1, p).
LOW_ORDER_POINTS = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def dialer(index: int = 0, peer: int = 1, chain_id: str = CHAIN_ID) -> DialerHandshake:
    return DialerHandshake(KEYS[index], chain_id, KEYS[peer].public_key)


def listener(index: int = 1, chain_id: str = CHAIN_ID) -> ListenerHandshake:
    return ListenerHandshake(KEYS[index], chain_id, VALIDATORS)


def unframe(data: bytes) -> bytes:
    (message,) = PlainFrameReader().feed(data)
    return message


def assert_refused(exc_info: pytest.ExceptionInfo[HandshakeRefused], kind: RefusalKind, reason: str) -> None:
    assert exc_info.value.kind is kind
    assert reason in exc_info.value.reason


def test_success_and_key_agreement() -> None:
    d, lis = dialer(), listener()
    dialer_result, listener_result, _ = run_handshake(d, lis)
    assert dialer_result.peer_public_key == KEYS[1].public_key
    assert listener_result.peer_public_key == KEYS[0].public_key
    assert lis.peer_index == 0
    assert dialer_result.transcript_hash == listener_result.transcript_hash
    assert dialer_result.send_key == listener_result.receive_key
    assert dialer_result.receive_key == listener_result.send_key
    assert dialer_result.send_key != dialer_result.receive_key
    # The keys really carry traffic both ways.
    assert FrameOpener(listener_result.receive_key, 1024).feed(
        FrameSealer(dialer_result.send_key).seal(b"hi")
    ) == [b"hi"]
    assert FrameOpener(dialer_result.receive_key, 1024).feed(
        FrameSealer(listener_result.send_key).seal(b"yo")
    ) == [b"yo"]


def test_success_in_the_other_direction_and_fresh_keys_each_time() -> None:
    first, _, _ = run_handshake(dialer(3, 2), listener(2))
    second, _, _ = run_handshake(dialer(3, 2), listener(2))
    assert first.peer_public_key == second.peer_public_key == KEYS[2].public_key
    assert first.send_key != second.send_key


def test_byte_by_byte_delivery_and_leftover_after_the_last_message() -> None:
    d, lis = dialer(), listener()
    hello = d.start()
    reply = b"".join(lis.feed(hello[i : i + 1]) for i in range(len(hello)))
    finish = b"".join(d.feed(reply[i : i + 1]) for i in range(len(reply)))
    assert d.result is not None
    # The dialer's first encrypted frame can arrive in the same read as FINISH.
    first_frame = FrameSealer(d.result.send_key).seal(b"early")
    assert lis.feed(finish + first_frame) == b""
    assert lis.result is not None
    assert lis.result.leftover == first_frame
    assert FrameOpener(lis.result.receive_key, 1024).feed(lis.result.leftover) == [b"early"]


def test_hello_layout() -> None:
    hello = unframe(dialer().start())
    chain = CHAIN_ID.encode()
    assert hello[:3] == bytes([1, PROTOCOL_VERSION, len(chain)])
    assert hello[3 : 3 + len(chain)] == chain
    assert hello[3 + len(chain) : 35 + len(chain)] == KEYS[0].public_key
    assert len(hello) == 3 + len(chain) + 64


def test_unknown_validator_key_is_refused() -> None:
    d = DialerHandshake(stranger_key(), CHAIN_ID, KEYS[1].public_key)
    with pytest.raises(HandshakeRefused) as exc_info:
        listener().feed(d.start())
    assert_refused(exc_info, RefusalKind.UNKNOWN_KEY, "unknown validator key")


def test_listener_refuses_its_own_key() -> None:
    d = DialerHandshake(KEYS[1], CHAIN_ID, KEYS[0].public_key)
    with pytest.raises(HandshakeRefused) as exc_info:
        listener(1).feed(d.start())
    assert_refused(exc_info, RefusalKind.OWN_KEY, "our own key")


def test_listener_refuses_wrong_chain_id() -> None:
    with pytest.raises(HandshakeRefused) as exc_info:
        listener().feed(dialer(chain_id="other-chain").start())
    assert_refused(exc_info, RefusalKind.WRONG_CHAIN_ID, "wrong chain id 'other-chain'")


def test_dialer_refuses_wrong_chain_id() -> None:
    # A listener of another chain, answering a dialer of that chain; our dialer gets its REPLY.
    reply = ListenerHandshake(KEYS[1], "other-chain", VALIDATORS).feed(dialer(chain_id="other-chain").start())
    d = dialer()
    d.start()
    with pytest.raises(HandshakeRefused) as exc_info:
        d.feed(reply)
    assert_refused(exc_info, RefusalKind.WRONG_CHAIN_ID, "wrong chain id 'other-chain'")


def test_wrong_version_is_refused_both_ways() -> None:
    hello = bytearray(unframe(dialer().start()))
    hello[1] = PROTOCOL_VERSION + 1
    with pytest.raises(HandshakeRefused) as exc_info:
        listener().feed(encode_plain_frame(bytes(hello)))
    assert_refused(exc_info, RefusalKind.WRONG_VERSION, "unsupported version 2")

    d = dialer()
    reply = bytearray(unframe(listener().feed(d.start())))
    reply[1] = PROTOCOL_VERSION + 1
    with pytest.raises(HandshakeRefused) as exc_info:
        d.feed(encode_plain_frame(bytes(reply)))
    assert_refused(exc_info, RefusalKind.WRONG_VERSION, "unsupported version")


def test_replayed_handshake_is_refused() -> None:
    # Record an honest session's HELLO and FINISH...
    _, _, (hello, _, finish) = run_handshake(dialer(), listener())
    # ...and play them to the same validator later: its fresh ephemeral key changes the transcript.
    lis = listener()
    assert lis.feed(hello) != b""
    with pytest.raises(HandshakeRefused) as exc_info:
        lis.feed(finish)
    assert_refused(exc_info, RefusalKind.BAD_SIGNATURE, "bad handshake signature")
    assert lis.result is None


def test_replayed_reply_is_refused_by_the_dialer() -> None:
    _, _, (_, reply, _) = run_handshake(dialer(), listener())
    d = dialer()
    d.start()
    with pytest.raises(HandshakeRefused) as exc_info:
        d.feed(reply)
    assert_refused(exc_info, RefusalKind.BAD_SIGNATURE, "bad handshake signature")


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p[:4].hex())
def test_low_order_point_from_the_dialer_is_refused(point: bytes) -> None:
    hello = unframe(dialer().start())
    forged = hello[:-32] + point
    lis = listener()
    with pytest.raises(HandshakeRefused) as exc_info:
        lis.feed(encode_plain_frame(forged))
    assert_refused(exc_info, RefusalKind.LOW_ORDER_POINT, "low-order X25519 point")


@pytest.mark.parametrize("point", LOW_ORDER_POINTS[:2], ids=lambda p: p[:4].hex())
def test_low_order_point_from_the_listener_is_refused_even_if_signed(point: bytes) -> None:
    d = dialer()
    hello = unframe(d.start())
    chain = CHAIN_ID.encode()
    body = bytes([MSG_REPLY, PROTOCOL_VERSION, len(chain)]) + chain + KEYS[1].public_key + point
    signature = sign(KEYS[1], Tag.HANDSHAKE, CHAIN_ID, b"listener" + _transcript_hash(hello, body))
    with pytest.raises(HandshakeRefused) as exc_info:
        d.feed(encode_plain_frame(body + signature))
    assert_refused(exc_info, RefusalKind.LOW_ORDER_POINT, "low-order X25519 point")


def test_dialer_claiming_another_validators_identity_cannot_finish() -> None:
    # The attacker presents validator 2's public key but only holds its own key.
    attacker = stranger_key()
    impostor = DialerHandshake(KEYS[2], CHAIN_ID, KEYS[1].public_key)
    lis = listener()
    hello_frame = impostor.start()
    reply = lis.feed(hello_frame)
    assert lis.peer_index == 2
    hello = unframe(hello_frame)
    transcript = _transcript_hash(hello, unframe(reply)[:-64])
    forged_finish = b"\x03" + sign(attacker, Tag.HANDSHAKE, CHAIN_ID, b"dialer" + transcript)
    with pytest.raises(HandshakeRefused) as exc_info:
        lis.feed(encode_plain_frame(forged_finish))
    assert_refused(exc_info, RefusalKind.BAD_SIGNATURE, "bad handshake signature")


def test_listener_signature_cannot_be_reflected_as_the_dialers() -> None:
    d, lis = dialer(), listener()
    reply = unframe(lis.feed(d.start()))
    reflected = b"\x03" + reply[-64:]
    with pytest.raises(HandshakeRefused) as exc_info:
        lis.feed(encode_plain_frame(reflected))
    assert_refused(exc_info, RefusalKind.BAD_SIGNATURE, "bad handshake signature")


def test_dialer_refuses_reaching_the_wrong_validator() -> None:
    d = dialer(0, peer=1)
    reply = listener(2).feed(d.start())
    with pytest.raises(HandshakeRefused) as exc_info:
        d.feed(reply)
    expected = f"reached key {short_key(KEYS[2].public_key)} but expected {short_key(KEYS[1].public_key)}"
    assert_refused(exc_info, RefusalKind.UNEXPECTED_KEY, expected)


def test_listener_impersonator_with_the_expected_key_but_not_its_secret() -> None:
    d = dialer(0, peer=1)
    hello = unframe(d.start())
    chain = CHAIN_ID.encode()
    ephemeral = X25519PrivateKey.generate().public_key().public_bytes_raw()
    body = bytes([MSG_REPLY, PROTOCOL_VERSION, len(chain)]) + chain + KEYS[1].public_key + ephemeral
    signature = sign(stranger_key(), Tag.HANDSHAKE, CHAIN_ID, b"listener" + _transcript_hash(hello, body))
    with pytest.raises(HandshakeRefused) as exc_info:
        d.feed(encode_plain_frame(body + signature))
    assert_refused(exc_info, RefusalKind.BAD_SIGNATURE, "bad handshake signature")


def test_oversized_handshake_frame_is_refused() -> None:
    with pytest.raises(HandshakeRefused) as exc_info:
        listener().feed((1 << 20).to_bytes(4, "big"))
    assert_refused(exc_info, RefusalKind.MALFORMED, "exceeds the cap of 1024")


def test_wrong_message_type_and_length_are_malformed() -> None:
    with pytest.raises(HandshakeRefused) as exc_info:
        listener().feed(encode_plain_frame(b"\x03" + bytes(64)))
    assert_refused(exc_info, RefusalKind.MALFORMED, "expected HELLO")
    hello = unframe(dialer().start())
    with pytest.raises(HandshakeRefused) as exc_info:
        listener().feed(encode_plain_frame(hello + b"\x00"))
    assert_refused(exc_info, RefusalKind.MALFORMED, "bytes, expected")


def test_a_refused_handshake_stays_refused() -> None:
    lis = listener()
    with pytest.raises(HandshakeRefused):
        lis.feed(DialerHandshake(stranger_key(), CHAIN_ID, KEYS[1].public_key).start())
    with pytest.raises(HandshakeRefused, match="unknown validator key"):
        lis.feed(dialer().start())


def test_caller_errors_raise_value_or_runtime_errors() -> None:
    with pytest.raises(ValueError):
        DialerHandshake(KEYS[0], "x" * 256, KEYS[1].public_key)
    with pytest.raises(ValueError):
        DialerHandshake(KEYS[0], CHAIN_ID, KEYS[0].public_key)
    d = dialer()
    with pytest.raises(RuntimeError):
        d.feed(b"")
    d.start()
    with pytest.raises(RuntimeError):
        d.start()


def test_a_non_validator_dialer_key_that_is_not_even_a_curve_point_is_just_unknown() -> None:
    hello = bytearray(unframe(dialer().start()))
    at = 3 + len(CHAIN_ID.encode())
    hello[at : at + 32] = b"\xff" * 32
    with pytest.raises(HandshakeRefused, match="unknown validator key"):
        listener().feed(encode_plain_frame(bytes(hello)))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200), st.integers(min_value=1, max_value=200))
def test_random_bytes_to_the_listener_only_ever_refuse(data: bytes, chunk: int) -> None:
    lis = listener()
    try:
        for i in range(0, len(data), chunk):
            lis.feed(data[i : i + chunk])
    except HandshakeRefused as refusal:
        assert refusal.reason
    assert lis.result is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1200))
def test_random_bytes_to_the_dialer_only_ever_refuse(data: bytes) -> None:
    d = dialer()
    d.start()
    try:
        d.feed(data)
    except HandshakeRefused as refusal:
        assert refusal.reason
    assert d.result is None


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=4), st.integers(min_value=1, max_value=255), st.sampled_from([0, 1, 2]))
def test_any_byte_changed_in_a_handshake_message_is_refused(position: int, xor: int, which: int) -> None:
    """Tampering with HELLO, REPLY or FINISH (past the frame length) never lets both sides finish."""
    d, lis = dialer(), listener()

    def tamper(index: int, frame: bytes) -> bytes:
        if index != which:
            return frame
        mutated = bytearray(frame)
        # Keep clear of the 4 length bytes: changing those is the framing tests' business.
        at = 4 + (position - 4) % (len(frame) - 4)
        mutated[at] ^= xor
        return bytes(mutated)

    with pytest.raises(HandshakeRefused):
        reply = lis.feed(tamper(0, d.start()))
        finish = d.feed(tamper(1, reply))
        lis.feed(tamper(2, finish))
    assert d.result is None or lis.result is None


def test_short_key_is_16_hex_digits() -> None:
    public_key = PrivateKey.from_seed(bytes(32)).public_key
    assert short_key(public_key) == public_key[:8].hex()
    assert len(short_key(public_key)) == 16


def test_a_listener_makes_its_ephemeral_key_only_for_a_valid_hello(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stranger that connects and sends nothing, or garbage, must cost no key generation: under
    # pre-authentication churn it was a fifth of the time spent on each connection.
    made: list[X25519PrivateKey] = []
    real = X25519PrivateKey.generate

    def counted() -> X25519PrivateKey:
        made.append(real())
        return made[-1]

    monkeypatch.setattr(X25519PrivateKey, "generate", staticmethod(counted))
    listener = ListenerHandshake(KEYS[0], CHAIN_ID, validator_map(KEYS))
    with pytest.raises(HandshakeRefused):
        listener.feed(b"\x00\x00\x00\x05hello")
    assert made == []
    dialer = DialerHandshake(KEYS[1], CHAIN_ID, KEYS[0].public_key)
    listener = ListenerHandshake(KEYS[0], CHAIN_ID, validator_map(KEYS))
    assert len(made) == 1  # the dialer's, in its HELLO
    reply = listener.feed(dialer.start())
    assert reply and len(made) == 2  # and the listener's, for its REPLY
