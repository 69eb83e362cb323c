"""The one way to build a replica, used by the node, the simulator, the Byzantine wrappers'
drivers and the tests alike: if the node builds it so, the simulator does too.

Owns: `build_replica` (certifier, safety rules holding the key, the replica over its ports).
May not: choose ports or settings; callers pass every one.
"""

from __future__ import annotations

from bft.core.blocktree import genesis
from bft.core.certs import Certifier
from bft.core.config import ReplicaConfig
from bft.core.ports import Ports
from bft.core.replica import Replica
from bft.core.safety import SafetyRules
from bft.core.wire import RECOVERY_NONCE_BYTES
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache


def build_replica(
    config: ReplicaConfig,
    key: PrivateKey,
    ports: Ports,
    now: float,
    sig_cache: SignatureCache,
    recovery_nonce: bytes,
) -> Replica:
    """A replica of `config.me` that starts (or restarts) from the durable state behind `ports`;
    `sig_cache` may be shared by replicas of one process (a simulation) to verify each signature
    once; `recovery_nonce` (`wire.RECOVERY_NONCE_BYTES` random bytes, fresh for each start) is
    the probe's nonce should the safety record be missing (`bft.core.recovery`)."""
    if len(recovery_nonce) != RECOVERY_NONCE_BYTES:
        raise ValueError(f"a recovery nonce is {RECOVERY_NONCE_BYTES} bytes, not {len(recovery_nonce)}")
    genesis_qc = genesis(config.chain_id)[1]
    certifier = Certifier(config.chain_id, config.validators, genesis_qc, sig_cache)
    safety = SafetyRules(key, config.me, ports.safety_store, certifier, genesis_qc, config.commit_chain)
    return Replica(config, ports, certifier, safety, now, recovery_nonce)
