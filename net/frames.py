"""Length-prefixed frames on a byte stream: encrypted for traffic, plain for the handshake (sans-I/O).

Owns: the frame formats, `FrameSealer` / `FrameOpener` (ChaCha20-Poly1305 with counter nonces),
`encode_plain_frame` / `PlainFrameReader`, and the cap on frame size. May not: do I/O, know
about peers, handshakes or what payloads mean, or import anything beyond the stdlib and
`cryptography`.

Wire format of one encrypted frame:

    length: 4 bytes, big-endian, = len(ciphertext) (payload length + 16-byte tag)
    ciphertext: ChaCha20-Poly1305(key, nonce, payload, associated_data=length)

The nonce is 4 zero bytes followed by a 64-bit big-endian counter, starting at 0 and incremented
per frame; each direction has its own key and counter, so a nonce is never reused under a key.
Because the receiver derives the nonce from its own counter, a dropped, replayed or reordered
frame fails authentication. A plain (handshake) frame is the same 4-byte length then the
payload as is.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from net.errors import (
    FrameAuthError,
    FrameError,
    FrameMalformed,
    FrameTooLarge,
    FrameTruncated,
    NonceExhausted,
)

LENGTH_BYTES = 4
TAG_BYTES = 16
KEY_BYTES = 32
NONCE_BYTES = 12
# The counter is 64 bits; the frame that would need counter 2**64 is refused instead of wrapping.
COUNTER_LIMIT = 2**64
HANDSHAKE_MAX_FRAME_BYTES = 1024
_MAX_LENGTH_FIELD = 2 ** (8 * LENGTH_BYTES) - 1


def _nonce(counter: int) -> bytes:
    return counter.to_bytes(NONCE_BYTES, "big")


def _check_cap(max_frame_bytes: int) -> None:
    if not 1 <= max_frame_bytes <= _MAX_LENGTH_FIELD:
        raise ValueError(f"max_frame_bytes must be in 1..{_MAX_LENGTH_FIELD}, got {max_frame_bytes}")


class _LengthPrefixedReader:
    """Splits a byte stream into (length prefix, body) pairs, refusing a body above the cap.

    The prefix is checked as soon as its 4 bytes are in, before any body byte is buffered, so a
    huge announced length costs nothing. At most one partial frame is ever buffered.
    """

    __slots__ = (
        "_body",
        "_body_len",
        "_failed",
        "_header",
        "_max_frame_bytes",
        "_min_frame_bytes",
        "_unconsumed",
    )

    def __init__(self, max_frame_bytes: int, min_frame_bytes: int) -> None:
        _check_cap(max_frame_bytes)
        self._max_frame_bytes = max_frame_bytes
        self._min_frame_bytes = min_frame_bytes
        self._header = bytearray()
        self._body = bytearray()
        self._body_len: int | None = None
        self._failed: FrameError | None = None
        self._unconsumed = b""

    @property
    def buffered_bytes(self) -> int:
        """Bytes held but not yet returned as frames (partial frame, unparsed input)."""
        return len(self._header) + len(self._body) + len(self._unconsumed)

    def split(self, data: bytes | bytearray, max_frames: int | None = None) -> list[tuple[bytes, bytes]]:
        """Return the (prefix, body) pairs completed by `data`, at most `max_frames` of them.

        Input left over once `max_frames` frames are out is kept unparsed (`take_unconsumed`).
        """
        if self._failed is not None:
            raise type(self._failed)(f"stream already failed: {self._failed}")
        if self._unconsumed:
            data = self._unconsumed + data
            self._unconsumed = b""
        try:
            return self._split_unchecked(memoryview(data), max_frames)
        except FrameError as exc:
            # Framing cannot resynchronise after an error: every later feed is refused too.
            self._failed = exc
            raise

    def _split_unchecked(self, view: memoryview, max_frames: int | None) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        while view:
            if max_frames is not None and len(out) >= max_frames:
                self._unconsumed = bytes(view)
                break
            if self._body_len is None:
                take = LENGTH_BYTES - len(self._header)
                self._header += view[:take]
                view = view[take:]
                if len(self._header) < LENGTH_BYTES:
                    break
                length = int.from_bytes(self._header, "big")
                if length > self._max_frame_bytes:
                    raise FrameTooLarge(f"frame of {length} bytes exceeds the cap of {self._max_frame_bytes}")
                if length < self._min_frame_bytes:
                    raise FrameMalformed(f"frame of {length} bytes is shorter than {self._min_frame_bytes}")
                self._body_len = length
            if not self._body and len(view) >= self._body_len:
                # Fast path: the whole body is in this chunk, no copy into the buffer.
                body = bytes(view[: self._body_len])
                view = view[self._body_len :]
            else:
                take = self._body_len - len(self._body)
                self._body += view[:take]
                view = view[take:]
                if len(self._body) < self._body_len:
                    break
                body = bytes(self._body)
                self._body.clear()
            out.append((bytes(self._header), body))
            self._header.clear()
            self._body_len = None
        return out

    def take_unconsumed(self) -> bytes:
        """Return (and forget) the input left unparsed by a `split` that hit `max_frames`."""
        rest, self._unconsumed = self._unconsumed, b""
        return rest

    def fail(self, exc: FrameError) -> FrameError:
        """Record a decoding error found by the caller, so that every later call raises too."""
        self._failed = exc
        return exc

    def close(self) -> None:
        """Signal end of stream: FrameTruncated if a partial frame is buffered."""
        if self._failed is None and self.buffered_bytes:
            self._failed = FrameTruncated(
                f"stream ended inside a frame ({self.buffered_bytes} bytes buffered)"
            )
            raise self._failed


def encode_plain_frame(payload: bytes, max_frame_bytes: int = HANDSHAKE_MAX_FRAME_BYTES) -> bytes:
    """Return `payload` with its 4-byte big-endian length; FrameTooLarge above `max_frame_bytes`."""
    if len(payload) > max_frame_bytes:
        raise FrameTooLarge(f"payload of {len(payload)} bytes exceeds the cap of {max_frame_bytes}")
    return len(payload).to_bytes(LENGTH_BYTES, "big") + payload


class PlainFrameReader:
    """Decodes plain length-prefixed frames (the handshake messages).

    Contract: `feed` returns the complete payloads in order and buffers the rest; it raises
    FrameTooLarge for a prefix above `max_frame_bytes` before buffering the body. After any
    error every later call raises too.
    """

    __slots__ = ("_reader",)

    def __init__(self, max_frame_bytes: int = HANDSHAKE_MAX_FRAME_BYTES) -> None:
        self._reader = _LengthPrefixedReader(max_frame_bytes, 0)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete frame held so far."""
        return self._reader.buffered_bytes

    def feed(self, data: bytes | bytearray, max_frames: int | None = None) -> list[bytes]:
        """Add received bytes; return the payloads of the frames they complete.

        With `max_frames`, parsing stops after that many frames and the rest of the input is
        kept unparsed for `take_unconsumed` (e.g. encrypted frames that follow a handshake).
        """
        return [body for _, body in self._reader.split(data, max_frames)]

    def take_unconsumed(self) -> bytes:
        """Return (and forget) the input left unparsed because `max_frames` was reached."""
        return self._reader.take_unconsumed()

    def close(self) -> None:
        """Signal end of stream: FrameTruncated if a partial frame is buffered."""
        self._reader.close()


class FrameSealer:
    """Encrypts payloads into frames for one direction of one connection.

    Contract: frame i uses nonce counter i; after 2**64 frames `seal` raises NonceExhausted
    (the connection must then be closed and re-established with fresh keys). A payload whose
    ciphertext would exceed `max_frame_bytes` raises FrameTooLarge and uses no nonce.
    """

    __slots__ = ("_aead", "_counter", "_max_frame_bytes")

    def __init__(self, key: bytes, max_frame_bytes: int = _MAX_LENGTH_FIELD) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a ChaCha20-Poly1305 key is {KEY_BYTES} bytes, got {len(key)}")
        _check_cap(max_frame_bytes)
        self._aead = ChaCha20Poly1305(bytes(key))
        self._counter = 0
        self._max_frame_bytes = max_frame_bytes

    @property
    def frames_sealed(self) -> int:
        """How many frames this sealer produced (= the next nonce counter)."""
        return self._counter

    def seal(self, payload: bytes) -> bytes:
        """Return the complete frame (length prefix + ciphertext) for `payload`."""
        length = len(payload) + TAG_BYTES
        if length > self._max_frame_bytes:
            raise FrameTooLarge(
                f"payload of {len(payload)} bytes exceeds the frame cap of {self._max_frame_bytes}"
            )
        if self._counter >= COUNTER_LIMIT:
            raise NonceExhausted("frame counter exhausted; the connection must be re-keyed")
        header = length.to_bytes(LENGTH_BYTES, "big")
        ciphertext = self._aead.encrypt(_nonce(self._counter), payload, header)
        self._counter += 1
        return header + ciphertext


class FrameOpener:
    """Decrypts frames of one direction of one connection from arbitrary chunks of the stream.

    Contract: `feed` returns the payloads of the frames completed so far, in order, and buffers
    at most one partial frame. Errors (all FrameError): FrameTooLarge when a length prefix exceeds
    `max_frame_bytes` (checked before the body is buffered), FrameMalformed when it is below the
    tag size, FrameAuthError on any authentication failure, NonceExhausted after 2**64 frames,
    FrameTruncated from `close` if the stream ended mid-frame. After any error every later call
    raises too: a stream cannot resynchronise.
    """

    __slots__ = ("_aead", "_counter", "_reader")

    def __init__(self, key: bytes, max_frame_bytes: int) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a ChaCha20-Poly1305 key is {KEY_BYTES} bytes, got {len(key)}")
        self._aead = ChaCha20Poly1305(bytes(key))
        self._counter = 0
        self._reader = _LengthPrefixedReader(max_frame_bytes, TAG_BYTES)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete frame held so far."""
        return self._reader.buffered_bytes

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """Add received bytes; return the decrypted payloads of the frames they complete."""
        payloads: list[bytes] = []
        for header, ciphertext in self._reader.split(data):
            payloads.append(self._open(header, ciphertext))
        return payloads

    def _open(self, header: bytes, ciphertext: bytes) -> bytes:
        if self._counter >= COUNTER_LIMIT:
            raise self._reader.fail(
                NonceExhausted("frame counter exhausted; the connection must be re-keyed")
            )
        try:
            payload = self._aead.decrypt(_nonce(self._counter), ciphertext, header)
        except InvalidTag:
            raise self._reader.fail(FrameAuthError(f"frame {self._counter} failed authentication")) from None
        self._counter += 1
        return payload

    def close(self) -> None:
        """Signal end of stream: FrameTruncated if a partial frame is buffered."""
        self._reader.close()


__all__ = [
    "COUNTER_LIMIT",
    "HANDSHAKE_MAX_FRAME_BYTES",
    "KEY_BYTES",
    "LENGTH_BYTES",
    "TAG_BYTES",
    "FrameAuthError",
    "FrameError",
    "FrameMalformed",
    "FrameOpener",
    "FrameSealer",
    "FrameTooLarge",
    "FrameTruncated",
    "NonceExhausted",
    "PlainFrameReader",
    "encode_plain_frame",
]
