"""The client load of a chaos run, recorded as a history the checker can judge.

Owns: `Load` (clients issuing put / cas / del / get at a total rate over a small key space,
each operation recorded as a `ClientOp` with its invocation and completion times and its
outcome) and the session rule for reads. May not: look at the cluster other than through the
documented HTTP API (`bft.client.AsyncClient`), or decide whether a history is good.

Outcomes are what a client can know: `ok` is acknowledged (a write answered `committed`, a read
answered), `fail` certainly did not happen (refused before ordering: `rejected`, a 4xx, a node
behind the read's `min_height`), `info` is unknown (a timeout, a connection lost, `accepted`
without commit in the node's wait): it may or may not have committed, and the checker treats it
so. Every operation has fresh bytes (a nonce), so its transaction hash names it alone.

Reads carry `min_height` = the highest height any client was acknowledged so far: a read never
sees a state older than a write acknowledged before it began, whichever node it asks (the node
waits for that height or refuses with 503). Without it, a read from a node that is behind (just
restarted, on the minority side) is stale, and the checker would rightly say so.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from bft.chaos.record import OP_KINDS, ClientOp, OpKind
from bft.chaos.scenario import LoadSpec
from bft.client import AsyncClient, ClientError, RequestRefused, SubmitResult
from bft.node.logs import kv

log = logging.getLogger("bft.chaos")

# A client gives up on one operation after this (the node's own commit wait is 30 s).
OP_TIMEOUT_S = 20.0


@dataclass(slots=True)
class History:
    """What every client did, and the highest height acknowledged to any of them."""

    ops: list[ClientOp] = field(default_factory=list)
    max_acked_height: int = 0

    def add(self, op: ClientOp) -> None:
        self.ops.append(op)
        if op.outcome == "ok" and op.height is not None and op.op != "get":
            self.max_acked_height = max(self.max_acked_height, op.height)


class Load:
    """`spec.clients` clients, together `spec.rate` operations a second, until cancelled. Each
    operation goes to a node drawn from `targets()` (the nodes the runner believes are up: a
    client in a real deployment would also be told where to go)."""

    def __init__(
        self,
        spec: LoadSpec,
        urls: Sequence[str],
        targets: Callable[[], Sequence[int]],
        now: Callable[[], float],
        seed: int,
    ) -> None:
        self._spec = spec
        self._urls = list(urls)
        self._targets = targets
        self._now = now
        self._rng = random.Random(f"load/{seed}")
        self._seq = itertools.count()
        self.history = History()
        kinds = [k for k, w in spec.mix.items() if w > 0]
        self._kinds: list[OpKind] = [k for k in OP_KINDS if k in kinds]
        self._weights = [spec.mix[k] for k in self._kinds]
        # What each client last saw of each key (for the expected value of its cas).
        self._seen: list[dict[str, str | None]] = [{} for _ in range(spec.clients)]
        self.in_flight = 0

    async def run(self) -> None:
        if not self._spec.enabled or self._spec.clients <= 0:
            await trio.sleep_forever()
        clients = [AsyncClient(url, timeout_s=OP_TIMEOUT_S) for url in self._urls]
        try:
            send, receive = trio.open_memory_channel[int](self._spec.clients)
            async with trio.open_nursery() as nursery:
                for client_id in range(self._spec.clients):
                    nursery.start_soon(self._client, client_id, clients, receive.clone())
                gap_s = 1.0 / self._spec.rate
                next_at = trio.current_time()
                for tick in itertools.count():
                    # A token per operation; clients all busy (a stalled cluster) drop the tick
                    # rather than pile up work that would fire all at once after a heal.
                    with contextlib.suppress(trio.WouldBlock):
                        send.send_nowait(tick)
                    next_at += gap_s
                    await trio.sleep_until(next_at)
        finally:
            for client in clients:
                await client.close()

    async def _client(
        self, client_id: int, clients: list[AsyncClient], ticks: trio.MemoryReceiveChannel[int]
    ) -> None:
        async for _ in ticks:
            targets = self._targets() or range(len(self._urls))
            node = self._rng.choice(list(targets))
            kind = self._rng.choices(self._kinds, self._weights)[0]
            key = f"k{self._rng.randrange(self._spec.keys)}"
            self.in_flight += 1
            try:
                op = await self._one(client_id, node, clients[node], kind, key)
            finally:
                self.in_flight -= 1
            self.history.add(op)
            if op.outcome == "ok":
                if kind == "get":
                    self._seen[client_id][key] = op.read_value
                elif op.code == 0:
                    self._seen[client_id][key] = op.value

    async def _one(self, client_id: int, node: int, client: AsyncClient, kind: OpKind, key: str) -> ClientOp:
        seq = next(self._seq)
        nonce = f"c{client_id}-{seq}"
        value = None if kind in ("del", "get") else f"v{client_id}-{seq}"
        expect = self._seen[client_id].get(key) if kind == "cas" else None
        start = self._now()

        def done(outcome: str, **fields: object) -> ClientOp:
            return ClientOp(
                client=client_id,
                node=node,
                op=kind,
                key=key,
                invoke_s=start,
                complete_s=self._now(),
                outcome=outcome,  # type: ignore[arg-type]
                value=value,
                expect=expect,
                **fields,  # type: ignore[arg-type]
            )

        try:
            if kind == "get":
                read = await client.read(key, min_height=self.history.max_acked_height)
                return done("ok", height=read.height, read_value=read.value)
            if kind == "put":
                assert value is not None
                result = await client.put(key, value, nonce=nonce)
            elif kind == "del":
                result = await client.delete(key, nonce=nonce)
            else:
                assert value is not None
                result = await client.cas(key, expect, value, nonce=nonce)
        except RequestRefused as exc:
            # 4xx and 503 (behind, busy): refused before it was ordered.
            return done("fail" if exc.status_code < 500 or kind == "get" else "info", error=str(exc)[:200])
        except ClientError as exc:
            return done("info", error=str(exc)[:200])
        return self._written(result, done)

    def _written(self, result: SubmitResult, done: Callable[..., ClientOp]) -> ClientOp:
        if result.committed:
            return done("ok", tx_hash=result.hash, height=result.height, index=result.index, code=result.code)
        if result.status == "rejected":
            return done("fail", tx_hash=result.hash, error=result.error)
        log.debug(kv(event="write_unknown", status=result.status, hash=result.hash[:16]))
        return done("info", tx_hash=result.hash, error=f"status {result.status}")
