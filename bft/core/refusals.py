"""Why the core refuses an input: a closed set of reasons, each with a human detail.

Owns: `RefusalReason` (every reason the core refuses for, a bounded set: safe as a metric label
or a stats key), `Subject` (what was refused) and `Refused` (a reason plus the detail with the
numbers, what every check function returns instead of None).
May not: import anything of the core beyond the stdlib; decide anything (the checks do).

Why a closed set: a peer picks the inputs it sends, so the detail ("view 12 is below the
current view 15") is as varied as it likes. Metrics count the reason, logs print the detail,
as `net.errors.HandshakeRefused(kind, reason)` does for handshakes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RefusalReason(enum.StrEnum):
    """The category of a refusal. Values are stable: dashboards and tests match on them."""

    # Who sent it and when.
    UNKNOWN_SENDER = "unknown-sender"  # not a validator, or ourselves
    NOT_THE_SENDER = "not-the-sender"  # the message's author is not the authenticated peer
    STALE_VIEW = "stale-view"  # below the views we still take
    FUTURE_VIEW = "future-view"  # further ahead than max_views_ahead
    NOT_CURRENT_VIEW = "not-current-view"  # a proposal for a view we have not entered
    WRONG_LEADER = "wrong-leader"  # a proposal not by its view's leader
    NOT_NEXT_LEADER = "not-next-leader"  # a vote sent to us while we do not lead the next view
    # Signatures and certificates.
    UNKNOWN_SIGNER = "unknown-signer"
    BAD_SIGNATURE = "bad-signature"
    BAD_QC = "bad-qc"  # a QC that does not verify (signers, quorum, signatures, genesis)
    BAD_TC = "bad-tc"  # a TC that does not verify, or whose high QC does not
    # A proposal's block.
    PARENT_MISMATCH = "parent-mismatch"  # not linked to its parent (QC's block, height)
    BAD_QC_VIEW = "bad-qc-view"  # its QC is not below the block's view
    TC_VIEW_MISMATCH = "tc-view-mismatch"  # carries a TC for another view than the previous
    SKIPS_VIEWS = "skips-views"  # skips views without a TC
    OVER_BLOCK_LIMIT = "over-block-limit"  # too many transactions or bytes
    TOO_MANY_BLOCKS = "too-many-blocks"  # past the per-view cap of blocks kept
    APP_CLAIM = "app-claim"  # claims an app height or hash other than ours
    APP_NOT_EXECUTED = "app-not-executed"  # the claimed height is not executed here yet
    DUPLICATE_TX = "duplicate-tx"  # a transaction twice in the block or already in the chain
    # Votes.
    VOTE_CONFLICT = "vote-conflict"  # the validator already voted for another block (evidence)
    DUPLICATE_VOTE = "duplicate-vote"  # the same vote again
    # Our own safety rules declined to sign.
    ALREADY_VOTED = "already-voted"
    ALREADY_TIMED_OUT = "already-timed-out"
    LOCK_CONFLICT = "lock-conflict"  # the block does not respect our lock
    BELOW_LAST_VOTE = "below-last-vote"  # a timeout for a view below the one we voted in
    BELOW_TC_HIGH_QC = "below-tc-high-qc"  # two-chain: the block's QC is older than its TC's high QC
    BELOW_LOCK = "below-lock"  # a timeout whose high QC is below our lock
    NOT_OURS = "not-ours"  # a block to sign whose proposer is not us (a bug if ever seen)
    RECOVERING = "recovering"  # our safety record was lost: nothing is signed until recovery ends
    # Fetching and sync.
    UNKNOWN_BLOCK = "unknown-block"  # asked for a block we do not have
    NOT_REQUESTED = "not-requested"  # a response we did not ask for (or not from that peer)
    BAD_CHAIN = "bad-chain"  # blocks that do not chain, or a run that does not extend ours
    FORKS_COMMITTED = "forks-committed"  # a chain that forks below the committed root
    BUFFER_FULL = "buffer-full"  # a bounded buffer (waiting proposals, orphans, fetches) is full
    SYNC_TARGET_TOO_HIGH = "sync-target-too-high"  # a height no chain can have reached by its QC's view
    # The quorum store (`bft.core.quorum_store`).
    BAD_PROOF = "bad-proof"  # a proof of availability that does not verify (signers, signatures)
    BAD_BATCH = "bad-batch"  # a batch over the limits, of another author, or expired
    BATCH_QUOTA = "batch-quota"  # past the author's budget of stored batches (count or bytes)
    BATCH_CONFLICT = "batch-conflict"  # a second batch with an author's number (evidence)
    PAYLOAD_MODE = "payload-mode"  # transactions inline under the quorum store, or proofs without it
    EXPIRED_BATCH = "expired-batch"  # a block referencing a batch past its expiry height
    DUPLICATE_BATCH = "duplicate-batch"  # a batch twice in the block, or already in the chain
    BAD_PAYLOAD = "bad-payload"  # a full block whose transactions are not its batches'
    # Answering peers' requests (`bft.core.serving`).
    RATE_LIMITED = "rate-limited"  # past the requesting validator's budget of requests or answer bytes
    REPEATED_REQUEST = "repeated-request"  # a sync range the peer was sent within a base timeout


class Subject(enum.StrEnum):
    """What was refused: a peer's message, or a step of our own the rules did not allow."""

    PROPOSAL = "proposal"
    VOTE = "vote"
    TIMEOUT = "timeout"
    SYNC_INFO = "sync info"
    BLOCK_REQUEST = "block request"
    BLOCK_RESPONSE = "block response"
    SYNC_REQUEST = "sync request"
    SYNC_RESPONSE = "sync response"
    FETCHED_BLOCK = "fetched block"
    RECOVERY = "recovery"  # a recovery probe or report (`bft.core.recovery`)
    MESSAGE = "message"  # a message refused before its type mattered (e.g. an unknown sender)
    OWN_PROPOSAL = "own proposal"
    OWN_TIMEOUT = "own timeout"
    FETCH = "fetch"
    BATCH = "batch"
    BATCH_ACK = "batch ack"
    BATCH_PROOF = "batch proof"
    BATCH_REQUEST = "batch request"
    BATCH_RESPONSE = "batch response"


@dataclass(frozen=True, slots=True)
class Refused:
    """A check's verdict against an input: the category and the detail with the numbers.

    Contract: `str(refused) == refused.detail`, so it reads as the reason strings did.
    """

    reason: RefusalReason
    detail: str

    def __str__(self) -> str:
        return self.detail
