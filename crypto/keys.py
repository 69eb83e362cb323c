"""Ed25519 key material: in-memory private keys, public-key parsing and private-key files.

Owns: `PrivateKey`, `load_public_key`, and the on-disk private key format
(`write_private_key` / `load_private_key`). May not: know about messages, tags or chain ids
(that is `signing`), or import anything beyond the stdlib and `cryptography`.

Key file format (ASCII, exactly two lines, trailing newline optional):

    bft-ed25519-private-key-v1
    <64 lowercase or uppercase hex digits: the 32-byte seed>
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import stat

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from crypto.errors import CryptoError, KeyFileError

SEED_LEN = 32
PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64

_KEY_FILE_HEADER = "bft-ed25519-private-key-v1"
# A well-formed file is ~92 bytes; the cap keeps a wrong path (say, a log) from being slurped.
_KEY_FILE_MAX_BYTES = 4096


class PrivateKey:
    """An Ed25519 signing key together with its raw 32-byte public key.

    Contract: `public_key` is computed once at construction; `sign` is deterministic (Ed25519)
    and returns 64 bytes. The seed never appears in `repr`.
    """

    __slots__ = ("_key", "_public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self._public_key = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def generate(cls) -> PrivateKey:
        """Return a fresh key from the OS CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> PrivateKey:
        """Return the key determined by a 32-byte seed; CryptoError for anything else."""
        if not isinstance(seed, bytes) or len(seed) != SEED_LEN:
            raise CryptoError(f"an Ed25519 seed is {SEED_LEN} bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        """Return the 32-byte seed; `PrivateKey.from_seed(k.seed())` is the same key."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        return self._public_key

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of `data` (no domain separation: see signing)."""
        return self._key.sign(data)

    def __repr__(self) -> str:
        return f"PrivateKey(public_key={self._public_key.hex()})"


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    """Parse a raw 32-byte Ed25519 public key; CryptoError if it is not one.

    Results are cached (a validator set is small and its keys are parsed on every verify);
    refusals are not cached, so garbage cannot evict real keys.
    """
    if len(raw) != PUBLIC_KEY_LEN:
        raise CryptoError(f"an Ed25519 public key is {PUBLIC_KEY_LEN} bytes, got {len(raw)}")
    # bytes() so that a bytearray (unhashable) still works with the cache.
    return _load_public_key_cached(bytes(raw))


@functools.lru_cache(maxsize=4096)
def _load_public_key_cached(raw: bytes) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise CryptoError(f"invalid Ed25519 public key: {exc}") from exc


def write_private_key(path: str | os.PathLike[str], key: PrivateKey, *, overwrite: bool = False) -> None:
    """Atomically write `key` to `path`, readable by the owner only.

    Contract: the file never exists with a mode wider than 0600 (the temp file is created
    0600; umask can only narrow it) and never exists half-written (temp file in the same
    directory, fsync, rename, fsync the directory). Without `overwrite`, an existing `path`
    is refused with KeyFileError and left untouched. I/O failures raise KeyFileError.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    tmp = os.path.join(directory, f".{os.path.basename(target)}.{secrets.token_hex(8)}.tmp")
    content = f"{_KEY_FILE_HEADER}\n{key.seed().hex()}\n".encode("ascii")
    if not overwrite and os.path.lexists(target):
        raise KeyFileError(f"{target}: already exists; refusing to overwrite a private key")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, content)
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, target)
        else:
            # link() fails if the target appeared since the check above: no-clobber, atomically.
            os.link(tmp, target)
            os.unlink(tmp)
        _fsync_dir(directory)
    except FileExistsError as exc:
        raise KeyFileError(f"{target}: already exists; refusing to overwrite a private key") from exc
    except OSError as exc:
        raise KeyFileError(f"{target}: cannot write private key: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync_dir(directory: str) -> None:
    # Makes the rename itself durable, not just the file's contents.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_private_key(path: str | os.PathLike[str]) -> PrivateKey:
    """Read a key written by `write_private_key`.

    Contract: every failure is a KeyFileError naming the path: missing or unreadable file,
    not a regular file, mode granting group/other any access (the message gives the mode in
    octal and the `chmod 600` fix), or content not in the key file format.
    """
    target = os.fspath(path)
    try:
        fd = os.open(target, os.O_RDONLY)
    except OSError as exc:
        raise KeyFileError(f"{target}: cannot open private key: {exc}") from exc
    try:
        # fstat the open descriptor, so the mode checked is that of the file actually read.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{target}: private key is not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"{target}: private key has mode {mode:04o}, which lets group or others "
                f"access it; fix with: chmod 600 {target}"
            )
        raw = os.read(fd, _KEY_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f"{target}: cannot read private key: {exc}") from exc
    finally:
        os.close(fd)
    return PrivateKey.from_seed(_parse_key_file(target, raw))


def _parse_key_file(target: str, raw: bytes) -> bytes:
    malformed = KeyFileError(
        f"{target}: not a private key file (expected '{_KEY_FILE_HEADER}' then a hex seed)"
    )
    if len(raw) > _KEY_FILE_MAX_BYTES:
        raise malformed
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise malformed from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) != 2 or lines[0] != _KEY_FILE_HEADER:
        raise malformed
    seed_hex = lines[1]
    if len(seed_hex) != 2 * SEED_LEN or any(c not in "0123456789abcdefABCDEF" for c in seed_hex):
        raise malformed
    return bytes.fromhex(seed_hex)
