"""Client-side load for the ledger cluster tests: key-value puts over the documented HTTP API.

Owns: building put transactions (the documented JSON format, by hand), a keep-alive JSON client
per thread, and `submit_all`, which gets every transaction acknowledged as committed, retrying
on another node when one fails, and records which node acknowledged what.
May not: import the node's code (a client sees only the HTTP API), or loop without a bound.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

LOCALHOST = "127.0.0.1"
# A wait=commit request answers within the node's 30 s commit wait; allow for a slow machine.
REQUEST_TIMEOUT_S = 45.0


def put_tx(key: str, value: str) -> bytes:
    return json.dumps({"op": "put", "key": key, "value": value}, separators=(",", ":")).encode()


def tx_hash(tx: bytes) -> str:
    return hashlib.sha256(tx).hexdigest()


class JsonClient:
    """One keep-alive HTTP connection to one node; reconnects after an error."""

    def __init__(self, port: int, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, decoded JSON); raises OSError/HTTPException/ValueError when the node fails.
        A keep-alive connection the server closed between requests (hypercorn does after a number
        of requests) is reopened once: every request here is idempotent."""
        try:
            return self._request(method, path, body)
        except http.client.RemoteDisconnected:
            return self._request(method, path, body)

    def _request(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(LOCALHOST, self.port, timeout=self.timeout_s)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            self._conn.request(method, path, body=data, headers=headers)
            response = self._conn.getresponse()
            return response.status, json.loads(response.read())
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class LoadResult:
    """What the clients saw: each tx hash's committed height, and the problems met on the way."""

    committed: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    # Transactions sent again (the remainders of the retried batches), counted once per retry.
    retried_txs: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def acknowledged(self) -> int:
        return len(self.committed)


def submit_all(
    txs: Sequence[bytes],
    ports: Sequence[int],
    *,
    threads: int = 8,
    batch: int = 25,
    deadline_s: float = 240.0,
    on_progress: Callable[[int], None] | None = None,
) -> LoadResult:
    """Submit every tx with wait=commit, in batches spread round-robin over `ports`, from
    `threads` threads. A batch whose node fails (connection refused or reset, a 5xx, a timeout)
    or that comes back partly uncommitted is resubmitted, the remainder only, to the next node:
    identical bytes are one transaction, so a retry never applies anything twice. Returns when
    every tx is acknowledged as committed or at the deadline."""
    result = LoadResult()
    batches = [list(txs[i : i + batch]) for i in range(0, len(txs), batch)]
    next_batch = iter(enumerate(batches))
    take = threading.Lock()
    stop_at = time.monotonic() + deadline_s

    def worker(worker_index: int) -> None:
        clients = {port: JsonClient(port) for port in ports}
        try:
            while time.monotonic() < stop_at:
                with take:
                    item = next(next_batch, None)
                if item is None:
                    return
                number, pending = item
                attempt = number + worker_index
                while pending and time.monotonic() < stop_at:
                    port = ports[attempt % len(ports)]
                    attempt += 1
                    pending = _submit_batch(clients[port], pending, result)
                    if pending:
                        with result.lock:
                            result.retries += 1
                            result.retried_txs += len(pending)
                        time.sleep(0.2)  # a node is down or busy; the next try goes elsewhere
                if on_progress is not None:
                    on_progress(result.acknowledged)
        finally:
            for client in clients.values():
                client.close()

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=max(0.0, stop_at - time.monotonic()) + REQUEST_TIMEOUT_S)
    return result


def _submit_batch(client: JsonClient, txs: list[bytes], result: LoadResult) -> list[bytes]:
    """One wait=commit request; returns the txs not acknowledged as committed."""
    body = {"txs": [base64.b64encode(tx).decode() for tx in txs], "wait": "commit"}
    try:
        status, answer = client.request("POST", "/txs", body)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        with result.lock:
            result.errors.append(f"port {client.port}: {exc!r}")
        return txs
    if status not in (200, 503) or not isinstance(answer, dict):
        with result.lock:
            result.errors.append(f"port {client.port}: status {status} {answer!r}")
        return txs
    remaining: list[bytes] = []
    for tx, item in zip(txs, answer["results"], strict=True):
        assert item["hash"] == tx_hash(tx), f"result for the wrong tx: {item}"
        if item["status"] == "committed":
            with result.lock:
                result.committed[item["hash"]] = int(item["height"])
        elif item["status"] == "rejected" and item.get("error") != "mempool full":
            raise AssertionError(f"a valid put was rejected: {item}")
        else:
            remaining.append(tx)
    return remaining
