"""`GET /blocks/<height>` of a quorum-store block, served by the real app (`bft.node.api.make_app`,
in process) as the runtime writes it (`block_json`) and read back by `bft.client.AsyncClient`:
the "batches" of a block and of its commit proof's entries, a big block (8 batches of 500
transactions of 256 bytes) verified end to end and served again from the rendered-block cache,
a tampered one refused by the client, and a proof-less block's answer without "batches".
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from core_helpers import GENESIS_BLOCK, chain, qc_for
from test_client import GENESIS
from test_client_batches import (
    ALL_TXS,
    BATCH_KEYS,
    BIG,
    COMMITTED_KEYS,
    PROOFS,
    batched_block,
    make_batch,
    prove,
    random_txs,
)
from test_node_api import FakeNode

from bft.client import AsyncClient, CertificateError
from bft.core.messages import Block
from bft.node.api import make_app
from bft.node.api_json import block_json

URL = "http://node"
LEAN_ABOVE = batched_block(BIG, 2, [prove(make_batch(3, 9, random_txs(4)))])
ABOVE = (LEAN_ABOVE, *chain(LEAN_ABOVE, [3]))
PLAIN = chain(GENESIS_BLOCK, [1, 2, 3])


class BatchedBlocks(FakeNode):
    """A NodeView whose block 1 is BIG, committed by a proof whose first entry is lean, as the
    runtime writes it; `txs` replaces the block's transactions in the answer (a lying node)."""

    def __init__(self, block: Block = BIG, above: tuple[Block, ...] = ABOVE) -> None:
        super().__init__()
        self.block_1 = block
        self.above = above
        self.txs: list[str] | None = None

    def block(self, height: int) -> dict[str, Any] | None:
        self._enter("block")
        if height != 1:
            return None
        doc = block_json(self.block_1, qc_for(self.block_1), qc_for(self.above[-1]), self.above)
        if self.txs is not None:
            doc["txs"] = self.txs
        return doc


def _client(view: FakeNode) -> AsyncClient:
    return AsyncClient(URL, GENESIS, transport=httpx.ASGITransport(app=make_app(view)))


@pytest.fixture
async def served() -> AsyncIterator[tuple[BatchedBlocks, AsyncClient]]:
    view = BatchedBlocks()
    async with _client(view) as client:
        yield view, client


async def test_a_batched_block_is_served_with_its_proofs_and_verifies(
    served: tuple[BatchedBlocks, AsyncClient],
) -> None:
    view, client = served
    got = await client.block(1)
    assert got is not None and got.commit_height == 1
    assert got.block == BIG and got.txs == ALL_TXS and got.batches == PROOFS
    assert got.commit_proof == ABOVE and got.commit_proof[0].txs == ()
    again = await client.block(1)
    assert again == got and view.calls.count("block") == 1  # the second answer is the rendered one


async def test_the_answer_has_the_documented_fields_and_the_batches() -> None:
    transport = httpx.ASGITransport(app=make_app(BatchedBlocks()))
    async with httpx.AsyncClient(transport=transport, base_url=URL) as http:
        response = await http.get("/blocks/1")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == COMMITTED_KEYS | {"batches"}
    assert [base64.b64decode(tx) for tx in body["txs"]] == list(ALL_TXS)
    assert [set(entry) for entry in body["batches"]] == [BATCH_KEYS] * len(PROOFS)
    assert [bytes.fromhex(entry["digest"]) for entry in body["batches"]] == [p.info.digest for p in PROOFS]
    lean = body["commit_proof"][0]
    assert lean["txs"] == [] and len(lean["batches"]) == 1
    assert "batches" not in body["commit_proof"][1]


async def test_a_node_that_reorders_a_batched_blocks_transactions_is_caught() -> None:
    view = BatchedBlocks()
    doc = block_json(BIG)
    view.txs = [doc["txs"][1], doc["txs"][0], *doc["txs"][2:]]
    async with _client(view) as client:
        with pytest.raises(CertificateError, match="block 1: txs are not the block's batches: batch 1"):
            await client.block(1)


async def test_a_proof_less_block_is_served_without_batches() -> None:
    block, *above = PLAIN
    view = BatchedBlocks(block, tuple(above))
    transport = httpx.ASGITransport(app=make_app(view))
    async with httpx.AsyncClient(transport=transport, base_url=URL) as http:
        body = (await http.get("/blocks/1")).json()
    assert set(body) == COMMITTED_KEYS
    assert all("batches" not in entry for entry in body["commit_proof"])
    async with _client(BatchedBlocks(block, tuple(above))) as client:
        got = await client.block(1)
    assert got is not None and got.block == block and got.batches == ()
