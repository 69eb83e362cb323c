"""Argument types of the `bft` command: the one place that says what a count, a port, a
duration or a node URL on the command line may be.

Owns: argparse `type=` functions (`positive_int`, `non_negative_int`, `port`, `positive_float`,
`non_negative_float`, `node_url`). Each returns the parsed value or raises
`argparse.ArgumentTypeError` with a message that says what was expected and what was given, so
that argparse reports "argument --X: ..." and exits 2 before anything runs.
May not: import anything beyond the stdlib (every subcommand's parser uses it, including the
ones that start without httpx), or know what a subcommand does with the value.

Why it exists: `bft sim --seeds 0` ran nothing and exited 0, and `bft get --node
http://host:port/api` turned every 404 of the wrong path into "key is not set". A value that
cannot mean anything is refused where it is read, the same way by every command.
"""

from __future__ import annotations

import argparse
import math
import urllib.parse

MAX_PORT = 65535


def _whole(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A count: 1 or more."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """A seed, a height: 0 or more."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def port(text: str) -> int:
    """A TCP port, 1..65535 (0, "any free port", is never what a configuration means)."""
    value = _whole(text)
    if not 1 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"a port is 1..{MAX_PORT}, got {value}")
    return value


def positive_float(text: str) -> float:
    """A duration or a rate that must be more than 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text.strip()}")
    return value


def non_negative_float(text: str) -> float:
    """A duration or a rate where 0 means "none" or "no limit"."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text.strip()}")
    return value


def node_url(text: str) -> str:
    """A node's API base URL: http(s)://host[:port], nothing after it ("http://" is added when
    there is no scheme; a trailing "/" is dropped). Returned without a trailing slash.

    A path is refused, not joined: the client appends /status, /kv/KEY... to the base, so a path
    would make every request miss and every 404 read as "absent"."""
    stripped = text.strip()

    def refuse(why: str) -> argparse.ArgumentTypeError:
        return argparse.ArgumentTypeError(f"not a node URL: {stripped!r} ({why}; expected http://host:port)")

    if not stripped:
        raise refuse("empty")
    full = stripped if "://" in stripped else "http://" + stripped
    try:
        parts = urllib.parse.urlsplit(full)
        given_port = parts.port
    except ValueError as exc:
        # urlsplit's own words for an unreadable port ("Port out of range 0-65535", ...).
        raise refuse(f"a port is 1..{MAX_PORT}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise refuse(f"the scheme must be http or https, got {parts.scheme!r}")
    if parts.username is not None or parts.password is not None:
        raise refuse("a node URL has no user name or password")
    if not parts.hostname:
        raise refuse("no host")
    if given_port is not None and not 1 <= given_port <= MAX_PORT:
        raise refuse(f"a port is 1..{MAX_PORT}, got {given_port}")
    if parts.path not in ("", "/"):
        raise refuse(f"a node URL has no path, got {parts.path!r}")
    if parts.query:
        raise refuse(f"a node URL has no query, got {parts.query!r}")
    if parts.fragment:
        raise refuse(f"a node URL has no fragment, got {parts.fragment!r}")
    return f"{parts.scheme}://{parts.netloc}"
