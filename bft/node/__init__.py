"""The trio runtime of a node: drives the core with real time, sockets, storage and an HTTP API.

Owns: everything a node process needs beyond the pure core (configuration files, durable storage,
the runtime loop). May not: change the protocol; decisions about safety and commits belong to
`bft.core`.
"""
