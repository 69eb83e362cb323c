"""The core's error hierarchy. Expected refusals of input are values (`actions.Refusal`);
these exceptions are for undecodable bytes and for broken internal invariants (bugs).
"""

from __future__ import annotations


class CoreError(Exception):
    """Base of the core's exceptions."""


class InvariantViolation(CoreError):
    """An internal invariant broke: a bug, never a peer's fault. Crash loudly."""


class DecodeError(CoreError):
    """Bytes that are not exactly one valid, canonically encoded value."""


class TooLarge(DecodeError):
    """Input longer than the size limit, checked before decoding."""


class TooDeep(DecodeError):
    """Nesting deeper than the depth limit."""


class Truncated(DecodeError):
    """Input ends before the value does."""


class TrailingBytes(DecodeError):
    """Bytes left over after one complete value."""


class NonCanonical(DecodeError):
    """Valid CBOR, but not the one canonical encoding of its value."""


class DuplicateKey(DecodeError):
    """A map with a repeated key."""


class WrongType(DecodeError):
    """A value of the wrong type, length or range for its field, or an unknown message type."""
