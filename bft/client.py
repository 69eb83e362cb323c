"""A client of a node's HTTP/JSON API: submit transactions, read the key-value ledger, and fetch
committed blocks whose commit it proves against the genesis validator set.

Owns: `Client` (blocking) and `AsyncClient` (trio or asyncio, through httpx), the error hierarchy
(`ClientError` and its subclasses), the typed results, and the reading and verification of every
response. Both clients share one set of pure request builders and response readers (`_Endpoints`,
`_Call`); they differ only in how they send a request. Transactions go in the JSON body of
`POST /txs`, or, with `binary=True`, in its binary body (the framing is `bft.txframe`'s).
May not: trust a node beyond what it checks. A certified block is not yet a committed one (in
chained HotStuff a certified block can be abandoned), so a block comes back as a `VerifiedBlock`
only after its commit is proven: its id is recomputed from its contents, its QC carries 2f+1 valid
signatures of distinct genesis validators over that id, its transactions are exactly the batches
its proofs of availability describe (if it has any; each proof signed by f+1 genesis validators),
and its commit proof links it by parent ids to a commit chain of consecutive views, of the
genesis' commit rule (a three-chain b <- b' <- b'', or a two-chain b <- b'; b is the block or a
descendant of it), whose last block is certified by a commit QC of 2f+1 genesis validators. Nor
may it hold protocol logic: blocks, ids, batches and QC and proof checks are `bft.core`'s,
transaction encoding is `bft.app.kv`'s, the API's JSON shapes are `bft.node.api_json`'s.

Errors: `NodeUnavailable` (no connection, timeout), `RequestRefused` (a 4xx/5xx with the node's
message), `BadResponse` (an answer that does not follow the API), and its subclass
`CertificateError` (a block that does not prove itself committed). A full mempool is not an error:
its transactions come back as rejected results with `retryable` set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

import httpx

from bft.app.interface import CODE_OK
from bft.app.kv import cas_tx, del_tx, put_tx
from bft.core.batches import BatchInfo, BatchProof, payload_error, split_payload
from bft.core.blocktree import genesis as genesis_of
from bft.core.certs import Certifier
from bft.core.commit_rule import DEFAULT_COMMIT_CHAIN, THREE_CHAIN, TWO_CHAIN, check_commit_chain
from bft.core.messages import Block, QuorumCert
from bft.core.types import BLOCK_ID_SIZE_BYTES, MAX_APP_HASH_SIZE_BYTES, BlockId, ValidatorIndex, View
from bft.core.wire import BATCH_DIGEST_SIZE_BYTES, MAX_BATCHES_PER_BLOCK, MAX_SIGNATURES
from bft.node.api_json import b64, block_json
from bft.node.config import Genesis
from bft.txframe import BINARY_MEDIA_TYPE, encode_binary_txs
from crypto.signing import SignatureCache

DEFAULT_TIMEOUT_S: Final = 30.0

WAIT_NONE: Final = "none"
WAIT_COMMIT: Final = "commit"
WAIT_MODES: Final = (WAIT_NONE, WAIT_COMMIT)

STATUS_ACCEPTED: Final = "accepted"
STATUS_COMMITTED: Final = "committed"
STATUS_REJECTED: Final = "rejected"
STATUSES: Final = frozenset({STATUS_ACCEPTED, STATUS_COMMITTED, STATUS_REJECTED})

# The node's exact error for a transaction refused because its mempool is full (HTTP 503).
MEMPOOL_FULL: Final = "mempool full"

# Views, heights and indices fit a signed 64-bit integer, as in `bft.core.wire`.
_MAX_UINT: Final = 2**63
_HASH_RE: Final = re.compile(r"[0-9a-f]{64}")
_HEX_RE: Final = re.compile(r"(?:[0-9a-f]{2})*")
# How much of a refusal's body ends up in an error message.
_MAX_MESSAGE_CHARS: Final = 300

# The most blocks a commit proof may list. A proof reaches from the block up to the last block of
# the commit chain that committed it: a few blocks, unless views failed to follow each other for a
# long stretch before that commit. Longer proofs are refused rather than rebuilt and hashed block
# by block.
MAX_COMMIT_PROOF_BLOCKS: Final = 1000

# Each commit rule's name and the blocks of its chain above b, as the refusals name them.
_RULE_NAMES: Final = {THREE_CHAIN: ("three-chain", "b' and b''"), TWO_CHAIN: ("two-chain", "b'")}

_T = TypeVar("_T")


# Errors


class ClientError(Exception):
    """Anything that kept a request from giving an answer that can be trusted."""


class NodeUnavailable(ClientError):
    """The node could not be reached, or did not answer in time."""


class RequestRefused(ClientError):
    """The node answered with an HTTP error status (other than a full mempool on submit)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"the node refused the request (HTTP {status_code}): {message}")
        self.status_code = status_code
        self.message = message


class BadResponse(ClientError):
    """The node's answer does not follow the API (not JSON, missing or malformed fields...)."""


class CertificateError(BadResponse):
    """A block that does not prove itself committed: malformed, an id that is not the hash of its
    contents, transactions that are not the batches its proofs of availability describe, a proof
    of availability without f+1 valid signatures of genesis validators, a QC that does not
    certify it with 2f+1 valid signatures of genesis validators, or a commit proof that is
    missing, broken, not a commit chain of consecutive views of the genesis' rule (a three-chain
    or a two-chain), or not closed by a valid commit QC."""


class _Invalid(Exception):
    """A problem in a response, phrased without the request; `_Call` names the request."""


# Results


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What the node did with one submitted transaction.

    `retry_after_s` is the node's `Retry-After` hint, set on results refused by a full mempool.
    A committed transaction is in the chain at `height` (position `index` in its block), and
    `code` is what the application made of it: 0 applied, anything else refused (for the
    key-value ledger, `bft.app.kv`'s codes: 3 a cas whose expectation failed), with the
    application's `log` saying why. A refused transaction stays committed: it changed nothing,
    and submitting the same bytes again answers the same. `code` is None when the node did not
    say (not committed, or the node keeps no result for it).
    """

    hash: str
    status: str
    height: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    index: int | None = None
    code: int | None = None
    log: str | None = None

    @property
    def committed(self) -> bool:
        """In the chain: durable on every honest node, whatever its result `code`."""
        return self.status == STATUS_COMMITTED

    @property
    def applied(self) -> bool:
        """Committed, and the application applied it (result code 0)."""
        return self.committed and self.code == CODE_OK

    @property
    def retryable(self) -> bool:
        """Refused only because the mempool was full: submitting the same bytes later may succeed."""
        return self.error == MEMPOOL_FULL


@dataclass(frozen=True, slots=True)
class KvEntry:
    """A key's value in the committed state at `height`."""

    key: str
    value: str
    height: int


@dataclass(frozen=True, slots=True)
class KvRead:
    """A read of `key` at committed `height`: its value then, or None if it was absent."""

    key: str
    value: str | None
    height: int


@dataclass(frozen=True, slots=True)
class VerifiedBlock:
    """A block whose contents hash to `id`, whose `qc` certifies that id, and, once verified against
    the genesis validators, whose commit is proven.

    Ids and hashes are lowercase hex. `block` is the core's value, rebuilt from the response
    (its `qc` is the justify QC, certifying the parent). A block of the quorum store has proofs
    of availability (`batches`), and `txs` is exactly its batches' transactions, in proof order.

    `commit_proof` holds the blocks above this one, oldest first, each the child of the one before;
    it ends with the commit chain (consecutive views) that committed b, which is this block or its
    descendant at `commit_height`: its last two blocks are b' and b'' of a three-chain
    b <- b' <- b'', or its last one is b' of a two-chain b <- b', as the genesis' rule says;
    `commit_qc` certifies that last block.
    `commit_height` is None when nothing was checked against keys (`verify=False`): such a block
    is only self-consistent, neither its QC nor its commit is proven. The genesis block is
    committed by definition: `commit_height` 0, with no proof needed (`commit_qc` None and
    `commit_proof` empty unless the node sent them).
    """

    height: int
    view: int
    id: str
    parent_id: str
    proposer: int
    txs: tuple[bytes, ...]
    app_height: int
    app_hash: str
    qc: QuorumCert
    block: Block
    commit_qc: QuorumCert | None
    commit_proof: tuple[Block, ...]
    commit_height: int | None

    @property
    def batches(self) -> tuple[BatchProof, ...]:
        """The block's proofs of availability, in block order (none without the quorum store)."""
        return self.block.batches

    @property
    def proven_committed(self) -> bool:
        """Whether the block's commit was checked against the genesis validators."""
        return self.commit_height is not None

    def to_json(self) -> dict[str, Any]:
        """The block in the API's JSON shape, with its commit proof and commit QC if it has them:
        `verify_block` reads it back to an equal value."""
        return block_json(self.block, self.qc, self.commit_qc, self.commit_proof or None)


def tx_hash(tx: bytes) -> str:
    """A transaction's hash as the API writes it: SHA-256 of its bytes, lowercase hex."""
    return hashlib.sha256(tx).hexdigest()


def certifier_for(genesis: Genesis) -> Certifier:
    """A verifier of `genesis`'s chain and validator set (it caches QCs that verified)."""
    return Certifier(
        genesis.chain_id, genesis.validator_set(), genesis_of(genesis.chain_id)[1], SignatureCache()
    )


def verify_block(
    doc: object,
    certifier: Certifier | None,
    where: str = "block",
    *,
    commit_chain: int = DEFAULT_COMMIT_CHAIN,
) -> VerifiedBlock:
    """Rebuild a block from the API's JSON and check that it proves itself committed under the
    commit rule of length `commit_chain` (the genesis' "commit_chain": 3 or 2, ValueError
    otherwise).

    Checks: every field well formed (strict base64 and lowercase hex); the recomputed id equals
    `id`; the justify QC certifies `parent_id`; `qc` is for this id and view. A block with
    proofs of availability ("batches", at most `MAX_BATCHES_PER_BLOCK`) has an id that leaves
    its transactions out, so its `txs` are checked against the proofs instead: they must be
    exactly its batches, in proof order (each batch's count, size and digest as its proof says).
    With a `certifier`, also that `qc` verifies (2f+1 distinct validators, valid signatures, this
    chain), that each of the block's proofs of availability verifies (f+1 distinct validators'
    acknowledgements of its batch, this chain) and that the block is committed:
    - `commit_proof` lists `commit_chain - 1` (b' and b'', or b') to `MAX_COMMIT_PROOF_BLOCKS`
      blocks, each rebuilt and checked like the block itself (recomputed id, justify QC for its
      parent; one with proofs of availability may be lean, with no transactions, and is then
      checked by its id only, its proofs' signatures being none of the client's concern), each
      the child of the one before (the first of the block), one height higher, with
      a higher view, its justify QC of its parent's view;
    - its last `commit_chain` blocks, counting the block itself, form a commit chain of
      consecutive views: b <- b' <- b'' (three-chain) or b <- b' (two-chain), each one view after
      its parent (the commit rule of `bft.core.commit_rule`);
    - `commit_qc` is for the chain's last block (its id and view) and verifies, and so do the
      justify QCs of the blocks above b (the QCs of b, and of b' under the three-chain rule): each
      block of the commit chain is certified by 2f+1 genesis validators.
    The genesis block of the certifier's chain needs no proof (committed by definition); a proof
    sent with it is checked all the same.
    Without a certifier nothing is checked against keys and the commit proof is not read: the
    result is only self-consistent, and not proven committed (`commit_height` None).
    Raises `CertificateError` naming `where` and the first problem found.
    """
    check_commit_chain(commit_chain)
    try:
        return _verify_block(_Doc(doc, ""), certifier, commit_chain)
    except _Invalid as exc:
        raise CertificateError(f"{where}: {exc}") from None


def node_url(url: str) -> str:
    """`url` as a base URL: "http://" added when there is no scheme, no trailing slash."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ClientError(f"not a node URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ClientError(f"not a node URL: {url!r} (expected http://host:port)")
    return text.rstrip("/")


# Requests as values: what to send and how to read the answer, with no I/O.


@dataclass(frozen=True, slots=True)
class _Call(Generic[_T]):
    method: str
    path: str
    # A JSON document, or raw bytes sent as the binary body (BINARY_MEDIA_TYPE).
    body: dict[str, Any] | bytes | None
    read: Callable[[httpx.Response], _T]

    def send_args(self) -> dict[str, Any]:
        """The body as httpx's `request` takes it."""
        if isinstance(self.body, bytes):
            return {"content": self.body, "headers": {"content-type": BINARY_MEDIA_TYPE}}
        return {"json": self.body}

    def finish(self, response: httpx.Response) -> _T:
        try:
            return self.read(response)
        except _Invalid as exc:
            raise BadResponse(f"{self.method} {self.path}: {exc}") from None

    def failed(self, base_url: str, exc: httpx.RequestError) -> ClientError:
        detail = str(exc) or type(exc).__name__
        where = f"{self.method} {base_url}{self.path}"
        if isinstance(exc, httpx.TimeoutException):
            return NodeUnavailable(f"{where}: no answer in time ({detail})")
        if isinstance(exc, httpx.TransportError):
            return NodeUnavailable(f"{where}: cannot reach the node ({detail})")
        return BadResponse(f"{where}: {detail}")


class _Endpoints:
    """The API's requests for one node, and (with a genesis) the verifier of its blocks and the
    commit rule their proofs follow. `binary`: submissions use the binary body."""

    def __init__(self, url: str, genesis: Genesis | None, binary: bool = False) -> None:
        self.url = node_url(url)
        self.binary = binary
        self.certifier = None if genesis is None else certifier_for(genesis)
        self.commit_chain = DEFAULT_COMMIT_CHAIN if genesis is None else genesis.commit_chain

    def submit(self, txs: Sequence[bytes], wait: str) -> _Call[list[SubmitResult]]:
        if wait not in WAIT_MODES:
            raise ValueError(f"wait must be one of {', '.join(WAIT_MODES)}, not {wait!r}")
        raw = []
        for tx in txs:
            if not isinstance(tx, bytes | bytearray | memoryview):
                raise TypeError(f"a transaction is bytes, not {type(tx).__name__}")
            raw.append(bytes(tx))
        if not raw:
            raise ValueError("no transactions to submit")
        hashes = [tx_hash(tx) for tx in raw]
        read = partial(_read_submit, hashes)
        if self.binary:
            return _Call("POST", f"/txs?wait={wait}", encode_binary_txs(raw), read)
        return _Call("POST", "/txs", {"txs": [b64(tx) for tx in raw], "wait": wait}, read)

    def submit_one(self, tx: bytes, wait: str) -> _Call[SubmitResult]:
        many = self.submit([tx], wait)
        return _Call(many.method, many.path, many.body, lambda response: many.read(response)[0])

    def put(self, key: str, value: str, nonce: str | int | None, wait: str) -> _Call[SubmitResult]:
        return self.submit_one(put_tx(key, value, nonce), wait)

    def delete(self, key: str, nonce: str | int | None, wait: str) -> _Call[SubmitResult]:
        return self.submit_one(del_tx(key, nonce), wait)

    def cas(
        self, key: str, expect: str | None, value: str, nonce: str | int | None, wait: str
    ) -> _Call[SubmitResult]:
        return self.submit_one(cas_tx(key, expect, value, nonce), wait)

    def tx(self, hash_hex: str) -> _Call[dict[str, Any] | None]:
        wanted = hash_hex.lower()
        if not _HASH_RE.fullmatch(wanted):
            raise ValueError(f"a transaction hash is 64 hex digits, not {hash_hex!r}")
        return _Call("GET", f"/tx/{wanted}", None, partial(_read_tx, wanted))

    def get(self, key: str) -> _Call[KvEntry | None]:
        return _Call("GET", _kv_path(key), None, partial(_read_kv, key))

    def read(self, key: str, min_height: int | None) -> _Call[KvRead]:
        path = _kv_path(key)
        if min_height is not None:
            if type(min_height) is not int or min_height < 0:
                raise ValueError(f"min_height is a non-negative integer, not {min_height!r}")
            path += f"?min_height={min_height}"
        return _Call("GET", path, None, partial(_read_kv_at, key))

    def status(self) -> _Call[dict[str, Any]]:
        return _Call("GET", "/status", None, _read_status)

    def block(self, height: int, verify: bool) -> _Call[VerifiedBlock | None]:
        if type(height) is not int or height < 0:
            raise ValueError(f"a block height is a non-negative integer, not {height!r}")
        if verify and self.certifier is None:
            raise ValueError("verifying a block needs the chain's genesis: pass genesis= to the client")
        certifier = self.certifier if verify else None
        return _Call(
            "GET", f"/blocks/{height}", None, partial(_read_block, height, certifier, self.commit_chain)
        )


# Clients


class Client:
    """A blocking client of one node. `genesis` is needed only to verify blocks.

    `binary`: transactions (`submit`, `put`, `delete`, `cas`) go in the binary body of
    `POST /txs`, length-prefixed raw bytes, instead of base64 in JSON: a quarter fewer bytes, and
    no base64 or JSON to build or parse for them. The answer is the same either way; a node that
    predates the binary body refuses it with a 400.
    `transport` replaces the network (tests pass an `httpx.MockTransport`).
    """

    def __init__(
        self,
        url: str,
        genesis: Genesis | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        binary: bool = False,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._api = _Endpoints(url, genesis, binary)
        self._http = httpx.Client(base_url=self._api.url, timeout=timeout_s, transport=transport)

    @property
    def url(self) -> str:
        return self._api.url

    def _run(self, call: _Call[_T]) -> _T:
        try:
            response = self._http.request(call.method, call.path, **call.send_args())
        except httpx.RequestError as exc:
            raise call.failed(self._api.url, exc) from exc
        return call.finish(response)

    def submit(self, txs: Sequence[bytes], wait: str = WAIT_NONE) -> list[SubmitResult]:
        """Submit transactions; one result per transaction, in order. A full mempool does not raise:
        its transactions come back rejected and `retryable`. With wait="commit" the node answers
        once they are committed (or rejected)."""
        return self._run(self._api.submit(txs, wait))

    def put(
        self, key: str, value: str, nonce: str | int | None = None, wait: str = WAIT_COMMIT
    ) -> SubmitResult:
        """Set `key` to `value` (a key-value ledger transaction; `nonce` makes a repeat distinct)."""
        return self._run(self._api.put(key, value, nonce, wait))

    def delete(self, key: str, nonce: str | int | None = None, wait: str = WAIT_COMMIT) -> SubmitResult:
        """Remove `key` (deleting an absent key succeeds)."""
        return self._run(self._api.delete(key, nonce, wait))

    def cas(
        self,
        key: str,
        expect: str | None,
        value: str,
        nonce: str | int | None = None,
        wait: str = WAIT_COMMIT,
    ) -> SubmitResult:
        """Set `key` to `value` if its value is `expect` (None: if it is absent)."""
        return self._run(self._api.cas(key, expect, value, nonce, wait))

    def tx(self, tx_hash: str) -> dict[str, Any] | None:
        """A committed transaction's record {"hash", "height", "index", "result"}; None before commit."""
        return self._run(self._api.tx(tx_hash))

    def get(self, key: str) -> KvEntry | None:
        """`key`'s committed value; None if absent."""
        return self._run(self._api.get(key))

    def read(self, key: str, min_height: int | None = None) -> KvRead:
        """`key`'s committed value (None if absent) and the height read at, which is at least
        `min_height` (the node waits a few seconds for it, else RequestRefused with 503)."""
        return self._run(self._api.read(key, min_height))

    def status(self) -> dict[str, Any]:
        """The node's status object (node, chain_id, view, height, leader, last_block_id, peers...)."""
        return self._run(self._api.status())

    def block(self, height: int, verify: bool = True) -> VerifiedBlock | None:
        """The committed block at `height`, None above the tip, once its commit is proven (see
        `verify_block` for the checks); `verify` (the default) needs the client's genesis. With
        verify=False nothing is checked against keys and the commit proof is not read: the block is
        only self-consistent (`commit_height` None). Raises `CertificateError`."""
        return self._run(self._api.block(height, verify))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """The asynchronous twin of `Client` (same methods, options and results, awaited); use
    `async with`."""

    def __init__(
        self,
        url: str,
        genesis: Genesis | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        binary: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api = _Endpoints(url, genesis, binary)
        self._http = httpx.AsyncClient(base_url=self._api.url, timeout=timeout_s, transport=transport)

    @property
    def url(self) -> str:
        return self._api.url

    async def _run(self, call: _Call[_T]) -> _T:
        try:
            response = await self._http.request(call.method, call.path, **call.send_args())
        except httpx.RequestError as exc:
            raise call.failed(self._api.url, exc) from exc
        return call.finish(response)

    async def submit(self, txs: Sequence[bytes], wait: str = WAIT_NONE) -> list[SubmitResult]:
        return await self._run(self._api.submit(txs, wait))

    async def put(
        self, key: str, value: str, nonce: str | int | None = None, wait: str = WAIT_COMMIT
    ) -> SubmitResult:
        return await self._run(self._api.put(key, value, nonce, wait))

    async def delete(self, key: str, nonce: str | int | None = None, wait: str = WAIT_COMMIT) -> SubmitResult:
        return await self._run(self._api.delete(key, nonce, wait))

    async def cas(
        self,
        key: str,
        expect: str | None,
        value: str,
        nonce: str | int | None = None,
        wait: str = WAIT_COMMIT,
    ) -> SubmitResult:
        return await self._run(self._api.cas(key, expect, value, nonce, wait))

    async def tx(self, tx_hash: str) -> dict[str, Any] | None:
        return await self._run(self._api.tx(tx_hash))

    async def get(self, key: str) -> KvEntry | None:
        return await self._run(self._api.get(key))

    async def read(self, key: str, min_height: int | None = None) -> KvRead:
        return await self._run(self._api.read(key, min_height))

    async def status(self) -> dict[str, Any]:
        return await self._run(self._api.status())

    async def block(self, height: int, verify: bool = True) -> VerifiedBlock | None:
        return await self._run(self._api.block(height, verify))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


# Response readers (pure: an httpx.Response in, a value or an exception out)


def _read_submit(hashes: list[str], response: httpx.Response) -> list[SubmitResult]:
    doc = _json_or_none(response)
    mempool_full = response.status_code == 503 and isinstance(doc, dict) and "results" in doc
    if not (response.is_success or mempool_full):
        raise _refused(response, doc)
    retry_after_s = _retry_after_s(response.headers.get("retry-after")) if mempool_full else None
    items = _Doc(doc, "").array("results")
    if len(items) != len(hashes):
        raise _Invalid(f"{len(items)} results for {len(hashes)} transactions")
    return [
        _submit_result(_Doc(item, f"results[{i}]"), expected, retry_after_s)
        for i, (item, expected) in enumerate(zip(items, hashes, strict=True))
    ]


def _submit_result(doc: _Doc, expected_hash: str, retry_after_s: float | None) -> SubmitResult:
    hash_hex = doc.text("hash")
    if hash_hex != expected_hash:
        raise _Invalid(f"{doc.path('hash')} is {hash_hex!r}, not the submitted transaction's {expected_hash}")
    status = doc.text("status")
    if status not in STATUSES:
        raise _Invalid(f"{doc.path('status')} is {_show(status)}, not one of {', '.join(sorted(STATUSES))}")
    height = doc.uint("height") if doc.present("height") else None
    error = doc.text("error") if doc.present("error") else None
    retryable = error == MEMPOOL_FULL
    return SubmitResult(
        hash_hex,
        status,
        height,
        error,
        retry_after_s if retryable else None,
        index=doc.uint("index") if doc.present("index") else None,
        code=doc.uint("code") if doc.present("code") else None,
        log=doc.text("log") if doc.present("log") else None,
    )


def _read_tx(wanted: str, response: httpx.Response) -> dict[str, Any] | None:
    doc = _found(response)
    if doc is None:
        return None
    found = doc.text("hash")
    if found != wanted:
        raise _Invalid(f"asked for transaction {wanted}, got {_show(found)}")
    return doc.value


def _kv_path(key: str) -> str:
    if not key:
        raise ValueError("a key is a non-empty string")
    segment = urllib.parse.quote(key, safe="")
    if segment in (".", ".."):  # a bare dot segment would be resolved away by URL normalisation
        segment = segment.replace(".", "%2E")
    return f"/kv/{segment}"


def _read_kv_at(key: str, response: httpx.Response) -> KvRead:
    if response.status_code == 404:
        doc = _Doc(_json(response), "")
        return KvRead(key, None, doc.uint("height"))
    entry = _read_kv(key, response)
    assert entry is not None  # only a 404 reads as absent
    return KvRead(entry.key, entry.value, entry.height)


def _read_kv(key: str, response: httpx.Response) -> KvEntry | None:
    doc = _found(response)
    if doc is None:
        return None
    found = doc.text("key")
    if found != key:
        raise _Invalid(f"asked for key {key!r}, got {_show(found)}")
    return KvEntry(found, doc.text("value"), doc.uint("height"))


def _read_status(response: httpx.Response) -> dict[str, Any]:
    _check_success(response)
    return _Doc(_json(response), "").value


def _read_block(
    height: int, certifier: Certifier | None, commit_chain: int, response: httpx.Response
) -> VerifiedBlock | None:
    doc = _found(response)
    if doc is None:
        return None
    verified = verify_block(doc.value, certifier, f"block {height}", commit_chain=commit_chain)
    if verified.height != height:
        raise CertificateError(f"block {height}: the node sent block {verified.height} instead")
    return verified


def _verify_block(doc: _Doc, certifier: Certifier | None, commit_chain: int) -> VerifiedBlock:
    block = _block(doc, full=True)
    qc = _qc(doc.obj("qc"))
    if qc.block_id != block.id:
        raise _Invalid(f"the QC certifies block {qc.block_id.hex()}, not this block {block.id.hex()}")
    if qc.view != block.view:
        raise _Invalid(f"the QC is for view {qc.view}, the block is of view {block.view}")
    commit_qc: QuorumCert | None = None
    proof: tuple[Block, ...] = ()
    commit_height: int | None = None
    if certifier is not None:
        reason = certifier.check_qc(qc)
        if reason is not None:
            raise _Invalid(f"the QC does not verify against the genesis validators: {reason}")
        _check_batch_proofs(doc, block, certifier)
        if block.id == genesis_of(certifier.chain_id)[0].id and not doc.present("commit_proof"):
            commit_height = 0
        else:
            commit_qc, proof, commit_height = _verify_commit(doc, block, certifier, commit_chain)
    return VerifiedBlock(
        height=block.height,
        view=int(block.view),
        id=block.id.hex(),
        parent_id=block.parent_id.hex(),
        proposer=int(block.proposer),
        txs=block.txs,
        app_height=block.app_height,
        app_hash=block.app_hash.hex(),
        qc=qc,
        block=block,
        commit_qc=commit_qc,
        commit_proof=proof,
        commit_height=commit_height,
    )


def _block(doc: _Doc, *, full: bool) -> Block:
    """The block `doc` writes (in `block_json`'s shape; its own QCs, if any, aside), strictly decoded.
    Its recomputed id must equal `id`, and its justify QC must certify its parent. With proofs of
    availability, its transactions must be its batches: `full` (a committed block) requires
    them, otherwise (an entry of a commit proof) it may also be lean, with none."""
    view = View(doc.uint("view"))
    height = doc.uint("height")
    claimed_id = doc.hex("id", BLOCK_ID_SIZE_BYTES)
    parent_id = BlockId(doc.hex("parent_id", BLOCK_ID_SIZE_BYTES))
    proposer = ValidatorIndex(doc.uint("proposer"))
    txs = tuple(_b64(tx, f"{doc.path('txs')}[{i}]") for i, tx in enumerate(doc.array("txs")))
    justify = _qc(doc.obj("justify"))
    app_height = doc.uint("app_height")
    app_hash = doc.hex("app_hash")
    if len(app_hash) > MAX_APP_HASH_SIZE_BYTES:
        raise _Invalid(f"{doc.path('app_hash')} is longer than {MAX_APP_HASH_SIZE_BYTES} bytes")
    batches = _batch_proofs(doc)
    block = Block(
        view,
        height,
        parent_id,
        proposer,
        justify,
        txs,
        app_height=app_height,
        app_hash=app_hash,
        batches=batches,
        failed_leaders=_failed_leaders(doc),
    )
    if block.id != claimed_id:
        raise _Invalid(
            f"{doc.path('id')} {claimed_id.hex()} is not the hash of the block's contents ({block.id.hex()})"
        )
    if justify.block_id != parent_id:
        raise _Invalid(
            f"{doc.path('justify')} certifies {justify.block_id.hex()}, not the parent {parent_id.hex()}"
        )
    _check_payload(doc, block, full)
    return block


def _failed_leaders(doc: _Doc) -> tuple[ValidatorIndex, ...]:
    """`doc`'s failed leaders (leader reputation): none without the key; with it, a non-empty,
    strictly ascending array of validator indices (the one spelling `block_json` writes, as the
    block's id depends on it)."""
    if "failed_leaders" not in doc.value:
        return ()
    items = doc.array("failed_leaders")
    name = doc.path("failed_leaders")
    if not items or len(items) > MAX_SIGNATURES:
        raise _Invalid(f"{name} must list 1 to {MAX_SIGNATURES} validators")
    out = []
    for i, item in enumerate(items):
        if type(item) is not int or item < 0:
            raise _Invalid(f"{name}[{i}] is not a validator index")
        out.append(ValidatorIndex(item))
    if any(a >= b for a, b in itertools.pairwise(out)):
        raise _Invalid(f"{name} is not strictly ascending")
    return tuple(out)


def _batch_proofs(doc: _Doc) -> tuple[BatchProof, ...]:
    """`doc`'s proofs of availability: none if it has no "batches" key; if it has one, a
    non-empty array (`block_json` writes none for a block without proofs, and a block's id
    depends on having proofs, so an empty array is not another spelling of none)."""
    if "batches" not in doc.value:
        return ()
    items = doc.array("batches")
    name = doc.path("batches")
    if not items:
        raise _Invalid(f"{name} is empty (a block without proofs of availability has no batches)")
    if len(items) > MAX_BATCHES_PER_BLOCK:
        raise _Invalid(
            f"{name} lists {len(items)} proofs, more than the {MAX_BATCHES_PER_BLOCK} a block may carry"
        )
    return tuple(_batch_proof(_Doc(item, f"{name}[{i}]")) for i, item in enumerate(items))


def _batch_proof(doc: _Doc) -> BatchProof:
    info = BatchInfo(
        ValidatorIndex(doc.uint("author")),
        doc.uint("sequence"),
        doc.uint("expiry_height"),
        doc.hex("digest", BATCH_DIGEST_SIZE_BYTES),
        doc.uint("tx_count"),
        doc.uint("size_bytes"),
    )
    return BatchProof(info, _signatures(doc))


def _check_payload(doc: _Doc, block: Block, full: bool) -> None:
    """A block with proofs carries exactly its batches' transactions (`full`: it must), or none.
    Its id leaves them out, so this is what ties its transactions to what was certified."""
    if not block.batches:
        return
    name = doc.path("txs")
    reason = split_payload(block.txs, block.batches) if full else payload_error(block.txs, block.batches)
    if not isinstance(reason, str):
        return
    if not block.txs:
        raise _Invalid(
            f"{name} is empty: a committed block carries its batches' transactions"
            f" ({len(block.batches)} proofs of availability: {reason})"
        )
    raise _Invalid(f"{name} are not the block's batches: {reason}")


def _check_batch_proofs(doc: _Doc, block: Block, certifier: Certifier) -> None:
    """Each of the block's proofs of availability carries f+1 valid acknowledgements of distinct
    genesis validators."""
    for i, proof in enumerate(block.batches):
        reason = certifier.check_batch_proof(proof)
        if reason is not None:
            info = proof.info
            raise _Invalid(
                f"{doc.path('batches')}[{i}] (batch {info.sequence} of validator {info.author}) does not"
                f" verify against the genesis validators: {reason}"
            )


def _verify_commit(
    doc: _Doc, block: Block, certifier: Certifier, commit_chain: int
) -> tuple[QuorumCert, tuple[Block, ...], int]:
    """Check `doc`'s commit proof and commit QC under the `commit_chain` rule (see
    `verify_block`); the QC, the proof's blocks and the height of the block the commit chain
    commits."""
    rule, above_b = _RULE_NAMES[commit_chain]
    if not doc.present("commit_proof"):
        raise _Invalid("commit proof: missing (a certified block is not proven committed without it)")
    items = doc.array("commit_proof")
    if len(items) < commit_chain - 1:
        raise _Invalid(
            f"commit proof: {len(items)} block(s), need at least {commit_chain - 1} ({above_b} of a {rule})"
        )
    if len(items) > MAX_COMMIT_PROOF_BLOCKS:
        raise _Invalid(f"commit proof: {len(items)} blocks, more than the {MAX_COMMIT_PROOF_BLOCKS} accepted")
    name = doc.path("commit_proof")
    proof = tuple(_block(_Doc(item, f"{name}[{i}]"), full=False) for i, item in enumerate(items))
    chain = (block, *proof)
    _check_proof_links(chain, name)
    # b and the blocks above it that close the commit chain: the last `commit_chain` of the chain.
    tail = chain[-commit_chain:]
    if any(child.view != parent.view + 1 for parent, child in pairwise(tail)):
        views = ", ".join(str(b.view) for b in tail)
        heights = ", ".join(str(b.height) for b in tail)
        raise _Invalid(
            f"commit proof: views {views} are not consecutive (blocks {heights} are certified, not a {rule})"
        )
    commit_qc = _commit_qc(doc, tail[-1], certifier)
    for certified, carrier in pairwise(tail):
        reason = certifier.check_qc(carrier.qc)
        if reason is not None:
            raise _Invalid(
                f"commit proof: the QC of block {certified.height} (the justify QC of block {carrier.height})"
                f" does not verify against the genesis validators: {reason}"
            )
    return commit_qc, proof, tail[0].height


def _check_proof_links(chain: Sequence[Block], name: str) -> None:
    """Each block of `chain` after the first (the proof `name`'s entries) is the child of the one
    before, one height higher, of a later view, with a justify QC of its parent's view."""
    for i, (parent, child) in enumerate(pairwise(chain)):
        entry = f"{name}[{i}] (height {child.height}, view {child.view})"
        if child.parent_id != parent.id:
            raise _Invalid(
                f"{entry} extends {child.parent_id.hex()}, not the block before it {parent.id.hex()}"
            )
        if child.height != parent.height + 1:
            raise _Invalid(f"{entry} is not one above the block before it (height {parent.height})")
        if child.view <= parent.view:
            raise _Invalid(f"{entry} is not of a later view than the block before it (view {parent.view})")
        if child.qc.view != parent.view:
            raise _Invalid(
                f"{entry} carries a justify QC of view {child.qc.view} for a block of view {parent.view}"
            )


def _commit_qc(doc: _Doc, last: Block, certifier: Certifier) -> QuorumCert:
    """`doc`'s commit QC, once checked to certify `last` (the commit chain's last block) with 2f+1
    genesis validators."""
    commit_qc = _qc(doc.obj("commit_qc"))
    if commit_qc.block_id != last.id:
        raise _Invalid(
            f"the commit QC certifies block {commit_qc.block_id.hex()},"
            f" not the last block of the commit proof {last.id.hex()}"
        )
    if commit_qc.view != last.view:
        raise _Invalid(
            f"the commit QC is for view {commit_qc.view},"
            f" the last block of the commit proof is of view {last.view}"
        )
    reason = certifier.check_qc(commit_qc)
    if reason is not None:
        raise _Invalid(f"the commit QC does not verify against the genesis validators: {reason}")
    return commit_qc


def _qc(doc: _Doc) -> QuorumCert:
    signatures = _signatures(doc)
    block_id = BlockId(doc.hex("block_id", BLOCK_ID_SIZE_BYTES))
    return QuorumCert(View(doc.uint("view")), block_id, signatures)


def _signatures(doc: _Doc) -> tuple[tuple[ValidatorIndex, bytes], ...]:
    """`doc`'s "signatures": (signer, signature) pairs, as a QC and a proof of availability
    write them."""
    signatures = []
    for i, item in enumerate(doc.array("signatures")):
        share = _Doc(item, f"{doc.path('signatures')}[{i}]")
        signatures.append((ValidatorIndex(share.uint("signer")), share.b64("signature")))
    return tuple(signatures)


# Response plumbing


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
        raise _Invalid(f"HTTP {response.status_code} with a body that is not JSON") from None


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _refused(response: httpx.Response, doc: Any) -> RequestRefused:
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        message: str = doc["error"]
    else:
        message = response.text.strip() or response.reason_phrase or "no reason given"
    return RequestRefused(response.status_code, message[:_MAX_MESSAGE_CHARS])


def _check_success(response: httpx.Response) -> None:
    if not response.is_success:
        raise _refused(response, _json_or_none(response))


def _found(response: httpx.Response) -> _Doc | None:
    """The response's JSON object, or None for a 404 (the thing asked for does not exist)."""
    if response.status_code == 404:
        return None
    _check_success(response)
    return _Doc(_json(response), "")


def _retry_after_s(header: str | None) -> float | None:
    # Only the delay-seconds form: the node never sends an HTTP date.
    if header is None or not header.strip().isdigit():
        return None
    return float(int(header.strip()))


class _Doc:
    """A JSON object from the node, read field by field; every problem names the field's path."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise _Invalid(f"{where or 'the response'} is {_kind(value)}, not a JSON object")
        self.value: dict[str, Any] = value
        self.where = where

    def path(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def present(self, name: str) -> bool:
        return self.value.get(name) is not None

    def raw(self, name: str) -> Any:
        if name not in self.value:
            raise _Invalid(f"{self.path(name)} is missing")
        return self.value[name]

    def uint(self, name: str) -> int:
        value = self.raw(name)
        if type(value) is not int or not 0 <= value < _MAX_UINT:
            raise _Invalid(f"{self.path(name)} is {_show(value)}, not a non-negative integer")
        return value

    def text(self, name: str) -> str:
        value = self.raw(name)
        if not isinstance(value, str):
            raise _Invalid(f"{self.path(name)} is {_kind(value)}, not a string")
        return value

    def hex(self, name: str, size_bytes: int | None = None) -> bytes:
        value = self.text(name)
        if not _HEX_RE.fullmatch(value):
            raise _Invalid(f"{self.path(name)} is {_show(value)}, not lowercase hex")
        if size_bytes is not None and len(value) != 2 * size_bytes:
            raise _Invalid(f"{self.path(name)} is {len(value) // 2} bytes, not {size_bytes}")
        return bytes.fromhex(value)

    def b64(self, name: str) -> bytes:
        return _b64(self.raw(name), self.path(name))

    def array(self, name: str) -> list[Any]:
        value = self.raw(name)
        if not isinstance(value, list):
            raise _Invalid(f"{self.path(name)} is {_kind(value)}, not an array")
        return value

    def obj(self, name: str) -> _Doc:
        return _Doc(self.raw(name), self.path(name))


def _b64(value: object, where: str) -> bytes:
    """Strict standard base64: the alphabet, padding, and no stray bits (one text per byte string)."""
    if not isinstance(value, str):
        raise _Invalid(f"{where} is {_kind(value)}, not a base64 string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Invalid(f"{where} is {_show(value)}, not valid base64") from None
    if b64(decoded) != value:
        raise _Invalid(f"{where} is {_show(value)}, not canonical base64")
    return decoded


def _kind(value: object) -> str:
    names: Mapping[type, str] = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
