"""Transport: framing, the authenticated handshake and the trio driver (arrives with the node)."""
