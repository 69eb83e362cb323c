"""out-of-turn really proposes out of turn: copies of the leader's blocks, valid in every way but
the leader rule, which honest replicas refuse by that rule (or as stale) and no other (driven over the same
instant network as the other behaviours' tests)."""

from __future__ import annotations

import dataclasses

from core_helpers import certifier, config, vi
from test_adversary_behaviours import BYZ, Pump

from bft.core.leader import leader_of
from bft.core.messages import Proposal
from bft.core.proposal_rules import check_proposal
from bft.core.refusals import RefusalReason
from bft.core.types import ValidatorIndex, View


def _copies(pump: Pump) -> list[Proposal]:
    """The Byzantine node's proposals for views it does not lead."""
    return [
        msg
        for to, msg in pump.byz_sends()
        if to is None and isinstance(msg, Proposal) and leader_of(config(1), msg.view) != BYZ
    ]


def test_out_of_turn_proposes_the_leaders_blocks_as_its_own_and_only_the_leader_rule_refuses_them() -> None:
    pump = Pump("out-of-turn")
    pump.run_until(lambda: len(_copies(pump)) >= 5)
    copies = _copies(pump)
    assert len({p.view for p in copies}) == len(copies)  # one copy per view
    for proposal in copies:
        block = proposal.block
        assert block.proposer == BYZ
        refused = check_proposal(config(1), certifier(), block.view, vi(BYZ), proposal, False)
        assert refused is not None and refused.reason is RefusalReason.WRONG_LEADER
        # Had the schedule made it the view's leader, the copy would pass every check.
        leaders = (*(leader_of(config(1), View(v)) for v in range(1, block.view)), ValidatorIndex(BYZ))
        as_leader = dataclasses.replace(config(1), leaders=leaders)
        assert check_proposal(as_leader, certifier(), block.view, vi(BYZ), proposal, False) is None
    pump.run(300)
    refusals = [r for r in pump.honest_refusals() if r.what == "proposal"]
    # A copy that arrives after its view is over is stale first; none is refused for anything else.
    assert {r.reason for r in refusals} <= {RefusalReason.WRONG_LEADER, RefusalReason.STALE_VIEW}
    wrong_leader = {r.view for r in refusals if r.reason is RefusalReason.WRONG_LEADER}
    assert len(wrong_leader) >= len(copies) // 2
    assert min(r.committed_height for r in pump.honest.values()) > 0
