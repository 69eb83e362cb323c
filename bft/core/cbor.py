"""The CBOR subset every encoding of the project uses: canonical encoding, strict parsing of
untrusted bytes, and checks on parsed values.

Owns: the canonical encoder, the pre-decode scanner, the size, depth and count limits applied to
untrusted input, and the generic checks (`array`, `bounded_list`, `uint`, `byte_string`) that turn
parsed values into fields. This is the only module that touches cbor2.
May not: know any message, block or certificate (that is `bft.core.ids` and `bft.core.wire`), do
I/O, or import os, time, random, socket, trio or logging.

The subset: unsigned integers, byte strings, arrays and `null`, in cbor2's canonical form. No maps,
tags, floats, booleans, text or negative integers, no indefinite lengths. `parse` returns only
lists, ints, bytes and None, or raises a `DecodeError` subclass, whatever the input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NoReturn, TypeVar

import cbor2

from bft.core.errors import (
    DecodeError,
    DuplicateKey,
    NonCanonical,
    TooDeep,
    TooLarge,
    TrailingBytes,
    Truncated,
    WrongType,
)

_T = TypeVar("_T")

MAX_MESSAGE_SIZE_BYTES: Final = 4 * 1024 * 1024
# The deepest valid value (a signature pair inside a proof of availability inside a block inside
# a BlockResponse) nests 7 arrays; 8 leaves headroom while bounding the work any input can cause.
MAX_DEPTH: Final = 8
MAX_TXS_PER_BLOCK: Final = 10_000
MAX_SIGNATURES: Final = 1024
MAX_BLOCKS_PER_RESPONSE: Final = 256
MAX_TX_SIZE_BYTES: Final = 1024 * 1024
# Proofs of availability in a block or a BatchProofs message, batches in a BatchResponse, digests
# in a BatchRequest.
MAX_BATCHES_PER_BLOCK: Final = 256

# CBOR major types and the additional-information values the scanner distinguishes.
_MAJOR_UINT: Final = 0
_MAJOR_NEGINT: Final = 1
_MAJOR_BYTES: Final = 2
_MAJOR_TEXT: Final = 3
_MAJOR_ARRAY: Final = 4
_MAJOR_MAP: Final = 5
_MAJOR_TAG: Final = 6
_MAJOR_SIMPLE: Final = 7
_INFO_INDEFINITE: Final = 31
_SIMPLE_NULL: Final = 22
# No array of the format is longer than this; rejecting longer ones in the scan refuses the
# cheapest way to make the scan itself expensive (one huge flat array) before any allocation.
_MAX_CONTAINER_LEN: Final = max(
    MAX_TXS_PER_BLOCK, MAX_SIGNATURES, MAX_BLOCKS_PER_RESPONSE, MAX_BATCHES_PER_BLOCK, 9
)
# The smallest argument each length-prefixed form may carry; anything below fits a shorter form.
_MIN_ARG_FOR_INFO: Final = {24: 24, 25: 1 << 8, 26: 1 << 16, 27: 1 << 32}
_ARG_WIDTH_FOR_INFO: Final = {24: 1, 25: 2, 26: 4, 27: 8}


# ---------------------------------------------------------------------------------------------
# Encoding


def dumps(obj: object) -> bytes:
    """The canonical encoding of `obj` (lists, ints, bytes and None; trusted input)."""
    return cbor2.dumps(obj, canonical=True)


def peek_tag(data: bytes) -> int | None:
    """The first element of the array `data` starts with, if that is an integer below 24 and the
    array is shorter than 24 elements (both one-byte heads): a message's type tag, read without
    decoding anything. None otherwise. Says nothing about whether the rest is valid."""
    if len(data) < 2 or data[0] >> 5 != _MAJOR_ARRAY or data[0] & 0x1F >= 24:
        return None
    return data[1] if data[1] < 24 else None


# ---------------------------------------------------------------------------------------------
# Pre-decode scan


class _Frame:
    """An open array or map in the scan: how many items it still needs."""

    __slots__ = ("key_start", "keys", "remaining")

    def __init__(self, remaining: int, is_map: bool) -> None:
        self.remaining = remaining
        # Raw encodings of the keys seen so far; canonical encodings are minimal, so equal keys
        # have equal bytes once the minimal-encoding check has passed.
        self.keys: set[bytes] | None = set() if is_map else None
        self.key_start = 0


def _scan(data: bytes) -> None:
    """Check that `data` is exactly one CBOR item in the subset this format uses.

    Iterative, so hostile nesting cannot exhaust the Python stack, and every declared length is
    checked against the bytes actually present before cbor2 is allowed to allocate for it.
    """
    n = len(data)
    pos = 0
    stack: list[_Frame] = []
    while True:
        start = pos
        parent = stack[-1] if stack else None
        if parent is not None and parent.keys is not None and parent.remaining % 2 == 0:
            parent.key_start = start
        if pos >= n:
            raise Truncated(f"input ends at byte {pos} where an item should start")
        initial = data[pos]
        pos += 1
        major, info = initial >> 5, initial & 0x1F

        if major == _MAJOR_SIMPLE:
            if info == _SIMPLE_NULL:
                pass
            elif info == _INFO_INDEFINITE:
                raise NonCanonical(f"unexpected break code at byte {start}")
            else:
                raise WrongType(f"float, boolean or simple value {initial:#04x} at byte {start}")
        else:
            if info == _INFO_INDEFINITE:
                raise NonCanonical(f"indefinite length at byte {start}")
            if info < 24:
                arg = info
            elif info in _ARG_WIDTH_FOR_INFO:
                width = _ARG_WIDTH_FOR_INFO[info]
                if n - pos < width:
                    raise Truncated(f"header at byte {start} runs past the end of input")
                arg = int.from_bytes(data[pos : pos + width], "big")
                pos += width
                if arg < _MIN_ARG_FOR_INFO[info]:
                    raise NonCanonical(f"non-minimal integer or length at byte {start}")
            else:
                raise WrongType(f"reserved additional information {info} at byte {start}")

            if major == _MAJOR_NEGINT:
                raise WrongType(f"negative integer at byte {start}")
            if major == _MAJOR_TEXT:
                raise WrongType(f"text string at byte {start}")
            if major == _MAJOR_TAG:
                raise WrongType(f"tag {arg} at byte {start}")
            if major == _MAJOR_BYTES:
                if arg > n - pos:
                    raise Truncated(f"byte string at byte {start} runs past the end of input")
                pos += arg
            elif major in (_MAJOR_ARRAY, _MAJOR_MAP):
                if len(stack) >= MAX_DEPTH:
                    raise TooDeep(f"nesting deeper than {MAX_DEPTH} at byte {start}")
                items = arg * 2 if major == _MAJOR_MAP else arg
                # Every item takes at least one byte, so a count beyond the remaining bytes lies.
                if items > n - pos:
                    raise Truncated(f"container at byte {start} runs past the end of input")
                if major == _MAJOR_ARRAY and arg > _MAX_CONTAINER_LEN:
                    raise WrongType(f"array of {arg} elements at byte {start} is too long")
                if items > 0:
                    stack.append(_Frame(items, major == _MAJOR_MAP))
                    continue
                if major == _MAJOR_MAP:
                    raise WrongType(f"map at byte {start}")
            # else: an unsigned integer, already fully read.

        # One item ended at `pos`; close every container it completes.
        while stack:
            frame = stack[-1]
            if frame.keys is not None and frame.remaining % 2 == 0:
                key = data[frame.key_start : pos]
                if key in frame.keys:
                    raise DuplicateKey(f"repeated map key ending at byte {pos}")
                frame.keys.add(key)
            frame.remaining -= 1
            if frame.remaining > 0:
                break
            stack.pop()
            if frame.keys is not None:
                # Keys were checked for duplicates first; maps are still not part of the format.
                raise WrongType(f"map ending at byte {pos}")
        if not stack:
            break
    if pos != n:
        raise TrailingBytes(f"{n - pos} bytes after the value")


def parse(data: bytes, max_size_bytes: int) -> Any:
    """Scan, decode and check canonicity; the result holds only lists, ints, bytes and None."""
    if len(data) > max_size_bytes:
        raise TooLarge(f"{len(data)} bytes exceeds the limit of {max_size_bytes}")
    data = bytes(data)
    _scan(data)
    try:
        obj = cbor2.loads(data, max_depth=MAX_DEPTH + 1, allow_indefinite=False)
        reencoded = dumps(obj)
    except Exception as exc:  # the scan should make this unreachable; never let it escape
        raise DecodeError(f"cbor2 rejected the input: {exc!r}") from exc
    if reencoded != data:
        raise NonCanonical("input differs from the canonical encoding of its value")
    return obj


def decode_as(
    data: bytes, convert: Callable[[object], _T], what: str, max_size_bytes: int = MAX_MESSAGE_SIZE_BYTES
) -> _T:
    """Parse strictly, then convert; only ever a value or a `DecodeError`."""
    obj = parse(data, max_size_bytes)
    try:
        return convert(obj)
    except DecodeError:
        raise
    except Exception as exc:  # the checks in `convert` should make this unreachable; contain it anyway
        raise DecodeError(f"malformed {what}: {exc!r}") from exc


# ---------------------------------------------------------------------------------------------
# Checks on parsed values, for `convert` functions


def wrong(what: str, value: object) -> NoReturn:
    raise WrongType(f"{what}: unexpected {type(value).__name__}")


def array(obj: object, length: int, what: str) -> list[Any]:
    """`obj` as an array of exactly `length` elements."""
    if not isinstance(obj, list):
        wrong(what, obj)
    if len(obj) != length:
        raise WrongType(f"{what}: expected {length} elements, got {len(obj)}")
    return obj


def bounded_list(obj: object, max_len: int, what: str) -> list[Any]:
    """`obj` as an array of at most `max_len` elements."""
    if not isinstance(obj, list):
        wrong(what, obj)
    if len(obj) > max_len:
        raise WrongType(f"{what}: {len(obj)} elements exceeds the limit of {max_len}")
    return obj


def uint(obj: object, bound: int, what: str) -> int:
    """`obj` as an integer in [0, bound)."""
    # `type(...) is int` rather than isinstance: bool is an int subclass.
    if type(obj) is not int:
        wrong(what, obj)
    if not 0 <= obj < bound:
        raise WrongType(f"{what}: {obj} out of range [0, {bound})")
    return obj


def byte_string(obj: object, what: str, *, exact: int | None = None, max_len: int | None = None) -> bytes:
    """`obj` as a byte string of exactly `exact` or at most `max_len` bytes, if given."""
    if type(obj) is not bytes:
        wrong(what, obj)
    if exact is not None and len(obj) != exact:
        raise WrongType(f"{what}: expected {exact} bytes, got {len(obj)}")
    if max_len is not None and len(obj) > max_len:
        raise WrongType(f"{what}: {len(obj)} bytes exceeds the limit of {max_len}")
    return obj
