"""Exception types of the net package.

Owns: the `NetError` hierarchy (frame errors and handshake refusals) and `RefusalKind`, the fixed
set of refusal categories that statistics are keyed by. May not: carry behaviour or import
anything beyond the stdlib.
"""

from __future__ import annotations

import enum


class NetError(Exception):
    """Base of every error the net package raises for bad input from the network."""


class FrameError(NetError):
    """A byte stream could not be decoded into frames; the connection must be closed."""


class FrameTooLarge(FrameError):
    """A length prefix (or a payload to seal) exceeds the frame cap."""


class FrameMalformed(FrameError):
    """A length prefix that cannot describe a valid frame (e.g. shorter than the AEAD tag)."""


class FrameAuthError(FrameError):
    """A frame failed ChaCha20-Poly1305 authentication: wrong key, flipped bit, reordering, replay."""


class FrameTruncated(FrameError):
    """The stream ended in the middle of a frame."""


class NonceExhausted(FrameError):
    """The 64-bit frame counter of one direction is used up; the connection must be re-keyed."""


class RefusalKind(enum.StrEnum):
    """Why a handshake was refused, as a fixed category (bounded set: safe as a stats key).

    The human-readable detail lives in `HandshakeRefused.reason`; only the kind is counted,
    so a stranger cannot grow the statistics by sending many distinct chain ids.
    """

    MALFORMED = "malformed"
    WRONG_VERSION = "wrong_version"
    WRONG_CHAIN_ID = "wrong_chain_id"
    UNKNOWN_KEY = "unknown_key"
    OWN_KEY = "own_key"
    UNEXPECTED_KEY = "unexpected_key"
    BAD_SIGNATURE = "bad_signature"
    LOW_ORDER_POINT = "low_order_point"
    TIMEOUT = "timeout"
    CLOSED = "closed"
    # The pending-handshake table was full (or the source address at its share) and this
    # unauthenticated connection was the one closed to make room for a newcomer.
    EVICTED = "evicted"
    RATE_LIMITED = "rate_limited"


class HandshakeRefused(NetError):
    """The handshake failed; `kind` is the category, `reason` a short human-readable sentence.

    Contract: `str(exc) == exc.reason`. Raised for every refusal of peer input; never for a
    local bug (those raise ValueError/RuntimeError).
    """

    def __init__(self, kind: RefusalKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
