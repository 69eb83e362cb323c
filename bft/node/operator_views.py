"""Read-only snapshots of a running node for the operator endpoints (`GET /net_info`,
`GET /consensus_state`, `GET /unconfirmed_txs`).

Owns: the typed values the runtime builds from its parts and the API renders
(`bft.node.api_json`), so that neither side passes loose dicts to the other.
May not: compute anything or hold references into the node: every field is a copy, taken at
one moment by the drive task's thread (nothing can change in between: trio is single-threaded).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class CertRef:
    """A certificate's view and the block it certifies."""

    view: int
    block_id: bytes


@dataclass(frozen=True, slots=True)
class TimeoutCertRef:
    """The highest TC seen: its view, the high QC it carries and who signed it."""

    view: int
    high_qc: CertRef
    signers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ConsensusState:
    """Where the replica is. `timeouts_seen` are the validators whose verified timeouts for
    `view` are held (ours included once we timed out); `timeouts_sent` counts the timeouts we
    broadcast in `view` (the first and the re-sends at each backed-off deadline);
    `upcoming_leaders` are (view, leader) for the views after `view`."""

    view: int
    time_in_view_s: float
    next_deadline_in_s: float | None
    leader: int
    upcoming_leaders: tuple[tuple[int, int], ...]
    height: int
    high_qc: CertRef
    locked_qc: CertRef
    last_voted_view: int
    last_tc: TimeoutCertRef | None
    timeouts_seen: tuple[int, ...]
    timeouts_sent: int
    quorum: int


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """One other validator as the transport sees it. Byte counts are of sealed frames, over all
    connections since the node started; `connected_for_s`, `dialed_by` and `remote` are of the
    live connection (None without one). `frames_dropped` is the sum of the three drop counts."""

    index: int
    address: str
    connected: bool
    dialed_by: Literal["us", "them"] | None
    remote: str | None
    connected_for_s: float | None
    bytes_sent: int
    bytes_received: int
    frames_dropped: int
    dropped_outgoing_full: int
    dropped_outgoing_expired: int
    dropped_incoming: int
    queued_frames: int
    queued_bytes: int


@dataclass(frozen=True, slots=True)
class NetInfo:
    """Where the node listens (p2p, then the API) and every peer, by index."""

    listening: tuple[str, ...]
    peers: tuple[PeerInfo, ...]

    @property
    def n_peers(self) -> int:
        """Peers connected now (as CometBFT's `n_peers`)."""
        return sum(1 for peer in self.peers if peer.connected)


@dataclass(frozen=True, slots=True)
class PendingTxs:
    """The mempool: how many transactions wait, their bytes, and the hashes of the oldest few."""

    count: int
    size_bytes: int
    hashes: tuple[bytes, ...]
