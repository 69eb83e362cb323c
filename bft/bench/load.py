"""The load of `bft bench`: client tasks that submit put transactions with "wait": "commit".

Owns: what the load needs of a client (`Submitter`, `Outcome`) and how it opens one
(`ClientKit`, `default_kit`: the client of `bft.client`, in the binary body of `POST /txs` or the
JSON one); the loop of one client (`run_client`: a batch at a time, paced by the shared token
bucket, "mempool full" retried with the same bytes after a back-off stretched to the node's
Retry-After, a failed request recorded and left behind); and `run_clients`, one task per client
bound round-robin to the nodes.
May not: reach a node other than through the client; read the clock other than trio's; import
trio or `bft.client` at module level.

A transaction's latency runs from the start of the request that first submitted it (after
pacing) to the response that reports it committed, retries after "mempool full" included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from bft.bench.options import BenchOptions
from bft.bench.pacing import Backoff, TokenBucket, bucket_for
from bft.bench.stats import Recorder
from bft.bench.txs import build_tx

# A node that commits nothing for this long under "wait": "commit" counts as an error.
REQUEST_TIMEOUT_S: Final = 30.0


class Outcome(Protocol):
    """What the load needs of one `bft.client.SubmitResult`."""

    @property
    def status(self) -> str: ...
    @property
    def committed(self) -> bool: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def retry_after_s(self) -> float | None: ...


class Submitter(Protocol):
    """What the load needs of `bft.client.AsyncClient`."""

    async def submit(self, txs: Sequence[bytes], *, wait: Literal["commit"]) -> Sequence[Outcome]: ...


@dataclass(frozen=True, slots=True)
class ClientKit:
    """How the load opens a client for a node URL, and the exceptions of a failed request (after
    which a client backs off and tries again)."""

    open: Callable[[str], AbstractAsyncContextManager[Submitter]]
    errors: tuple[type[Exception], ...]


def default_kit(*, binary: bool = True) -> ClientKit:
    """The client of `bft.client`, submitting in the binary body of `POST /txs` (else the JSON
    one); its errors include `NodeUnavailable` and refusals (4xx/5xx)."""
    from bft.client import AsyncClient, ClientError

    def open_client(url: str) -> AbstractAsyncContextManager[Submitter]:
        return AsyncClient(url, timeout_s=REQUEST_TIMEOUT_S, binary=binary)

    return ClientKit(open_client, (ClientError,))


@dataclass(frozen=True, slots=True)
class LoadPlan:
    run_id: str
    tx_size_bytes: int
    batch: int
    stop_at: float
    errors: tuple[type[Exception], ...]


async def run_client(
    client_id: int,
    submitter: Submitter,
    plan: LoadPlan,
    recorder: Recorder,
    bucket: TokenBucket | None,
) -> None:
    """Submit batches with "wait": "commit" until `plan.stop_at`, one request at a time."""
    import trio

    seq = 0
    backoff = Backoff()
    # The transactions to (re)submit, each with the time it was first sent.
    pending: list[tuple[bytes, float]] = []
    while trio.current_time() < plan.stop_at:
        if not pending:
            txs = [build_tx(plan.run_id, client_id, seq + k, plan.tx_size_bytes) for k in range(plan.batch)]
            seq += plan.batch
            if bucket is not None:
                await trio.sleep(bucket.reserve(len(txs), trio.current_time()))
            sent_at = trio.current_time()
            recorder.on_submitted(len(txs), sent_at)
            pending = [(tx, sent_at) for tx in txs]
        try:
            results = await submitter.submit([tx for tx, _ in pending], wait="commit")
        except plan.errors as exc:
            # Whether the node took the batch is unknown; its keys are unique, so move on.
            recorder.on_error(str(exc), trio.current_time())
            pending = []
            await trio.sleep(backoff.next())
            continue
        pending = _settle(pending, results, recorder, trio.current_time())
        if pending:
            await trio.sleep(_retry_delay(backoff, results))
        else:
            backoff.reset()


def _retry_delay(backoff: Backoff, results: Sequence[Outcome]) -> float:
    """The back-off, stretched to the node's Retry-After hint (up to the cap)."""
    hints = [r.retry_after_s for r in results if r.retryable and r.retry_after_s is not None]
    delay = backoff.next()
    return max(delay, min(max(hints), backoff.cap_s)) if hints else delay


def _settle(
    pending: list[tuple[bytes, float]], results: Sequence[Outcome], recorder: Recorder, now: float
) -> list[tuple[bytes, float]]:
    """Record the outcome of each transaction of a request at `now`; the ones to submit again."""
    if len(results) != len(pending):
        recorder.on_error(f"{len(results)} results for {len(pending)} transactions", now)
        return []
    retry: list[tuple[bytes, float]] = []
    for (tx, first), result in zip(pending, results, strict=True):
        if result.committed:
            recorder.on_committed(now - first, now)
        elif result.retryable:
            retry.append((tx, first))
        elif result.status == "rejected":
            recorder.on_rejected(now)
        else:
            recorder.on_uncommitted(now)
    if retry:
        recorder.on_retry(len(retry), now)
    return retry


async def run_clients(
    opts: BenchOptions,
    apis: Sequence[str],
    plan: LoadPlan,
    recorder: Recorder,
    kit: ClientKit,
) -> None:
    """`opts.clients` client tasks, client c bound to node c mod n, sharing one pacer."""
    import trio

    bucket = bucket_for(opts.rate_per_s, opts.batch, trio.current_time())

    async def one(c: int) -> None:
        async with kit.open(apis[c % len(apis)]) as submitter:
            await run_client(c, submitter, plan, recorder, bucket)

    async with trio.open_nursery() as nursery:
        for c in range(opts.clients):
            nursery.start_soon(one, c)
