"""The fuzz corpus in CI, without atheris: every committed input replayed through its target, a
hypothesis run per target that mutates corpus inputs, and the regressions the fuzzer found.

A target passes an input when the product does what it promises with it (a value, or its
documented refusal); it fails only on a real bug (see `targets.py`). The corpus is what
`python tests/fuzz/run.py TARGET --runs N` grew and merged: inputs that each reached code the
others did not, so replaying them covers the decoders' refusal paths one by one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from run import TARGET_NAMES, main
from targets import TARGETS, _FuzzNode, seeds

from bft.node.api import make_app

CORPUS = Path(__file__).resolve().parent / "corpus"
# At least the seeds of every target are committed; a merge never drops below that.
MIN_FILES_PER_TARGET = 3
MAX_CORPUS_BYTES = 2 * 1024 * 1024


def test_the_runner_knows_every_target() -> None:
    assert sorted(TARGET_NAMES) == sorted(TARGETS)


def test_the_runner_without_atheris_says_how_to_install_it_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "atheris", None)  # import atheris now raises ImportError
    assert main(["wire", "--runs", "1"]) == 2
    assert 'pip install -e ".[fuzz]"' in capsys.readouterr().err


def test_the_runner_replays_one_input(capsys: pytest.CaptureFixture[str]) -> None:
    path = corpus_files("wire")[0]
    assert main(["wire", str(path), "--replay"]) == 0
    assert "passed" in capsys.readouterr().out


def corpus_files(name: str) -> list[Path]:
    return sorted((CORPUS / name).iterdir())


def inputs_of(name: str) -> list[bytes]:
    return [p.read_bytes() for p in corpus_files(name)] + seeds(name)


def test_every_target_has_a_committed_corpus_and_it_stays_small() -> None:
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(TARGETS)
    total = 0
    for name in TARGETS:
        files = corpus_files(name)
        assert len(files) >= MIN_FILES_PER_TARGET, name
        total += sum(p.stat().st_size for p in files)
    assert total <= MAX_CORPUS_BYTES


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_corpus_replays(name: str) -> None:
    target = TARGETS[name]
    for path in corpus_files(name):
        try:
            target(path.read_bytes())
        except BaseException as exc:
            raise AssertionError(f"{name} fails on {path.relative_to(CORPUS.parent)}: {exc!r}") from exc


def _apply(base: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(base)
    for op, at, patch in edits:
        at %= len(out) + 1
        if op == 0:
            out[at : at + len(patch)] = patch
        elif op == 1:
            out[at:at] = patch
        else:
            del out[at : at + 1 + len(patch)]
    return bytes(out)


_EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 2**16), st.binary(min_size=1, max_size=8)), max_size=4
)


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_corpus_inputs(name: str, data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(inputs_of(name)), label="base")
    TARGETS[name](_apply(base, data.draw(_EDITS, label="edits")))


# --- regressions the fuzzer found ----------------------------------------------------------------


def _call(scope: dict[str, Any]) -> tuple[int, bytes]:
    """Run one request through the API app in process; (status, body)."""
    app = make_app(_FuzzNode())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async def run() -> None:
        with trio.fail_after(10):
            await app(scope, receive, send)

    trio.run(run)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize(
    ("path", "status"),
    [("/nowhere", 404), ("/blocks/x", 400), ("/evidence", 400), ("/status/", 404), ("/unconfirmed_txs", 400)],
)
def test_a_refusal_with_a_non_utf8_query_string_is_a_json_4xx(path: str, status: int) -> None:
    """Found by `asgi`: the refusal handler logged `request.url.path`, and building the URL decodes
    the query string as UTF-8, so any refused request with a byte such as 0xff in its query (which
    HTTP/2 carries as is; hypercorn passes it on) raised out of the app: a 500 with an empty body
    and a traceback in the log, per request."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"limit=\xff&x=\xfe",
        "headers": [],
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 1),
        "client": ("127.0.0.1", 2),
    }
    got, body = _call(scope)
    assert got == status
    assert isinstance(json.loads(body)["error"], str)
