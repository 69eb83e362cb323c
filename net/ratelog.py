"""Log lines thinned per key, so that a flood of refusals cannot rotate a node's log away.

Owns: `RateLimitedLog` and its defaults (`LOG_WINDOW_S`, `LOG_MAX_KEYS`). May not: count events
for metrics (callers keep the exact counters; this only decides which lines are written), decide
what is logged, or import anything beyond the stdlib. It lives in `net` because the transport
needs it and `net` may not import `bft`; `bft.node.logs` re-exports it for the node.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final

# A key (kind and source) logs at most one line per window; the others are counted.
LOG_WINDOW_S: Final = 5.0
# Keys remembered; the oldest is forgotten beyond this (its count logged first).
LOG_MAX_KEYS: Final = 1024
_BARE = re.compile(r"[A-Za-z0-9_.:/@+\-]+")


class RateLimitedLog:
    """Log lines thinned per key: the first line of a key in a window is written, the rest of
    that window are counted, and the next line written for the key says how many were left out
    (`suppressed=N`). Why: a peer that floods us with bad messages would otherwise write tens of
    thousands of lines a second and rotate the node's history away. Metrics, not the log, keep
    the exact counts. Memory is bounded by `max_keys`: an attacker choosing many keys (source
    addresses) only makes the oldest keys be forgotten, each with one `log_suppressed` line if
    it had left lines out."""

    def __init__(
        self,
        logger: logging.Logger,
        window_s: float = LOG_WINDOW_S,
        max_keys: int = LOG_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s < 0 or max_keys < 1:
            raise ValueError("need window_s >= 0 and max_keys >= 1")
        self._logger = logger
        self._window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        # key -> (when its window ends, lines left out in it)
        self._keys: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def log(self, level: int, key: Hashable, line: str | Callable[[], str]) -> bool:
        """Write `line` unless `key` already wrote one in this window; whether it was written.
        `line` may be a function making it, called only when it is written (a flood's refusals
        then cost no formatting)."""
        now = self._clock()
        known = self._keys.get(key)
        if known is not None and now < known[0]:
            self._keys[key] = (known[0], known[1] + 1)
            return False
        left_out = known[1] if known is not None else 0
        text = line() if callable(line) else line
        self._logger.log(level, text + (f" suppressed={left_out}" if left_out else ""))
        self._keys[key] = (now + self._window_s, 0)
        self._keys.move_to_end(key)
        while len(self._keys) > self._max_keys:
            old, (_, count) = self._keys.popitem(last=False)
            if count:
                text = str(old)
                shown = text if _BARE.fullmatch(text) else json.dumps(text)
                self._logger.log(level, f"event=log_suppressed key={shown} suppressed={count}")
        return True
