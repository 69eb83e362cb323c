"""The adversarial test network: perturb a real cluster, prove nothing went wrong, and show it.

Owns: the fault-injecting relay for the p2p links (`relay`), scenario files and the seeded random
nemesis (`scenario`, `nemesis`), the run record (`record`), the checker (`checker`), the runner
behind `bft chaos run` and the report. May import `bft.node` and `bft.client`; the checker judges
only what the documented HTTP API shows.
"""
