"""What the replica asks its driver to do: the outputs of `on_message` and `on_timer`.

Owns: the Action types and the Refusal value.
May not: perform any of these actions itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from bft.core.messages import Block, Message, QuorumCert
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
    views follow it, and `commit_qc` certifies b'': together they close the three-chain that
    commits the blocks, a proof anyone holding the validator set can check.
    """

    blocks: tuple[Block, ...]
    qcs: tuple[QuorumCert, ...]
    commit_qc: QuorumCert
    proof: tuple[Block, ...] = ()


@dataclass(frozen=True, slots=True)
class Refusal:
    """An expected refusal of input, to be logged: e.g. 'ignoring proposal: wrong leader for view 12'."""

    sender: ValidatorIndex | None
    view: View | None
    what: str
    reason: str

    def __str__(self) -> str:
        return f"ignoring {self.what}: {self.reason}"


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


Action = Send | Broadcast | Commit | Refusal | ViewChange | SendRaw
