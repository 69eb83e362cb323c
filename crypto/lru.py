"""A bounded least-recently-used set of digests: the storage behind the verification caches.

Owns: LruSet.
May not: decide what goes in; callers add only digests of things that verified.
"""

from __future__ import annotations

from collections import OrderedDict


class LruSet:
    """At most `max_entries` digests; a hit marks the digest recently used, `add` evicts the least
    recently used when full. Not thread-safe (single-threaded trio callers)."""

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._entries: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, bytes) or digest not in self._entries:
            return False
        self._entries.move_to_end(digest)
        return True

    def add(self, digest: bytes) -> None:
        self._entries[digest] = None
        self._entries.move_to_end(digest)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
