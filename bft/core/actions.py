"""What the replica asks its driver to do: the outputs of `on_message` and `on_timer`.

Owns: the Action types, the Refusal value and the Evidence of equivocation.
May not: perform any of these actions itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bft.core.messages import Block, Message, Proposal, QuorumCert, Vote
from bft.core.refusals import RefusalReason, Refused, Subject
from bft.core.types import ValidatorIndex, View


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver `msg` to validator `to` (never to oneself)."""

    to: ValidatorIndex
    msg: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Deliver `msg` to every other validator."""

    msg: Message


@dataclass(frozen=True, slots=True)
class Commit:
    """`blocks` (oldest first, heights consecutive) are committed.

    `qcs[i]` certifies `blocks[i]`; `proof` is (b', b''), the two blocks above the last one whose
    views follow it (b' alone under the two-chain rule), and `commit_qc` certifies the last of
    them: together they close the commit chain that commits the blocks, a proof anyone holding
    the validator set and the genesis' commit rule can check.
    """

    blocks: tuple[Block, ...]
    qcs: tuple[QuorumCert, ...]
    commit_qc: QuorumCert
    proof: tuple[Block, ...] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    """An expected refusal of input, to be logged and counted: `reason` is the bounded category
    (the metric label), `detail` the sentence with the numbers. `str()` is the log line, e.g.
    "ignoring proposal: wrong leader for view 12: 3, expected 1"."""

    what: Subject
    reason: RefusalReason
    detail: str
    view: View | None = None
    sender: ValidatorIndex | None = None

    @classmethod
    def of(
        cls, what: Subject, refused: Refused, view: View | None = None, sender: ValidatorIndex | None = None
    ) -> Refusal:
        """The refusal of `what` for a check's verdict `refused`."""
        return cls(what, refused.reason, refused.detail, view, sender)

    def __str__(self) -> str:
        return f"ignoring {self.what}: {self.detail}"


class EvidenceKind(enum.StrEnum):
    """What a validator signed twice for one view."""

    VOTE = "vote"
    PROPOSAL = "proposal"


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two different messages, each validly signed by `validator`, for one `view`: proof of
    equivocation that anyone holding the validator set can check. `first` is the one seen
    first. Emitted at most once per (kind, validator, view) by one replica incarnation; the
    driver keeps it (the node in its block store), nothing in the protocol acts on it."""

    kind: EvidenceKind
    validator: ValidatorIndex
    view: View
    first: Vote | Proposal
    second: Vote | Proposal


@dataclass(frozen=True, slots=True)
class ViewChange:
    """The replica entered `view`; `via` is 'qc' or 'tc'. For logs, metrics and the live view."""

    view: View
    via: str


@dataclass(frozen=True, slots=True)
class SendRaw:
    """Put arbitrary bytes on the wire to `to`. Never produced by an honest replica: Byzantine
    programs use it to send garbage and oversized frames."""

    to: ValidatorIndex
    data: bytes


Action = Send | Broadcast | Commit | Refusal | Evidence | ViewChange | SendRaw
