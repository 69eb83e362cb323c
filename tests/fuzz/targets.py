"""Fuzz targets: every decoder that a stranger, a peer or a client can reach with arbitrary bytes.

Owns: one plain function per target, `def <name>(data: bytes) -> None`, the `TARGETS` table, the
seed inputs of each target (`seeds`), and the oracles. A target returns normally on any input the
product handles as it promises (a value, or the refusal it documents, caught by its exact type);
it raises AssertionError, or lets an unexpected exception escape, only on a real bug.
May not: keep state between calls that changes what a later call does (a target is a pure function
of its input, so a crash replays from its file), sleep, touch the network or the disk beyond an
in-memory database, or import atheris (`run.py` does; CI replays the corpus without it).

Structure: several targets read their input as a small program (`_Reader`): which mode, then
where to mutate a valid byte stream (a real handshake, sealed frames), then how to chunk it. A
random mutation of a valid handshake reaches the signature checks; raw bytes alone almost never
get past the first length check.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import string
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Final
from urllib.parse import unquote

import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from starlette.exceptions import HTTPException
from starlette.requests import Request

from bft.app.kv import KeyValueLedger
from bft.core import cbor, wire
from bft.core.batches import Batch, BatchAck, BatchProof, BatchProofs, BatchRequest, BatchResponse
from bft.core.blocktree import genesis
from bft.core.errors import DecodeError
from bft.core.ids import block_array
from bft.core.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Message,
    Proposal,
    QuorumCert,
    RecoveryProbe,
    RecoveryReport,
    SafetyState,
    SyncInfo,
    SyncRequest,
    SyncResponse,
    Timeout,
    TimeoutCert,
    Vote,
)
from bft.core.types import BlockId, ValidatorIndex, View
from bft.node import api
from bft.node.api_json import b64, evidence_json
from bft.node.commits import CommitFeed
from bft.node.gossip import Transactions, decode_frame, encode_transactions
from bft.node.health import Health, assess_health
from bft.node.operator_views import CertRef, ConsensusState, NetInfo, PeerInfo, PendingTxs
from bft.node.runtime import read_kv
from bft.node.storage import StoredEvidence
from crypto.keys import PrivateKey
from net.errors import FrameError, FrameTruncated, HandshakeRefused, RefusalKind
from net.frames import LENGTH_BYTES, FrameOpener, FrameSealer
from net.handshake import DialerHandshake, HandshakeResult, ListenerHandshake

Target = Callable[[bytes], None]

CHAIN: Final = "fuzz-chain"
KEYS: Final = [PrivateKey.from_seed(bytes([i + 1]) * 32) for i in range(4)]
VALIDATORS: Final = {k.public_key: i for i, k in enumerate(KEYS)}
LISTENER_KEY, DIALER_KEY = KEYS[0], KEYS[1]
# Fixed ephemeral keys: the honest handshake is the same bytes every run, so a mutation of it is
# a deterministic input. (A real node draws fresh ones; that is what makes a replay useless there.)
_LISTENER_EPHEMERAL: Final = bytes(range(32, 64))
_DIALER_EPHEMERAL: Final = bytes(range(64, 96))
# Small enough that the fuzzer can announce a frame above the cap with a one-byte change.
FRAME_CAP_BYTES: Final = 4096
FRAME_KEY: Final = bytes(range(32))
# What the honest sealer sends, in order: empty, tiny, mid-sized, and one frame exactly at the cap.
FRAME_PAYLOADS: Final = (b"", b"p", bytes(range(256)) * 2, b"x" * (FRAME_CAP_BYTES - 16))


class _Reader:
    """Consumes a fuzzer input as a sequence of small decisions; past the end every read is 0 or
    empty, so every input, however short, is a complete program."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def byte(self) -> int:
        if self._pos >= len(self._data):
            return 0
        self._pos += 1
        return self._data[self._pos - 1]

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()

    def take(self, n: int) -> bytes:
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def sized(self) -> bytes:
        """A byte string preceded by its one-byte length."""
        return self.take(self.byte())

    def rest(self) -> bytes:
        return self.take(len(self._data))


def _mutate(base: bytes, r: _Reader) -> bytes:
    """Apply up to three edits chosen by `r` to `base`: flip a bit, overwrite, insert, delete,
    truncate, or keep. Offsets wrap around the current length, so every edit lands somewhere."""
    out = bytearray(base)
    for _ in range(1 + r.byte() % 3):
        op = r.byte() % 6
        at = r.u16() % (len(out) + 1)
        if op == 0 and at < len(out):
            out[at] ^= 1 << (r.byte() % 8)
        elif op == 1:
            patch = r.sized()
            out[at : at + len(patch)] = patch
        elif op == 2:
            out[at:at] = r.sized()
        elif op == 3:
            del out[at : at + 1 + r.byte()]
        elif op == 4:
            del out[at:]
    return bytes(out)


def _chunks(stream: bytes, r: _Reader) -> Iterator[bytes]:
    """`stream` cut into pieces of one fuzzer-chosen size (0 = all at once)."""
    step = r.byte()
    if step == 0:
        yield stream
        return
    for at in range(0, len(stream), step):
        yield stream[at : at + step]


# ---------------------------------------------------------------------------------------------
# CBOR and the wire format


def _only_subset(obj: object, depth: int = 0) -> None:
    assert depth <= cbor.MAX_DEPTH, "parse returned a value nested beyond MAX_DEPTH"
    if isinstance(obj, list):
        for item in obj:
            _only_subset(item, depth + 1)
    else:
        assert obj is None or type(obj) in (int, bytes), f"parse returned a {type(obj).__name__}"
        assert not isinstance(obj, int) or obj >= 0, "parse returned a negative integer"


_STORED_DECODERS: Final[tuple[tuple[Callable[[bytes], Any], Callable[[Any], bytes]], ...]] = (
    (wire.decode_block, wire.encode_block),
    (wire.decode_qc, wire.encode_qc),
    (wire.decode_tc, wire.encode_tc),
    (wire.decode_safety_state, wire.encode_safety_state),
)


def cbor_parse(data: bytes) -> None:
    """`cbor.parse` and the stored-record decoders (block, QC, TC, safety state): a value in the
    subset whose canonical encoding is exactly `data`, or a DecodeError."""
    try:
        obj = cbor.parse(data, cbor.MAX_MESSAGE_SIZE_BYTES)
    except DecodeError:
        obj = None
        parsed = False
    else:
        parsed = True
        _only_subset(obj)
        assert cbor.dumps(obj) == data, "accepted a non-canonical encoding"
    for decode, encode in _STORED_DECODERS:
        try:
            value = decode(data)
        except DecodeError:
            continue
        assert parsed, "a record decoder accepted bytes that cbor.parse refuses"
        assert encode(value) == data, f"{decode.__name__} accepted bytes that do not re-encode to themselves"


def wire_frame(data: bytes) -> None:
    """`bft.node.gossip.decode_frame`, which the node calls on every p2p payload (and through it
    `wire.decode`): a message that re-encodes to exactly `data`, or a DecodeError."""
    try:
        frame = decode_frame(data)
    except DecodeError:
        return
    encoded = encode_transactions(frame) if isinstance(frame, Transactions) else wire.encode(frame)
    assert encoded == data, f"decoded {type(frame).__name__} does not re-encode to its bytes"
    # A decoded message must be one the codec table knows, with fields in their ranges.
    assert type(frame) in {c.cls for c in wire.MESSAGE_CODECS} | {Transactions}


def _sample_batches() -> tuple[list[Batch], list[BatchProof]]:
    """Two batches of validator 1 and their proofs of availability (signatures are not checked
    by decoding, so any 64 bytes do)."""
    sig = bytes(range(64))
    batches = [
        Batch(ValidatorIndex(1), 1, 66, (b"tx-1", b"", b"\xff" * 40)),
        Batch(ValidatorIndex(1), 2, 66, (b"tx-4",)),
    ]
    proofs = [BatchProof(b.info, ((ValidatorIndex(0), sig), (ValidatorIndex(1), sig))) for b in batches]
    return batches, proofs


def _messages() -> list[Message]:
    """Valid messages of every type: a proposal and responses with blocks with and without
    proofs of availability (lean as proposed, full as served), and every quorum-store message."""
    block0, qc0 = genesis(CHAIN)
    sig = bytes(range(64))
    qc = QuorumCert(View(3), BlockId(b"\x11" * 32), ((ValidatorIndex(0), sig), (ValidatorIndex(2), sig)))
    tc = TimeoutCert(View(4), qc, ((ValidatorIndex(1), View(3), sig), (ValidatorIndex(3), View(2), sig)))
    block = Block(
        view=View(5),
        height=2,
        parent_id=BlockId(b"\x22" * 32),
        proposer=ValidatorIndex(1),
        qc=qc,
        txs=(b"tx-1", b"", b"\xff" * 40),
        app_height=1,
        app_hash=b"\x33" * 32,
    )
    batches, proofs = _sample_batches()
    lean = Block(
        view=View(6),
        height=3,
        parent_id=block.id,
        proposer=ValidatorIndex(2),
        qc=qc,
        txs=(),
        app_height=2,
        app_hash=b"\x44" * 32,
        batches=tuple(proofs),
    )
    full = replace(lean, txs=tuple(tx for b in batches for tx in b.txs))
    return [
        Proposal(block=block, tc=None, signature=sig),
        Proposal(block=block, tc=tc, signature=sig),
        Vote(View(5), block.id, ValidatorIndex(2), sig),
        Timeout(View(6), qc, ValidatorIndex(3), sig),
        SyncInfo(qc, None),
        SyncInfo(qc0, tc),
        BlockRequest(BlockId(b"\x44" * 32), 16),
        BlockResponse((block, block0)),
        BlockResponse(()),
        SyncRequest(7, 256),
        SyncResponse((block,), qc),
        SyncResponse((), None),
        RecoveryProbe(bytes(range(wire.RECOVERY_NONCE_BYTES))),
        RecoveryReport(bytes(wire.RECOVERY_NONCE_BYTES), View(7), qc, tc),
        Proposal(block=lean, tc=None, signature=sig),
        BlockResponse((full, block)),
        SyncResponse((full,), qc),
        batches[0],
        BatchAck(batches[0].info, ValidatorIndex(3), sig),
        BatchProofs(tuple(proofs)),
        BatchProofs(()),
        BatchRequest(3, tuple(b.digest for b in batches)),
        BatchResponse(tuple(batches)),
        BatchResponse(()),
    ]


def _sample_messages() -> list[bytes]:
    """Valid encodings of every message type (and of gossip), the seeds of `wire_frame`."""
    out = [wire.encode(m) for m in _messages()]
    out.append(encode_transactions(Transactions((b"a", b"bc" * 30))))
    out.append(encode_transactions(Transactions(())))
    return out


def _sample_records() -> list[bytes]:
    block0, qc0 = genesis(CHAIN)
    state = SafetyState(View(9), qc0, View(8), b"vote-bytes", None)
    messages = _messages()
    sync = next(m for m in messages if isinstance(m, SyncResponse) and m.qc is not None)
    assert sync.qc is not None
    tc = next(m for m in messages if isinstance(m, SyncInfo) and m.high_tc is not None)
    assert tc.high_tc is not None
    lean = next(m.block for m in messages if isinstance(m, Proposal) and m.block.batches)
    full = next(b for m in messages if isinstance(m, BlockResponse) for b in m.blocks if b.batches)
    return [
        wire.encode_block(block0),
        wire.encode_block(sync.blocks[0]),
        wire.encode_block(lean),
        wire.encode_block(full),
        wire.encode_qc(sync.qc),
        wire.encode_tc(tc.high_tc),
        wire.encode_safety_state(state),
        cbor.dumps(block_array(block0)[:3]),
        cbor.dumps([*block_array(block0), []]),  # an empty list of proofs: refused
        bytes([0x9F, 0x01, 0xFF]),  # indefinite array
        bytes([0x1B]) + (2**64 - 1).to_bytes(8, "big"),
        bytes([0x81] * 12) + b"\x00",  # too deep
    ]


# ---------------------------------------------------------------------------------------------
# The handshake


def _listener() -> ListenerHandshake:
    ephemeral = X25519PrivateKey.from_private_bytes(_LISTENER_EPHEMERAL)
    return ListenerHandshake(LISTENER_KEY, CHAIN, VALIDATORS, ephemeral=ephemeral)


def _dialer() -> DialerHandshake:
    ephemeral = X25519PrivateKey.from_private_bytes(_DIALER_EPHEMERAL)
    return DialerHandshake(DIALER_KEY, CHAIN, LISTENER_KEY.public_key, ephemeral=ephemeral)


def _honest_handshake() -> tuple[bytes, bytes, bytes, HandshakeResult, HandshakeResult]:
    """(HELLO frame, REPLY frame, FINISH frame, the dialer's result, the listener's result)."""
    dialer, listener = _dialer(), _listener()
    hello = dialer.start()
    reply = listener.feed(hello)
    finish = dialer.feed(reply)
    assert listener.feed(finish) == b""
    assert dialer.result is not None and listener.result is not None
    return hello, reply, finish, dialer.result, listener.result


HELLO, REPLY, FINISH, DIALER_RESULT, LISTENER_RESULT = _honest_handshake()


def _drive(
    machine: ListenerHandshake | DialerHandshake, stream: bytes, r: _Reader
) -> tuple[bytes, bytes, HandshakeResult | None]:
    """Feed `stream` in chunks until the machine completes or refuses; (bytes fed, bytes it
    answered, result). A refusal poisons the machine: the next feed must refuse the same way."""
    fed, answered = b"", b""
    for chunk in _chunks(stream, r):
        fed += chunk
        try:
            answered += machine.feed(chunk)
        except HandshakeRefused as refusal:
            assert refusal.kind in RefusalKind and refusal.reason == str(refusal)
            assert machine.result is None, "refused after completing"
            try:
                machine.feed(b"")
            except HandshakeRefused as again:
                assert again.kind is refusal.kind, "a refused handshake changed its reason"
            else:
                raise AssertionError("a refused handshake accepted more input") from None
            return fed, answered, None
        if machine.result is not None:
            return fed, answered, machine.result
    return fed, answered, None


def _check_completion(
    result: HandshakeResult, fed: bytes, honest_stream: bytes, honest: HandshakeResult
) -> None:
    """Nobody but the honest peer holds the keys, so a completed handshake must be the honest one,
    byte for byte, with whatever followed it handed on as leftover."""
    assert result.peer_public_key == honest.peer_public_key, "authenticated a key that never signed"
    assert result.transcript_hash == honest.transcript_hash, "completed a handshake nobody signed"
    assert (result.send_key, result.receive_key) == (honest.send_key, honest.receive_key)
    assert fed == honest_stream + result.leftover, "completed on bytes other than the signed ones"


def handshake_listener(data: bytes) -> None:
    """`ListenerHandshake.feed` on what a dialer sends: mode 0 raw bytes, else a mutation of a
    real dialer's HELLO + FINISH. Only HandshakeRefused; a result only for the honest dialer."""
    r = _Reader(data)
    honest = HELLO + FINISH
    stream = r.rest() if r.byte() % 4 == 0 else _mutate(honest, r)
    listener = _listener()
    fed, answered, result = _drive(listener, stream, r)
    if listener.peer_index is not None:
        assert listener.peer_index in VALIDATORS.values()
        # Empty when the same feed went on to refuse FINISH: a refusing feed returns nothing. Else
        # the one REPLY, whose signature covers the HELLO it answers (a changed ephemeral key in
        # HELLO, which the dialer does not sign, changes it).
        signature_at = len(REPLY) - 64
        assert answered == b"" or answered[:signature_at] == REPLY[:signature_at], "answered a bad REPLY"
    if result is not None:
        _check_completion(result, fed, honest, LISTENER_RESULT)


def handshake_dialer(data: bytes) -> None:
    """`DialerHandshake.feed` on what a listener sends: mode 0 raw bytes, else a mutation of a
    real listener's REPLY. Only HandshakeRefused; a result only for the expected listener."""
    r = _Reader(data)
    stream = r.rest() if r.byte() % 4 == 0 else _mutate(REPLY, r)
    dialer = _dialer()
    assert dialer.start() == HELLO
    fed, answered, result = _drive(dialer, stream, r)
    if result is not None:
        assert answered == FINISH
        _check_completion(result, fed, REPLY, DIALER_RESULT)
    else:
        assert answered == b"", "sent FINISH without completing"


# ---------------------------------------------------------------------------------------------
# Encrypted frames


def _sealed(payloads: tuple[bytes, ...]) -> bytes:
    sealer = FrameSealer(FRAME_KEY, FRAME_CAP_BYTES)
    return b"".join(sealer.seal(p) for p in payloads)


SEALED_STREAM: Final = _sealed(FRAME_PAYLOADS)


def frame_opener(data: bytes) -> None:
    """`FrameOpener.feed` on a stream: mode 0 raw bytes, 1 a round trip of fuzzer-chosen payloads,
    else a mutation of honestly sealed frames. Only FrameError; every payload it returns is the
    one the sealer sent at that position (anything else is a forgery); never more than one
    partial frame buffered; once failed, failed for good."""
    r = _Reader(data)
    mode = r.byte() % 4
    if mode == 1:
        payloads = tuple(r.take(r.u16() % (FRAME_CAP_BYTES - 15)) for _ in range(1 + r.byte() % 4))
        stream = _sealed(payloads)
    else:
        payloads = FRAME_PAYLOADS
        stream = r.rest() if mode == 0 else _mutate(SEALED_STREAM, r)
    opener = FrameOpener(FRAME_KEY, FRAME_CAP_BYTES)
    opened: list[bytes] = []
    failed = False
    for chunk in _chunks(stream, r):
        try:
            opened += opener.feed(chunk)
        except FrameError:
            failed = True
            break
        assert opened == list(payloads[: len(opened)]), "opened a payload the sealer never sent there"
        assert opener.buffered_bytes <= LENGTH_BYTES + FRAME_CAP_BYTES, "buffered beyond one frame"
    if failed:
        # (close() after a failure is a no-op: the stream is already known to be broken.)
        try:
            opener.feed(b"")
        except FrameError:
            return
        raise AssertionError("a failed stream accepted another feed")
    buffered = opener.buffered_bytes
    try:
        opener.close()
    except FrameTruncated:
        assert buffered > 0, "close() called a stream truncated with nothing buffered"
    else:
        assert buffered == 0, "close() accepted a stream that ended inside a frame"
    if mode == 1:
        assert opened == list(payloads), "a sealed stream did not open to its payloads"


# ---------------------------------------------------------------------------------------------
# HTTP API: the parsing helpers


def _query_request(query_string: bytes) -> Request:
    return Request(
        {"type": "http", "method": "GET", "path": "/", "query_string": query_string, "headers": []}
    )


def _expect_refusal(exc: HTTPException, statuses: tuple[int, ...]) -> None:
    assert exc.status_code in statuses, f"refused with {exc.status_code}"
    assert isinstance(exc.detail, str) and exc.detail


def api_parse(data: bytes) -> None:
    """`parse_submission`, `_strict_b64` and `_query_int` on arbitrary bytes: a value that means
    the same as the input, or an HTTPException 400 (413 for too many transactions), never
    anything else. Mode 0 parse_submission, 1 _strict_b64 of a JSON string, 2 _query_int."""
    mode, rest = (data[0] % 3, data[1:]) if data else (0, b"")
    if mode == 0:
        try:
            txs, wait_commit = api.parse_submission(rest)
        except HTTPException as exc:
            _expect_refusal(exc, (400, 413))
            return
        assert txs and len(txs) <= api.MAX_TXS_PER_REQUEST and all(type(t) is bytes for t in txs)
        again = json.dumps({"txs": [b64(t) for t in txs], "wait": "commit" if wait_commit else "none"})
        assert api.parse_submission(again.encode()) == (txs, wait_commit)
    elif mode == 1:
        # Through json.loads, as the API sees it: "\ud800" escapes give lone surrogates.
        try:
            text: object = json.loads(rest)
        except (ValueError, RecursionError):
            text = rest.decode("latin-1")
        try:
            decoded = api._strict_b64(text, "tx")
        except HTTPException as exc:
            _expect_refusal(exc, (400,))
            return
        assert isinstance(text, str) and b64(decoded) == text
        assert base64.b64decode(text, validate=True) == decoded
    else:
        try:
            value = api._query_int(_query_request(rest), "limit", 1, 100)
        except HTTPException as exc:
            _expect_refusal(exc, (400,))
            return
        except (UnicodeDecodeError, binascii.Error) as exc:  # pragma: no cover - a bug if reached
            raise AssertionError(f"query parsing raised {exc!r}") from exc
        assert value is None or 1 <= value <= 100


# ---------------------------------------------------------------------------------------------
# HTTP API: the whole ASGI app


_LEDGER_VALUES: Final = {"colour": "blue", "a/b": "slash", "ключ": "значение"}


def _ledger() -> KeyValueLedger:
    ledger = KeyValueLedger.over(sqlite3.connect(":memory:", check_same_thread=False), "fuzz")
    txs = [json.dumps({"op": "put", "key": k, "value": v}).encode() for k, v in _LEDGER_VALUES.items()]
    ledger.execute_block(1, txs)
    ledger.commit()
    return ledger


class _FuzzNode:
    """A NodeView with the shapes of the runtime's answers, the real key-value ledger behind
    `/kv` (read only) and a real CommitFeed. `reset` before each request: no state carries over."""

    def __init__(self) -> None:
        self.ledger = _ledger()
        self.feed = CommitFeed(max_subscribers=2)
        self.block_id = genesis(CHAIN)[0].id.hex()
        self.evidence_rows = [
            StoredEvidence(s, "vote", s % 4, 10 + s, b"a%d" % s, b"b%d" % s) for s in (1, 2, 3)
        ]

    def reset(self) -> None:
        self.feed = CommitFeed(max_subscribers=2)

    def status(self) -> dict[str, Any]:
        return {
            "node": 0,
            "chain_id": CHAIN,
            "view": 1,
            "height": 1,
            "leader": 1,
            "last_block_id": self.block_id,
        }

    def snapshots(self) -> list[dict[str, Any]]:
        return []

    def snapshot_chunk(self, height: int, format: int, index: int) -> bytes | None:
        return None

    def snapshot_txs(self, height: int, after: bytes) -> bytes | None:
        return None

    def pruned_below(self) -> int:
        return 1

    def block(self, height: int) -> dict[str, Any] | None:
        return {"height": 1, "id": self.block_id, "txs": []} if height == 1 else None

    async def submit(self, txs: list[bytes], wait_commit: bool) -> tuple[list[dict[str, Any]], bool]:
        await trio.lowlevel.checkpoint()
        return [{"hash": tx[:32].hex(), "status": "accepted"} for tx in txs], False

    def tx(self, h: bytes) -> dict[str, Any] | None:
        return None

    def kv(self, key: str) -> dict[str, Any]:
        return read_kv(self.ledger, key)

    async def wait_height(self, height: int, timeout_s: float) -> int:
        await trio.lowlevel.checkpoint()
        return 0

    def evidence(self, limit: int, before: int | None) -> list[dict[str, Any]]:
        rows = [e for e in reversed(self.evidence_rows) if before is None or e.seq < before]
        return [evidence_json(e) for e in rows[:limit]]

    def health(self) -> Health:
        return assess_health(
            validators=4, quorum=3, connected_peers=1, height=1, last_commit_age_s=0.5, window_s=5.0
        )

    def net_info(self) -> NetInfo:
        peer = PeerInfo(1, "127.0.0.1:2", True, "them", "127.0.0.1:3", 1.5, 10, 20, 0, 0, 0, 0, 0, 0)
        return NetInfo(("127.0.0.1:1",), (peer,))

    def consensus_state(self) -> ConsensusState:
        qc = CertRef(0, bytes(32))
        return ConsensusState(1, 0.5, 0.5, 1, ((2, 1), (3, 2)), 0, qc, qc, 0, None, (0,), 1, 3)

    def unconfirmed_txs(self, limit: int) -> PendingTxs:
        return PendingTxs(2, 10, (bytes(32), b"\x01" * 32)[:limit])

    def render_metrics(self) -> bytes:
        return b"bft_committed_height 1.0\n"

    def subscribe(self, on_drop: Callable[[], None]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self.feed.subscribe(on_drop)


_METHODS: Final = ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "GET")
_PATHS: Final = (
    "/status",
    "/blocks/",
    "/txs",
    "/tx/",
    "/kv/",
    "/evidence",
    "/metrics",
    "/events",
    "/",
    "/health",
    "/net_info",
    "/consensus_state",
    "/unconfirmed_txs",
)
_HEADER_NAMES: Final = (b"content-length", b"content-type", b"host", b"transfer-encoding", b"accept")
_PRINTABLE: Final = string.printable.encode()
_NODE: _FuzzNode | None = None
_APP: Any = None


def _app() -> tuple[_FuzzNode, Any]:
    global _NODE, _APP
    if _NODE is None:
        _NODE = _FuzzNode()
        _APP = api.make_app(_NODE)
    return _NODE, _APP


def _scope(r: _Reader) -> tuple[dict[str, Any], list[bytes]]:
    """A request as hypercorn hands it to the app: the path percent-decoded from ASCII, the query
    string raw, lower-cased header names, and the body in chunks."""
    selector = r.byte()
    method = _METHODS[selector % len(_METHODS)]
    if selector >= 0xF0:
        method = r.sized().decode("latin-1").upper() or "GET"
    raw_path = _PATHS[r.byte() % len(_PATHS)].encode() + bytes(b & 0x7F for b in r.sized())
    path = unquote(raw_path.decode("ascii"))
    query = r.sized()
    headers = []
    for _ in range(r.byte() % 4):
        choice = r.byte()
        name = _HEADER_NAMES[choice % len(_HEADER_NAMES)] if choice < 0xF0 else r.sized().lower()
        value = r.sized()
        if choice & 1 and name == b"content-length":
            value = bytes(b for b in value if b in _PRINTABLE)
        headers.append((name, value))
    step = 1 + r.byte()
    body = r.rest()
    chunks = [body[at : at + step] for at in range(0, len(body), step)] or [b""]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    return scope, chunks


def asgi_app(data: bytes) -> None:
    """The whole API app on an arbitrary request: one response, 2xx or 4xx, a JSON
    `{"error": str}` for every refusal; never a 5xx and never an exception out of the app.
    Driven in process on trio with a virtual clock (the event stream's keepalive jumps)."""
    node, app = _app()
    node.reset()
    scope, chunks = _scope(_Reader(data))
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []
    answered = trio.Event()

    async def receive() -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        if pending:
            return pending.pop(0)
        # The client reads its answer, then goes away (so the outcome never depends on trio's
        # scheduling order: a disconnect before the answer would be a different request).
        await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        sent.append(message)
        if message["type"] == "http.response.body":
            answered.set()

    async def run() -> None:
        with trio.fail_after(120):  # virtual seconds: only a request that never ends reaches it
            await app(scope, receive, send)

    trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 1, f"{len(starts)} response starts"
    status = starts[0]["status"]
    assert 200 <= status < 500, f"{scope['method']} {scope['path']!r} answered {status}"
    headers = dict(starts[0].get("headers", []))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    content_type = headers.get(b"content-type", b"")
    if status >= 400:
        assert content_type == b"application/json", f"refusal {status} as {content_type!r}"
    if content_type == b"application/json" and scope["method"] != "HEAD":
        doc = json.loads(body)
        if status >= 400:
            assert isinstance(doc, dict) and isinstance(doc.get("error"), str), doc


# ---------------------------------------------------------------------------------------------
# The table and the seeds


TARGETS: Final[dict[str, Target]] = {
    "cbor": cbor_parse,
    "wire": wire_frame,
    "handshake_listener": handshake_listener,
    "handshake_dialer": handshake_dialer,
    "frames": frame_opener,
    "api_parse": api_parse,
    "asgi": asgi_app,
}


def _request(
    method: int,
    path: int,
    suffix: bytes = b"",
    query: bytes = b"",
    body: bytes = b"",
    headers: tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """An `asgi_app` input: the fields `_scope` reads, in order; a header is (name choice, value)."""
    out = bytes([method, path, len(suffix)]) + suffix + bytes([len(query)]) + query + bytes([len(headers)])
    for choice, value in headers:
        out += bytes([choice, len(value)]) + value
    return out + bytes([255]) + body


def seeds(name: str) -> list[bytes]:
    """Starting inputs for `name`: valid encodings and each mode of a structured target."""
    if name == "cbor":
        return _sample_records() + _sample_messages()[:4]
    if name == "wire":
        return _sample_messages()
    if name in ("handshake_listener", "handshake_dialer"):
        honest = HELLO + FINISH if name == "handshake_listener" else REPLY
        # keep; flip one bit at 40 and at 100; overwrite the ephemeral key with zeros; raw; chunks of 7.
        return [
            b"\x01\x00\x05\x00\x00\x00",
            b"\x01\x00\x00\x00\x28\x03",
            b"\x01\x00\x00\x00\x64\x07",
            b"\x01\x00\x01\x00\x47\x20" + bytes(32),
            b"\x00" + honest,
            b"\x01\x00\x05\x00\x00\x00\x07",
        ]
    if name == "frames":
        return [
            b"\x02\x00\x05\x00\x00\x00",
            b"\x02\x00\x00\x00\x10\x01",
            b"\x02\x00\x04\x02\x00\x00\x0d",
            b"\x01\x01\x00\x10" + b"q" * 16 + b"\x00\x05",
            b"\x00" + SEALED_STREAM[:64],
        ]
    if name == "api_parse":
        return [
            b"\x00" + json.dumps({"txs": [b64(b"tx"), b64(b"")], "wait": "commit"}).encode(),
            b'\x00{"txs": ["aGk="], "txs": []}',
            b"\x01" + json.dumps(b64(b"\x00\xff\xfe")).encode(),
            b'\x01"aGk"',
            b"\x02limit=7",
            b"\x02limit=7&limit=8",
        ]
    if name == "asgi":
        txs = json.dumps({"txs": [b64(b"tx-1")], "wait": "none"}).encode()
        return [
            _request(0, 0),
            _request(0, 1, b"1"),
            _request(0, 1, b"12345678901234567890"),
            _request(1, 2, body=txs, headers=((1, b"application/json"), (0, str(len(txs)).encode()))),
            _request(1, 2, body=b'{"txs": [1]}'),
            _request(0, 3, b"00" * 32),
            _request(0, 4, b"colour"),
            _request(0, 4, b"%D0%BA%D0%BB%D1%8E%D1%87"),
            _request(0, 5, query=b"limit=2&before=3"),
            _request(0, 6),
            _request(0, 7),
            _request(3, 0),
            _request(0, 8, b"nowhere"),
        ]
    raise KeyError(name)
