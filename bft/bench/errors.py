"""The one error of `bft bench`.

Owns: `BenchError`, raised by every part of the benchmark for a run that cannot go on (bad
options, a cluster that does not come up, an unreachable target).
May not: import anything, so that every other module of the package can import it.
"""

from __future__ import annotations


class BenchError(Exception):
    """The benchmark cannot run: bad options, a cluster that does not come up, an unreachable target."""
