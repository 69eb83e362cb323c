"""Live control of a running chaos cluster: `bft ctl partition 0,1 2,3` while `bft cluster --chaos`
runs.

Owns: the control protocol (one JSON line each way over a Unix socket in the cluster's
directory: `{"words": [...]}` in, `{"ok": bool, "detail": str}` out), the parsing of a command's
words into a scenario `Action` (`parse_words`), the server (`serve_control`) and the client
(`send_words`). May not: act on the cluster itself (the handler it is given does, through the
testbed, so a command does exactly what the same step of a scenario file does).

Commands (nodes are validator indices; LINKS is `all`, `node=K` or `A>B,C>D`):
  partition 0,1 2,3        cut every link between the groups (unlisted nodes: one more group)
  heal                     lift the partition and every link fault
  kill N | restart N | pause N | resume N | wipe N (kill -9, delete its data; restart it after)
  delay MS [JITTER_MS] [LINKS]   drop RATE [LINKS]   duplicate RATE [LINKS]   reorder RATE [LINKS]
  bandwidth BYTES_PER_S [LINKS]  cut A B (A's messages stop reaching B)   clear [LINKS]
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

import trio

from bft.chaos.command import CONTROL_USAGE as USAGE
from bft.chaos.scenario import (
    LINK_FAULT_FIELDS,
    Action,
    ClearLinks,
    Heal,
    Kill,
    Link,
    Partition,
    Pause,
    Restart,
    Resume,
    SetLinks,
    Wipe,
)
from bft.node.logs import kv

log = logging.getLogger("bft.chaos")

CONTROL_SOCKET: Final = "ctl.sock"
MAX_LINE_BYTES: Final = 4096
CONTROL_TIMEOUT_S: Final = 30.0


class ControlError(ValueError):
    """A command that means nothing: the message says what was expected."""


def _node(word: str, nodes: int) -> int:
    if not word.isdigit() or int(word) >= nodes:
        raise ControlError(f"{word!r} is not a node (0..{nodes - 1})")
    return int(word)


def _links(words: Sequence[str], nodes: int) -> tuple[Link, ...]:
    spec = words[0] if words else "all"
    if len(words) > 1:
        raise ControlError(f"unexpected {' '.join(words[1:])!r}")
    if spec == "all":
        return tuple((a, b) for a in range(nodes) for b in range(nodes) if a != b)
    if spec.startswith("node="):
        k = _node(spec[5:], nodes)
        return tuple((a, b) for a in range(nodes) for b in range(nodes) if a != b and k in (a, b))
    links = []
    for pair in spec.split(","):
        a, sep, b = pair.partition(">")
        if not sep:
            raise ControlError(f"links are all, node=K or A>B,C>D; got {spec!r}")
        link = (_node(a, nodes), _node(b, nodes))
        if link[0] == link[1]:
            raise ControlError(f"{pair!r} is not a link between two nodes")
        links.append(link)
    return tuple(links)


def _number(word: str, what: str, low: float, high: float) -> float:
    try:
        value = float(word)
    except ValueError:
        raise ControlError(f"{what} must be a number, got {word!r}") from None
    if not low <= value <= high:
        raise ControlError(f"{what} must be in {low:g}..{high:g}, got {value:g}")
    return value


def parse_words(words: Sequence[str], nodes: int) -> Action:
    """The action a command's words name; ControlError (saying what was expected) otherwise."""
    if not words:
        raise ControlError(USAGE)
    verb, args = words[0], list(words[1:])
    process: dict[str, Callable[[tuple[int, ...]], Action]] = {
        "kill": Kill,
        "restart": Restart,
        "pause": Pause,
        "resume": Resume,
        "wipe": Wipe,
    }
    if verb in process:
        if len(args) != 1:
            raise ControlError(f"{verb} takes one node")
        return process[verb]((_node(args[0], nodes),))
    if verb == "heal" and not args:
        return Heal()
    if verb == "partition":
        groups = [tuple(sorted({_node(w, nodes) for w in group.split(",")})) for group in args]
        listed = [n for g in groups for n in g]
        if not groups or len(listed) != len(set(listed)):
            raise ControlError("partition takes groups like 0,1 2,3, each node in at most one")
        rest = tuple(n for n in range(nodes) if n not in listed)
        return Partition(tuple(groups) + ((rest,) if rest else ()))
    if verb == "cut" and len(args) == 2:
        return SetLinks(_links([f"{args[0]}>{args[1]}"], nodes), {"cut": True})
    if verb == "clear":
        return ClearLinks(_links(args, nodes), LINK_FAULT_FIELDS)
    if verb == "delay" and args:
        delay = _number(args[0], "delay (ms)", 0, 60_000) / 1000
        jitter = 0.0
        if len(args) > 1 and args[1][0].isdigit():
            jitter = _number(args.pop(1), "jitter (ms)", 0, 60_000) / 1000
        return SetLinks(_links(args[1:], nodes), {"delay_s": delay, "jitter_s": jitter})
    rates = {"drop": "drop_rate", "duplicate": "duplicate_rate", "reorder": "reorder_rate"}
    if verb in rates and args:
        return SetLinks(_links(args[1:], nodes), {rates[verb]: _number(args[0], verb, 0, 1)})
    if verb == "bandwidth" and args:
        rate = _number(args[0], "bandwidth (bytes/s)", 1, 1e12)
        return SetLinks(_links(args[1:], nodes), {"bandwidth_bytes_per_s": rate})
    raise ControlError(f"unknown command {' '.join(words)!r}; {USAGE}")


Handler = Callable[[Action], Awaitable[str]]


async def serve_control(
    path: Path, nodes: int, handler: Handler, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Answer control commands on the Unix socket `path` until cancelled (the socket file is
    removed on the way out). Only this user can connect (the directory is the cluster's)."""
    path.unlink(missing_ok=True)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    path.chmod(0o600)
    sock.listen(8)
    listener = trio.SocketListener(sock)
    task_status.started()
    try:
        async with listener, trio.open_nursery() as nursery:
            while True:
                stream = await listener.accept()
                nursery.start_soon(_serve_one, stream, nodes, handler)
    finally:
        path.unlink(missing_ok=True)


async def _serve_one(stream: trio.SocketStream, nodes: int, handler: Handler) -> None:
    async with stream:
        answer: dict[str, object]
        with trio.move_on_after(CONTROL_TIMEOUT_S):
            try:
                line = await _read_line(stream)
                words = json.loads(line)["words"]
                if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                    raise ControlError("words must be a list of strings")
                action = parse_words(words, nodes)
                answer = {"ok": True, "detail": await handler(action)}
            except (ControlError, ValueError, KeyError, TypeError) as exc:
                answer = {"ok": False, "detail": str(exc)}
            log.info(kv(event="control", ok=answer["ok"], detail=answer["detail"]))
            await stream.send_all(json.dumps(answer).encode() + b"\n")


async def _read_line(stream: trio.SocketStream) -> str:
    data = b""
    while b"\n" not in data:
        chunk = await stream.receive_some(MAX_LINE_BYTES)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE_BYTES:
            raise ControlError("command too long")
    return data.split(b"\n", 1)[0].decode("utf-8", "replace")


async def send_words(path: Path, words: Sequence[str]) -> tuple[bool, str]:
    """Send one command to the cluster listening on `path`; (ok, detail)."""
    with trio.fail_after(CONTROL_TIMEOUT_S):
        stream = await trio.open_unix_socket(str(path))
        async with stream:
            await stream.send_all(json.dumps({"words": list(words)}).encode() + b"\n")
            answer = json.loads(await _read_line(stream))
    return bool(answer["ok"]), str(answer["detail"])
