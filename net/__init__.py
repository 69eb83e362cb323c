"""Transport: the authenticated, encrypted TCP links between validators.

Modules: `frames` (length-prefixed ChaCha20-Poly1305 frames and plain handshake frames, sans-I/O),
`handshake` (mutual Ed25519 authentication bound to an ephemeral X25519 exchange, sans-I/O),
`transport` (the trio driver: listener with evicting pending-handshake table, dialers, reconnect),
`outqueue` (per-peer outgoing queues bounded in frames and bytes, aged out), `ratelog` (log
lines thinned per key) and `errors`. The package may import only the stdlib, `cryptography`,
`trio` and `crypto`, never `bft`.
"""
