"""The one hash function the node uses.

Owns: `sha256`. May not: import anything beyond the stdlib, or offer other hash functions, so
that every digest in the system is computed the same way.
"""

import hashlib


def sha256(data: bytes) -> bytes:
    """Return the 32-byte SHA-256 digest of `data`."""
    return hashlib.sha256(data).digest()
