"""Attacks on live nodes, from outside the protocol: `bft attack`.

Owns: hostile connections a stranger or a client can hold against a node's p2p and API ports
(`bft.attack.hostile`), and the floods a validator with a valid key can send
(`bft.attack.validator`). The Byzantine behaviours that run inside a replica are elsewhere
(`bft.adversary`); these attack the node's resources, not the protocol.
May not: import the node's runtime or the protocol core's state machines; everything goes over
TCP as an attacker would send it.
"""
