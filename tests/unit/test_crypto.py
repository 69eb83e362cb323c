"""Unit tests for the crypto package: keys, key files, signing, caches and quorum checks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crypto import certs, signing
from crypto.certs import SignedShare, VerifiedCertCache, check_signers, verify_quorum
from crypto.errors import CryptoError, KeyFileError
from crypto.hashing import sha256
from crypto.keys import PrivateKey, load_private_key, load_public_key, write_private_key
from crypto.signing import SignatureCache, Tag, sign, signing_bytes, verify

CHAIN = "testnet"
SEED = bytes(range(32))


def make_keys(n: int) -> list[PrivateKey]:
    return [PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(n)]


@pytest.fixture
def verify_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every real Ed25519 verification (by public key) made through `signing`."""
    calls: list[bytes] = []
    real = signing._ed25519_verify

    def counting(public_key: bytes, message: bytes, signature: bytes) -> bool:
        calls.append(public_key)
        return real(public_key, message, signature)

    monkeypatch.setattr(signing, "_ed25519_verify", counting)
    return calls


# --- hashing and keys -------------------------------------------------------------------


def test_sha256_known_vector() -> None:
    assert sha256(b"abc").hex() == ("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_from_seed_is_deterministic_and_round_trips() -> None:
    a, b = PrivateKey.from_seed(SEED), PrivateKey.from_seed(SEED)
    assert a.public_key == b.public_key
    assert len(a.public_key) == 32
    assert a.seed() == SEED
    assert a.sign(b"m") == b.sign(b"m")
    assert len(a.sign(b"m")) == 64
    assert PrivateKey.from_seed(bytes(32)).public_key != a.public_key


def test_generate_gives_distinct_keys() -> None:
    assert PrivateKey.generate().public_key != PrivateKey.generate().public_key


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33)])
def test_from_seed_rejects_wrong_length(seed: bytes) -> None:
    with pytest.raises(CryptoError):
        PrivateKey.from_seed(seed)


def test_repr_does_not_leak_seed() -> None:
    assert SEED.hex() not in repr(PrivateKey.from_seed(SEED))


def test_load_public_key_parses_and_rejects_wrong_length() -> None:
    key = PrivateKey.from_seed(SEED)
    parsed = load_public_key(key.public_key)
    parsed.verify(key.sign(b"m"), b"m")  # raises if the parsed key were wrong
    assert load_public_key(key.public_key) is parsed  # cached
    for raw in (b"", bytes(31), bytes(33)):
        with pytest.raises(CryptoError):
            load_public_key(raw)


# --- key files ---------------------------------------------------------------------------


def test_key_file_written_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    key = PrivateKey.from_seed(SEED)
    write_private_key(path, key)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_private_key(path).public_key == key.public_key
    assert path.read_text().splitlines() == ["bft-ed25519-private-key-v1", SEED.hex()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]  # no temp left over


def test_key_file_mode_is_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "k", PrivateKey.generate())
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o600


def test_overwrite_refused_by_default(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    first, second = PrivateKey.from_seed(SEED), PrivateKey.from_seed(bytes(32))
    write_private_key(path, first)
    with pytest.raises(KeyFileError, match="exists"):
        write_private_key(path, second)
    assert load_private_key(path).public_key == first.public_key
    write_private_key(path, second, overwrite=True)
    assert load_private_key(path).public_key == second.public_key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o610, 0o601])
def test_permissive_key_file_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    write_private_key(path, PrivateKey.from_seed(SEED))
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as info:
        load_private_key(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{mode:o}" in message
    assert f"chmod 600 {path}" in message


def test_owner_only_modes_accepted(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_private_key(path, PrivateKey.from_seed(SEED))
    os.chmod(path, 0o400)
    assert load_private_key(path).seed() == SEED


def test_missing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(KeyFileError, match=r"absent\.key"):
        load_private_key(path)


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        load_private_key(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"bft-ed25519-private-key-v1\n",
        b"bft-ed25519-private-key-v2\n" + SEED.hex().encode() + b"\n",
        b"bft-ed25519-private-key-v1\n" + SEED.hex().encode()[:-2] + b"\n",
        b"bft-ed25519-private-key-v1\n" + SEED.hex().encode() + b"00\n",
        b"bft-ed25519-private-key-v1\n" + b"zz" * 32 + b"\n",
        b"bft-ed25519-private-key-v1\n" + b" 1" * 32 + b"\n",
        b"bft-ed25519-private-key-v1\n" + SEED.hex().encode() + b"\nextra\n",
        b"\xff\xfe" * 40,
        b"x" * 10_000,
    ],
)
def test_malformed_key_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content)
    os.close(fd)
    with pytest.raises(KeyFileError, match=r"bad\.key"):
        load_private_key(path)


def test_key_file_without_trailing_newline_loads(tmp_path: Path) -> None:
    path = tmp_path / "k"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"bft-ed25519-private-key-v1\n" + SEED.hex().upper().encode())
    os.close(fd)
    assert load_private_key(path).seed() == SEED


# --- signing -----------------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    key = PrivateKey.from_seed(SEED)
    sig = sign(key, Tag.VOTE, CHAIN, b"block")
    assert len(sig) == 64
    assert verify(key.public_key, Tag.VOTE, CHAIN, b"block", sig)
    other = PrivateKey.from_seed(bytes(32))
    assert not verify(other.public_key, Tag.VOTE, CHAIN, b"block", sig)


def test_signature_is_over_signing_bytes() -> None:
    key = PrivateKey.from_seed(SEED)
    sig = sign(key, Tag.PROPOSAL, CHAIN, b"p")
    assert sig == key.sign(signing_bytes(Tag.PROPOSAL, CHAIN, b"p"))
    # A raw signature over the bare payload is not valid under any tag.
    assert not verify(key.public_key, Tag.PROPOSAL, CHAIN, b"p", key.sign(b"p"))


def test_domain_separation() -> None:
    key = PrivateKey.from_seed(SEED)
    sig = sign(key, Tag.VOTE, "x", b"payload")
    assert verify(key.public_key, Tag.VOTE, "x", b"payload", sig)
    for tag in (Tag.TIMEOUT, Tag.PROPOSAL, Tag.HANDSHAKE):
        assert not verify(key.public_key, tag, "x", b"payload", sig)
    assert not verify(key.public_key, Tag.VOTE, "y", b"payload", sig)
    assert not verify(key.public_key, Tag.VOTE, "x", b"payloaD", sig)
    assert not verify(key.public_key, Tag.VOTE, "x", b"", sig)


def test_signing_bytes_has_no_boundary_collisions() -> None:
    triples = [
        (Tag.VOTE, "ab", b"c"),
        (Tag.VOTE, "a", b"bc"),
        (Tag.VOTE, "", b"abc"),
        (Tag.VOTE, "abc", b""),
        (Tag.TIMEOUT, "ab", b"c"),
        (Tag.VOTE, "\x00\x00\x00\x02ab", b""),
        (Tag.VOTE, "é", b""),
        (Tag.VOTE, "e", b"\xcc\x81"),
    ]
    encoded = {signing_bytes(*t) for t in triples}
    assert len(encoded) == len(triples)


def test_tags_are_distinct_bytes() -> None:
    values = [t.value for t in Tag]
    assert len(set(values)) == len(values) == 5
    assert all(isinstance(v, bytes) for v in values)


@pytest.mark.parametrize(("pk_len", "sig_len"), [(0, 64), (31, 64), (33, 64), (32, 0), (32, 63), (32, 65)])
def test_verify_false_on_garbage_sizes(pk_len: int, sig_len: int) -> None:
    key = PrivateKey.from_seed(SEED)
    sig = sign(key, Tag.VOTE, CHAIN, b"m")
    pk = (key.public_key + bytes(8))[:pk_len]
    signature = (sig + bytes(8))[:sig_len]
    assert verify(pk, Tag.VOTE, CHAIN, b"m", signature) is False


def test_verify_false_on_garbage_bytes() -> None:
    key = PrivateKey.from_seed(SEED)
    sig = sign(key, Tag.VOTE, CHAIN, b"m")
    assert verify(b"\xff" * 32, Tag.VOTE, CHAIN, b"m", sig) is False
    assert verify(key.public_key, Tag.VOTE, CHAIN, b"m", b"\xff" * 64) is False
    assert verify(key.public_key, Tag.VOTE, CHAIN, b"m", bytes(64)) is False


# --- signature cache ---------------------------------------------------------------------


def test_cache_hit_skips_ed25519(verify_calls: list[bytes]) -> None:
    key = PrivateKey.from_seed(SEED)
    sig = sign(key, Tag.VOTE, CHAIN, b"m")
    cache = SignatureCache()
    assert verify(key.public_key, Tag.VOTE, CHAIN, b"m", sig, cache)
    assert len(verify_calls) == 1
    assert len(cache) == 1
    for _ in range(5):
        assert verify(key.public_key, Tag.VOTE, CHAIN, b"m", sig, cache)
    assert len(verify_calls) == 1
    # A hit is specific to the triple: another chain id is verified (and fails).
    assert not verify(key.public_key, Tag.VOTE, "other", b"m", sig, cache)
    assert len(verify_calls) == 2


def test_no_cache_means_every_verify_checks(verify_calls: list[bytes]) -> None:
    key = PrivateKey.from_seed(SEED)
    sig = sign(key, Tag.VOTE, CHAIN, b"m")
    for _ in range(3):
        assert verify(key.public_key, Tag.VOTE, CHAIN, b"m", sig)
    assert len(verify_calls) == 3


def test_cache_never_stores_failures(verify_calls: list[bytes]) -> None:
    key = PrivateKey.from_seed(SEED)
    bad = bytearray(sign(key, Tag.VOTE, CHAIN, b"m"))
    bad[0] ^= 1
    cache = SignatureCache()
    for _ in range(3):
        assert not verify(key.public_key, Tag.VOTE, CHAIN, b"m", bytes(bad), cache)
    assert len(cache) == 0
    assert len(verify_calls) == 3


def test_cache_is_bounded_and_lru(verify_calls: list[bytes]) -> None:
    key = PrivateKey.from_seed(SEED)
    cache = SignatureCache(max_entries=3)
    sigs = [sign(key, Tag.VOTE, CHAIN, bytes([i])) for i in range(4)]

    def check(i: int) -> None:
        assert verify(key.public_key, Tag.VOTE, CHAIN, bytes([i]), sigs[i], cache)

    for i in range(3):
        check(i)
    check(0)  # hit: 0 becomes most recently used
    assert len(verify_calls) == 3
    check(3)  # evicts 1, the least recently used
    assert len(cache) == 3
    assert len(verify_calls) == 4
    check(0)
    check(2)
    assert len(verify_calls) == 4
    check(1)  # evicted: verified again
    assert len(verify_calls) == 5
    assert len(cache) == 3


# --- quorum certificates -----------------------------------------------------------------


def shares_for(
    keys: list[PrivateKey], signers: list[int], payload: bytes = b"block", chain: str = CHAIN
) -> list[SignedShare]:
    return [SignedShare(i, payload, sign(keys[i], Tag.VOTE, chain, payload)) for i in signers]


@pytest.mark.parametrize(("n", "quorum"), [(4, 3), (7, 5)])
def test_exact_quorum_accepted(n: int, quorum: int) -> None:
    keys = make_keys(n)
    validators = [k.public_key for k in keys]
    assert verify_quorum(validators, quorum, Tag.VOTE, CHAIN, shares_for(keys, list(range(quorum)))) is None
    high = list(range(n - quorum, n))
    assert verify_quorum(validators, quorum, Tag.VOTE, CHAIN, shares_for(keys, high)) is None
    everyone = list(range(n))
    assert verify_quorum(validators, quorum, Tag.VOTE, CHAIN, shares_for(keys, everyone)) is None


@pytest.mark.parametrize(("n", "quorum"), [(4, 3), (7, 5)])
def test_too_few_signers_rejected(n: int, quorum: int) -> None:
    keys = make_keys(n)
    validators = [k.public_key for k in keys]
    shares = shares_for(keys, list(range(quorum - 1)))
    reason = verify_quorum(validators, quorum, Tag.VOTE, CHAIN, shares)
    assert reason == f"{quorum - 1} distinct signers, need {quorum}"
    assert verify_quorum(validators, quorum, Tag.VOTE, CHAIN, []) is not None


def test_duplicate_signer_rejected() -> None:
    keys = make_keys(4)
    validators = [k.public_key for k in keys]
    tripled = shares_for(keys, [2, 2, 2])
    assert verify_quorum(validators, 3, Tag.VOTE, CHAIN, tripled) == "duplicate signer 2"
    padded = shares_for(keys, [0, 1, 1])
    assert verify_quorum(validators, 3, Tag.VOTE, CHAIN, padded) == "duplicate signer 1"


def test_unknown_signer_rejected() -> None:
    keys = make_keys(5)
    validators = [k.public_key for k in keys[:4]]
    # Validator 4's key is real but not in the set; -1 would alias validator 3 if indexed.
    for outsider, signing_key in ((4, keys[4]), (9, keys[4]), (-1, keys[3])):
        outsider_share = SignedShare(outsider, b"block", sign(signing_key, Tag.VOTE, CHAIN, b"block"))
        shares = [*shares_for(keys, [0, 1]), outsider_share]
        assert verify_quorum(validators, 3, Tag.VOTE, CHAIN, shares) == (f"unknown signer {outsider}")


def test_signature_for_other_chain_rejected() -> None:
    keys = make_keys(4)
    validators = [k.public_key for k in keys]
    shares = shares_for(keys, [0, 2]) + shares_for(keys, [1], chain="other-chain")
    reason = verify_quorum(validators, 3, Tag.VOTE, CHAIN, shares)
    assert reason == "bad signature from validator 1"


def test_signature_over_other_message_rejected() -> None:
    keys = make_keys(4)
    validators = [k.public_key for k in keys]
    forged = SignedShare(1, b"block", sign(keys[1], Tag.VOTE, CHAIN, b"other block"))
    shares = [*shares_for(keys, [0, 2]), forged]
    assert verify_quorum(validators, 3, Tag.VOTE, CHAIN, shares) == ("bad signature from validator 1")


def test_signature_under_other_tag_rejected() -> None:
    keys = make_keys(4)
    validators = [k.public_key for k in keys]
    shares = shares_for(keys, [0, 1, 2])
    assert verify_quorum(validators, 3, Tag.TIMEOUT, CHAIN, shares) is not None


def test_one_bad_signature_among_enough_good_rejected() -> None:
    keys = make_keys(4)
    validators = [k.public_key for k in keys]
    shares = shares_for(keys, [0, 1, 2, 3])
    sig = bytearray(shares[3].signature)
    sig[10] ^= 0x40
    shares[3] = SignedShare(3, b"block", bytes(sig))
    assert verify_quorum(validators, 3, Tag.VOTE, CHAIN, shares) == ("bad signature from validator 3")


def test_signature_by_wrong_validator_rejected() -> None:
    keys = make_keys(4)
    validators = [k.public_key for k in keys]
    # Validator 0 signs but claims to be validator 3.
    shares = [
        *shares_for(keys, [0, 1]),
        SignedShare(3, b"block", shares_for(keys, [0])[0].signature),
    ]
    assert verify_quorum(validators, 3, Tag.VOTE, CHAIN, shares) == ("bad signature from validator 3")


def test_timeout_certificate_with_differing_payloads_accepted() -> None:
    keys = make_keys(4)
    validators = [k.public_key for k in keys]
    shares = [SignedShare(i, f"timeout high_qc={i}".encode(), b"") for i in range(3)]
    shares = [
        SignedShare(s.signer, s.payload, sign(keys[s.signer], Tag.TIMEOUT, CHAIN, s.payload)) for s in shares
    ]
    assert verify_quorum(validators, 3, Tag.TIMEOUT, CHAIN, shares) is None


def test_verify_quorum_uses_signature_cache(verify_calls: list[bytes]) -> None:
    keys = make_keys(4)
    validators = [k.public_key for k in keys]
    shares = shares_for(keys, [0, 1, 2])
    cache = SignatureCache()
    assert verify_quorum(validators, 3, Tag.VOTE, CHAIN, shares, cache) is None
    assert verify_quorum(validators, 3, Tag.VOTE, CHAIN, shares, cache) is None
    assert len(verify_calls) == 3


def test_verify_quorum_looks_up_check_signers_at_call_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = make_keys(4)
    validators = [k.public_key for k in keys]
    monkeypatch.setattr(certs, "check_signers", lambda *_: "patched")
    assert verify_quorum(validators, 3, Tag.VOTE, CHAIN, shares_for(keys, [0, 1, 2])) == "patched"


def test_check_signers_rules() -> None:
    assert check_signers([0, 1, 2], 4, 3) is None
    assert check_signers([3, 0, 2, 1], 4, 3) is None
    assert check_signers([0, 1, 9], 4, 3) == "unknown signer 9"
    assert check_signers([0, 1, 4], 4, 3) == "unknown signer 4"
    assert check_signers([-1, 0, 1], 4, 3) == "unknown signer -1"
    assert check_signers([0, 2, 2], 4, 3) == "duplicate signer 2"
    assert check_signers([0, 2], 4, 3) == "2 distinct signers, need 3"
    assert check_signers([], 4, 3) == "0 distinct signers, need 3"
    assert check_signers([0, True, 2], 4, 3) is not None


def test_impossible_quorum_is_a_bug() -> None:
    validators = [k.public_key for k in make_keys(4)]
    for quorum in (0, 5):
        with pytest.raises(ValueError):
            verify_quorum(validators, quorum, Tag.VOTE, CHAIN, [])


# --- verified certificate cache ----------------------------------------------------------


def test_verified_cert_cache_bounded_and_lru() -> None:
    cache = VerifiedCertCache(max_entries=3)
    digests = [sha256(bytes([i])) for i in range(5)]
    assert digests[0] not in cache
    for d in digests[:3]:
        cache.add(d)
    assert len(cache) == 3
    assert digests[0] in cache  # touch: 0 is now most recently used
    cache.add(digests[3])  # evicts 1
    assert len(cache) == 3
    assert digests[1] not in cache
    assert digests[0] in cache
    assert digests[2] in cache
    assert digests[3] in cache
    cache.add(digests[4])  # evicts 0 (least recently touched)
    assert digests[0] not in cache
    assert len(cache) == 3


def test_verified_cert_cache_default_bound() -> None:
    cache = VerifiedCertCache()
    for i in range(5000):
        cache.add(i.to_bytes(4, "big"))
    assert len(cache) == 4096
    assert (0).to_bytes(4, "big") not in cache
    assert (4999).to_bytes(4, "big") in cache
