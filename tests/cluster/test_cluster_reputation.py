"""Leader reputation on real node processes (`bft testnet --leader-reputation`): with one of four
validators killed, the survivors bench it after its first failed term and commit on without its
turns, and a restarted validator leads again; the failed-leader records verify through the
client (`bft block`)."""

from __future__ import annotations

import json

from cluster_helpers import MakeCluster, assert_same_chain, run_bft

# The survivors must commit this many blocks after the kill; under the fixed schedule the dead
# validator's term comes round every 2n = 8 views, so it would be blamed about 15 times.
BLOCKS_AFTER_KILL = 120
PROGRESS_TIMEOUT_S = 60.0
# Its first term can be blamed in one block, or two if the view before it fails apart (its
# votes went to the dead leader): never once per round.
MAX_RECORDS_OF_THE_DEAD = 2
PROOF_HEIGHTS = 3
PIPELINE_HEIGHTS = 3


def test_a_killed_validator_costs_its_first_term_and_leads_again_after_its_restart(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster(4, leader_reputation=True)
    victim, survivors = 3, [0, 1, 2]
    cluster.start_all()
    cluster.wait_up()
    cluster.wait_heights(cluster.all, 5, PROGRESS_TIMEOUT_S, "the first blocks")
    cluster.kill([victim])
    start = cluster.min_height(survivors)
    cluster.wait_heights(
        survivors, start + BLOCKS_AFTER_KILL, PROGRESS_TIMEOUT_S, f"{BLOCKS_AFTER_KILL} blocks without node 3"
    )
    # The newest heights' commit proofs may still be on their way into the store (`/blocks` is
    # 404 until they are): read the blocks a few heights below the tip.
    top = cluster.min_height(survivors) - PROOF_HEIGHTS
    blocks = [cluster.block(0, h) for h in range(start + 1, top + 1)]
    missing = [start + 1 + k for k, b in enumerate(blocks) if b is None]
    assert not missing, (
        f"no /blocks at heights {missing} (start {start}, top {top}): {cluster.heights(survivors)}"
    )
    records = [b["failed_leaders"] for b in blocks if b is not None and "failed_leaders" in b]
    blamed = [r for r in records if victim in r]
    assert 1 <= len(blamed) <= MAX_RECORDS_OF_THE_DEAD, records
    # And it leads no block while it is down (but those of its proposals the survivors had
    # certified before it died, which commit with the next blocks: the pipeline's few heights).
    led = [b["height"] for b in blocks if b is not None and b["proposer"] == victim]
    assert all(h <= start + PIPELINE_HEIGHTS for h in led), (start, led)

    # A block with a record verifies through the client, certificates and id and all.
    height = next(b["height"] for b in blocks if b is not None and "failed_leaders" in b)
    port = cluster.procs[0].api_port
    genesis = cluster.root / "genesis.json"
    shown = run_bft(["block", str(height), "--node", f"http://127.0.0.1:{port}", "--genesis", str(genesis)])
    assert json.loads(shown.stdout)["failed_leaders"] == next(r for r in records if victim in r)

    # Restarted, it votes, its signature lands in a QC, and it proposes blocks again.
    cluster.start(victim)
    back = cluster.min_height(survivors)

    def led_again() -> bool:
        tip = cluster.min_height(survivors) - PROOF_HEIGHTS
        return any(
            (b := cluster.block(0, h)) is not None and b["proposer"] == victim
            for h in range(back + 1, tip + 1)
        )

    cluster.wait(led_again, PROGRESS_TIMEOUT_S, "node 3 to propose a committed block after its restart")
    tip = cluster.min_height(cluster.all)
    assert_same_chain(cluster, cluster.all, range(max(1, tip - 30), tip + 1))
