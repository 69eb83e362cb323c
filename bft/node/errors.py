"""The node package's error hierarchy.

Owns: the exceptions raised by `bft.node` for bad configuration and unusable storage.
May not: carry behaviour or import anything beyond the stdlib.
"""

from __future__ import annotations


class NodeError(Exception):
    """Base of the node's exceptions."""


class ConfigError(NodeError):
    """A config, genesis or cluster file is missing, malformed or inconsistent; the message says which."""


class StorageError(NodeError):
    """The block store refused a write that would break the chain, or its file is unusable."""
