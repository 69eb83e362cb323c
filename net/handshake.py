"""The authenticated key exchange between two validators (sans-I/O state machines).

Owns: the handshake wire format, `DialerHandshake`, `ListenerHandshake`, `HandshakeResult` and
the derivation of the per-direction traffic keys. May not: do I/O, keep time (the driver owns
the deadline), know validator indices beyond the mapping it is given, or import anything
beyond the stdlib, `cryptography` and `crypto`.

Each message travels in one plain frame (4-byte big-endian length, cap 1024 bytes):

    HELLO   dialer -> listener   type=0x01 | version u8 | chain_len u8 | chain_id (UTF-8)
                                 | dialer Ed25519 public key (32) | dialer ephemeral X25519 (32)
    REPLY   listener -> dialer   type=0x02 | version u8 | chain_len u8 | chain_id (UTF-8)
                                 | listener Ed25519 public key (32) | listener ephemeral X25519 (32)
                                 | listener signature (64)
    FINISH  dialer -> listener   type=0x03 | dialer signature (64)

transcript_hash = SHA-256(len32 | "bft/net/handshake/v1" | len32 | HELLO | len32 | REPLY minus
its signature). The listener signs `b"listener" + transcript_hash`, the dialer signs
`b"dialer" + transcript_hash`, both with `crypto.signing.sign(key, Tag.HANDSHAKE, chain_id, ...)`,
so a signature is bound to both identities, both ephemeral keys, the chain id, the version and
the signer's role. A recorded FINISH is useless later: it signs the listener's previous ephemeral
key. Traffic keys: HKDF-SHA256(ikm = X25519 shared secret, salt = transcript_hash, info =
"bft/net/v1 traffic keys", length 64); bytes 0..31 encrypt dialer -> listener, 32..63
listener -> dialer.

Driver contract (both classes): call `feed(bytes_received)` and send what it returns; the
dialer first sends `start()`. When `result` is set the handshake is complete (the dialer is done
once it has sent FINISH); `result.leftover` holds bytes received after the last handshake
message, which belong to the encrypted stream. Any refusal raises HandshakeRefused; the object
then refuses every later call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto.hashing import sha256
from crypto.keys import PUBLIC_KEY_LEN, SIGNATURE_LEN, PrivateKey
from crypto.signing import Tag, sign, verify
from net.errors import FrameError, HandshakeRefused, RefusalKind
from net.frames import HANDSHAKE_MAX_FRAME_BYTES, KEY_BYTES, PlainFrameReader, encode_plain_frame

PROTOCOL_VERSION = 1
MSG_HELLO = 0x01
MSG_REPLY = 0x02
MSG_FINISH = 0x03
X25519_KEY_BYTES = 32
MAX_CHAIN_ID_BYTES = 255
_TRANSCRIPT_LABEL = b"bft/net/handshake/v1"
_ROLE_LISTENER = b"listener"
_ROLE_DIALER = b"dialer"
_KEY_INFO = b"bft/net/v1 traffic keys"
# Attacker-chosen text ends up in log lines; keep it short.
_SHOWN_CHAIN_ID_CHARS = 64


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """What a completed handshake established.

    `peer_public_key` is the authenticated Ed25519 key of the other side; `send_key` and
    `receive_key` are this side's ChaCha20-Poly1305 keys; `leftover` are bytes already received
    that follow the handshake (feed them to the FrameOpener first).
    """

    peer_public_key: bytes
    transcript_hash: bytes
    send_key: bytes = field(repr=False)
    receive_key: bytes = field(repr=False)
    leftover: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class _Greeting:
    """The common part of HELLO and REPLY."""

    version: int
    chain_id: bytes
    static_key: bytes
    ephemeral_key: bytes


def short_key(public_key: bytes) -> str:
    """A public key as 16 hex digits, enough to tell validators apart in a log line."""
    return public_key[:8].hex()


def _len32(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _transcript_hash(hello: bytes, reply_body: bytes) -> bytes:
    return sha256(_len32(_TRANSCRIPT_LABEL) + _len32(hello) + _len32(reply_body))


def _derive_keys(shared_secret: bytes, transcript_hash: bytes) -> tuple[bytes, bytes]:
    """Return (dialer -> listener key, listener -> dialer key)."""
    okm = HKDF(algorithm=SHA256(), length=2 * KEY_BYTES, salt=transcript_hash, info=_KEY_INFO).derive(
        shared_secret
    )
    return okm[:KEY_BYTES], okm[KEY_BYTES:]


def _exchange(ephemeral: X25519PrivateKey, peer_ephemeral: bytes) -> bytes:
    try:
        return ephemeral.exchange(X25519PublicKey.from_public_bytes(peer_ephemeral))
    except ValueError:
        # cryptography refuses an all-zero shared secret, which is what every low-order
        # (small-subgroup) point yields; accepting it would make the keys public.
        raise HandshakeRefused(RefusalKind.LOW_ORDER_POINT, "low-order X25519 point") from None


def _encode_greeting(msg_type: int, chain_id: bytes, static_key: bytes, ephemeral_key: bytes) -> bytes:
    return bytes([msg_type, PROTOCOL_VERSION, len(chain_id)]) + chain_id + static_key + ephemeral_key


def _decode_greeting(message: bytes, msg_type: int, trailer_bytes: int) -> tuple[_Greeting, bytes]:
    """Parse HELLO (trailer 0) or REPLY (trailer = signature); return the greeting and trailer."""
    name = "HELLO" if msg_type == MSG_HELLO else "REPLY"
    if len(message) < 3:
        raise HandshakeRefused(RefusalKind.MALFORMED, f"{name} of {len(message)} bytes is too short")
    if message[0] != msg_type:
        raise HandshakeRefused(RefusalKind.MALFORMED, f"expected {name}, got message type {message[0]}")
    # The version is checked before the length, so that a future version may change the layout.
    if message[1] != PROTOCOL_VERSION:
        raise HandshakeRefused(
            RefusalKind.WRONG_VERSION, f"unsupported version {message[1]} (we speak {PROTOCOL_VERSION})"
        )
    chain_len = message[2]
    expected = 3 + chain_len + PUBLIC_KEY_LEN + X25519_KEY_BYTES + trailer_bytes
    if len(message) != expected:
        raise HandshakeRefused(
            RefusalKind.MALFORMED, f"{name} of {len(message)} bytes, expected {expected} for its chain id"
        )
    at = 3 + chain_len
    greeting = _Greeting(
        version=message[1],
        chain_id=message[3:at],
        static_key=message[at : at + PUBLIC_KEY_LEN],
        ephemeral_key=message[at + PUBLIC_KEY_LEN : at + PUBLIC_KEY_LEN + X25519_KEY_BYTES],
    )
    return greeting, message[at + PUBLIC_KEY_LEN + X25519_KEY_BYTES :]


def _check_chain_id(theirs: bytes, ours: bytes) -> None:
    if theirs != ours:
        shown = theirs.decode("utf-8", "replace")[:_SHOWN_CHAIN_ID_CHARS]
        raise HandshakeRefused(RefusalKind.WRONG_CHAIN_ID, f"wrong chain id {shown!r}")


class _Handshake:
    """Shared plumbing: framing, the one-failure-poisons-all rule, completion."""

    __slots__ = (
        "_chain_id",
        "_chain_id_bytes",
        "_ephemeral_key",
        "_failed",
        "_key",
        "_messages_received",
        "_messages_to_receive",
        "_reader",
        "_result",
    )

    def __init__(
        self, key: PrivateKey, chain_id: str, ephemeral: X25519PrivateKey | None, messages_to_receive: int
    ) -> None:
        chain_id_bytes = chain_id.encode("utf-8")
        if len(chain_id_bytes) > MAX_CHAIN_ID_BYTES:
            raise ValueError(
                f"chain id is {len(chain_id_bytes)} bytes in UTF-8, at most {MAX_CHAIN_ID_BYTES}"
            )
        self._key = key
        self._chain_id = chain_id
        self._chain_id_bytes = chain_id_bytes
        # Fresh per handshake: this is what makes a recorded handshake useless later.
        # Made when first needed (the listener's on a valid HELLO): a stranger that connects and
        # sends nothing or garbage costs no key generation.
        self._ephemeral_key = ephemeral
        self._reader = PlainFrameReader(HANDSHAKE_MAX_FRAME_BYTES)
        self._failed: HandshakeRefused | None = None
        self._result: HandshakeResult | None = None
        # Parsing stops after the last handshake message: what follows is the encrypted stream.
        self._messages_to_receive = messages_to_receive
        self._messages_received = 0

    @property
    def result(self) -> HandshakeResult | None:
        """The outcome once the handshake is complete, else None."""
        return self._result

    @property
    def messages_received(self) -> int:
        """How many complete handshake messages the other side has sent (and we accepted) so far.

        The driver uses it for its first-message deadline: an honest peer's first message comes
        at once, a stranger holding a slot open sends none."""
        return self._messages_received

    @property
    def _ephemeral(self) -> X25519PrivateKey:
        if self._ephemeral_key is None:
            self._ephemeral_key = X25519PrivateKey.generate()
        return self._ephemeral_key

    def _ephemeral_public(self) -> bytes:
        return self._ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise HandshakeRefused(self._failed.kind, self._failed.reason)
        if self._result is not None:
            raise RuntimeError("handshake already complete")

    def feed(self, data: bytes | bytearray) -> bytes:
        """Process received bytes; return the bytes to send (possibly empty).

        Raises HandshakeRefused with the reason on any refusal.
        """
        self._check_usable()
        try:
            try:
                messages = self._reader.feed(data, max_frames=self._messages_to_receive)
            except FrameError as exc:
                raise HandshakeRefused(RefusalKind.MALFORMED, f"bad handshake frame: {exc}") from None
            out = b""
            for message in messages:
                self._messages_to_receive -= 1
                out += self._on_message(message)
                self._messages_received += 1
            return out
        except HandshakeRefused as refusal:
            self._failed = refusal
            raise

    def _on_message(self, message: bytes) -> bytes:
        raise NotImplementedError

    def _complete(
        self, peer_public_key: bytes, transcript_hash: bytes, send_key: bytes, receive_key: bytes
    ) -> None:
        self._result = HandshakeResult(
            peer_public_key=peer_public_key,
            transcript_hash=transcript_hash,
            send_key=send_key,
            receive_key=receive_key,
            leftover=self._reader.take_unconsumed(),
        )


class DialerHandshake(_Handshake):
    """The side that opened the connection: it knows which validator it meant to reach.

    Contract: completes only if the listener proves possession of `expected_peer_key`, speaks
    our version and chain id, and its ephemeral key is not a low-order point.
    """

    __slots__ = ("_expected_peer_key", "_hello", "_started")

    def __init__(
        self,
        key: PrivateKey,
        chain_id: str,
        expected_peer_key: bytes,
        *,
        ephemeral: X25519PrivateKey | None = None,
    ) -> None:
        super().__init__(key, chain_id, ephemeral, messages_to_receive=1)
        if bytes(expected_peer_key) == key.public_key:
            raise ValueError("a validator does not dial itself")
        self._expected_peer_key = bytes(expected_peer_key)
        self._hello = _encode_greeting(
            MSG_HELLO, self._chain_id_bytes, key.public_key, self._ephemeral_public()
        )
        self._started = False

    def start(self) -> bytes:
        """Return the framed HELLO; call once, before any `feed`."""
        if self._started:
            raise RuntimeError("start() called twice")
        self._started = True
        return encode_plain_frame(self._hello)

    def feed(self, data: bytes | bytearray) -> bytes:
        """Process received bytes; return the bytes to send (FINISH once REPLY is accepted)."""
        if not self._started:
            raise RuntimeError("start() must be called before feed()")
        return super().feed(data)

    def _on_message(self, message: bytes) -> bytes:
        greeting, signature = _decode_greeting(message, MSG_REPLY, SIGNATURE_LEN)
        _check_chain_id(greeting.chain_id, self._chain_id_bytes)
        if greeting.static_key != self._expected_peer_key:
            reached, expected = short_key(greeting.static_key), short_key(self._expected_peer_key)
            raise HandshakeRefused(
                RefusalKind.UNEXPECTED_KEY, f"reached key {reached} but expected {expected}"
            )
        transcript_hash = _transcript_hash(self._hello, message[: -len(signature)])
        if not verify(
            greeting.static_key, Tag.HANDSHAKE, self._chain_id, _ROLE_LISTENER + transcript_hash, signature
        ):
            raise HandshakeRefused(RefusalKind.BAD_SIGNATURE, "bad handshake signature")
        shared_secret = _exchange(self._ephemeral, greeting.ephemeral_key)
        to_listener, to_dialer = _derive_keys(shared_secret, transcript_hash)
        finish = bytes([MSG_FINISH]) + sign(
            self._key, Tag.HANDSHAKE, self._chain_id, _ROLE_DIALER + transcript_hash
        )
        self._complete(greeting.static_key, transcript_hash, send_key=to_listener, receive_key=to_dialer)
        return encode_plain_frame(finish)


class ListenerHandshake(_Handshake):
    """The side that accepted the connection: it admits only validators.

    Contract: completes only if the dialer's key is in `validators` (a mapping public key ->
    validator index) and is not our own, the dialer speaks our version and chain id, its
    ephemeral key is not a low-order point, and its FINISH signs this very handshake. Refusals
    that need no signature (unknown key, wrong chain id...) happen on HELLO, before we sign.
    """

    __slots__ = ("_dialer_key", "_hello", "_keys", "_transcript_hash", "_validators")

    def __init__(
        self,
        key: PrivateKey,
        chain_id: str,
        validators: Mapping[bytes, int],
        *,
        ephemeral: X25519PrivateKey | None = None,
    ) -> None:
        super().__init__(key, chain_id, ephemeral, messages_to_receive=2)
        self._validators = validators
        self._dialer_key: bytes | None = None
        self._transcript_hash = b""
        self._keys: tuple[bytes, bytes] | None = None

    @property
    def peer_index(self) -> int | None:
        """The validator index of the dialer once HELLO was accepted (authenticated only on completion)."""
        if self._dialer_key is None:
            return None
        return self._validators[self._dialer_key]

    def _on_message(self, message: bytes) -> bytes:
        if self._dialer_key is None:
            return self._on_hello(message)
        self._on_finish(message)
        return b""

    def _on_hello(self, message: bytes) -> bytes:
        greeting, _ = _decode_greeting(message, MSG_HELLO, 0)
        _check_chain_id(greeting.chain_id, self._chain_id_bytes)
        if greeting.static_key == self._key.public_key:
            raise HandshakeRefused(RefusalKind.OWN_KEY, "dialer presented our own key")
        if greeting.static_key not in self._validators:
            raise HandshakeRefused(RefusalKind.UNKNOWN_KEY, "unknown validator key")
        shared_secret = _exchange(self._ephemeral, greeting.ephemeral_key)
        reply_body = _encode_greeting(
            MSG_REPLY, self._chain_id_bytes, self._key.public_key, self._ephemeral_public()
        )
        self._transcript_hash = _transcript_hash(message, reply_body)
        self._keys = _derive_keys(shared_secret, self._transcript_hash)
        self._dialer_key = greeting.static_key
        signature = sign(self._key, Tag.HANDSHAKE, self._chain_id, _ROLE_LISTENER + self._transcript_hash)
        return encode_plain_frame(reply_body + signature)

    def _on_finish(self, message: bytes) -> None:
        assert self._dialer_key is not None and self._keys is not None
        if len(message) != 1 + SIGNATURE_LEN or message[0] != MSG_FINISH:
            got_type = message[0] if message else None
            raise HandshakeRefused(
                RefusalKind.MALFORMED,
                f"expected FINISH ({1 + SIGNATURE_LEN} bytes), got {len(message)} bytes of type {got_type}",
            )
        if not verify(
            self._dialer_key, Tag.HANDSHAKE, self._chain_id, _ROLE_DIALER + self._transcript_hash, message[1:]
        ):
            raise HandshakeRefused(RefusalKind.BAD_SIGNATURE, "bad handshake signature")
        to_listener, to_dialer = self._keys
        self._complete(self._dialer_key, self._transcript_hash, send_key=to_dialer, receive_key=to_listener)
