"""Exception types of the crypto package.

Owns: the exception hierarchy raised by `crypto`. May not: carry behaviour or import anything
beyond the stdlib.
"""


class CryptoError(Exception):
    """A key or signature could not be constructed from the bytes given."""


class KeyFileError(CryptoError):
    """A key file is missing, malformed, unsafe (too permissive), or could not be written."""
