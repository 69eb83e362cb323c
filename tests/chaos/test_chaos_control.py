"""`bft ctl`'s words become exactly the scenario actions a timeline would hold, and anything
else is refused with what was expected; the socket protocol round-trips on a real Unix socket."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from bft.chaos.control import ControlError, parse_words, send_words, serve_control
from bft.chaos.scenario import (
    LINK_FAULT_FIELDS,
    Action,
    ClearLinks,
    Heal,
    Kill,
    Partition,
    Pause,
    Restart,
    Resume,
    SetLinks,
    Wipe,
)

ALL = tuple((a, b) for a in range(4) for b in range(4) if a != b)


@pytest.mark.parametrize(
    ("words", "action"),
    [
        ("partition 0,1 2,3", Partition(((0, 1), (2, 3)))),
        ("partition 3", Partition(((3,), (0, 1, 2)))),
        ("heal", Heal()),
        ("kill 2", Kill((2,))),
        ("restart 2", Restart((2,))),
        ("pause 0", Pause((0,))),
        ("resume 0", Resume((0,))),
        ("wipe 1", Wipe((1,))),
        ("cut 0 1", SetLinks(((0, 1),), {"cut": True})),
        ("delay 100", SetLinks(ALL, {"delay_s": 0.1, "jitter_s": 0.0})),
        (
            "delay 100 20 node=2",
            SetLinks(tuple(x for x in ALL if 2 in x), {"delay_s": 0.1, "jitter_s": 0.02}),
        ),
        ("drop 0.05 0>1,1>0", SetLinks(((0, 1), (1, 0)), {"drop_rate": 0.05})),
        ("duplicate 1 all", SetLinks(ALL, {"duplicate_rate": 1.0})),
        ("reorder 0.5", SetLinks(ALL, {"reorder_rate": 0.5})),
        (
            "bandwidth 100000 node=0",
            SetLinks(tuple(x for x in ALL if 0 in x), {"bandwidth_bytes_per_s": 1e5}),
        ),
        ("clear", ClearLinks(ALL, LINK_FAULT_FIELDS)),
    ],
)
def test_words_become_the_scenario_actions(words: str, action: Action) -> None:
    assert parse_words(words.split(), 4) == action


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ("", "commands:"),
        ("kill 7", "'7' is not a node"),
        ("kill", "kill takes one node"),
        ("partition 0,1 1,2", "each node in at most one"),
        ("drop 2", "drop must be in 0..1"),
        ("delay x", "must be a number"),
        ("cut 0 0", "not a link between two nodes"),
        ("drop 0.1 0-1", "links are all, node=K or A>B"),
        ("drop 0.1 1>1", "not a link between two nodes"),
        ("explode", "unknown command 'explode'"),
    ],
)
def test_anything_else_is_refused_with_what_was_expected(words: str, message: str) -> None:
    with pytest.raises(ControlError, match=message):
        parse_words(words.split(), 4)


async def test_a_command_and_its_refusal_travel_over_the_socket(tmp_path: Path) -> None:
    done: list[Action] = []

    async def handler(action: Action) -> str:
        done.append(action)
        return f"did {type(action).__name__}"

    path = tmp_path / "ctl.sock"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control, path, 4, handler)
            assert path.stat().st_mode & 0o777 == 0o600
            assert await send_words(path, ["kill", "2"]) == (True, "did Kill")
            ok, detail = await send_words(path, ["kill", "9"])
            assert not ok and "'9' is not a node" in detail
            nursery.cancel_scope.cancel()
    assert done == [Kill((2,))]
    assert not path.exists()
