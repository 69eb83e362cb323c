"""The argument types of `bft` (`bft.cli_args`): what a count, a port, a duration or a node URL
may be, and the message for what it may not."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

from bft import cli_args


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (cli_args.positive_int, "1", 1),
        (cli_args.positive_int, " 12 ", 12),
        (cli_args.non_negative_int, "0", 0),
        (cli_args.port, "1", 1),
        (cli_args.port, "65535", 65535),
        (cli_args.positive_float, "0.5", 0.5),
        (cli_args.positive_float, "3", 3.0),
        (cli_args.non_negative_float, "0", 0.0),
    ],
)
def test_types_accept_sensible_values(parse: Callable[[str], object], text: str, value: object) -> None:
    assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text", "complaint"),
    [
        (cli_args.positive_int, "0", "must be at least 1, got 0"),
        (cli_args.positive_int, "-1", "must be at least 1, got -1"),
        (cli_args.positive_int, "two", "expected a whole number, got 'two'"),
        (cli_args.positive_int, "1.5", "expected a whole number, got '1.5'"),
        (cli_args.non_negative_int, "-3", "must be 0 or more, got -3"),
        (cli_args.port, "0", "a port is 1..65535, got 0"),
        (cli_args.port, "65536", "a port is 1..65535, got 65536"),
        (cli_args.port, "http", "expected a whole number, got 'http'"),
        (cli_args.positive_float, "0", "must be more than 0, got 0"),
        (cli_args.positive_float, "-2.5", "must be more than 0, got -2.5"),
        (cli_args.positive_float, "nan", "expected a finite number, got 'nan'"),
        (cli_args.positive_float, "inf", "expected a finite number, got 'inf'"),
        (cli_args.positive_float, "soon", "expected a number, got 'soon'"),
        (cli_args.non_negative_float, "-0.1", "must be 0 or more, got -0.1"),
    ],
)
def test_types_refuse_nonsense(parse: Callable[[str], object], text: str, complaint: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        parse(text)
    assert str(info.value) == complaint


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("http://127.0.0.1:26601", "http://127.0.0.1:26601"),
        ("http://127.0.0.1:26601/", "http://127.0.0.1:26601"),
        ("127.0.0.1:26603", "http://127.0.0.1:26603"),
        ("https://node.example", "https://node.example"),
        ("http://[::1]:26601", "http://[::1]:26601"),
        ("  http://localhost:1  ", "http://localhost:1"),
    ],
)
def test_node_urls_that_are_accepted(text: str, url: str) -> None:
    assert cli_args.node_url(text) == url


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("ftp://node.test", "the scheme must be http or https, got 'ftp'"),
        ("http://", "no host"),
        ("http://:26601", "no host"),
        ("http://127.0.0.1:26601/kv", "a node URL has no path, got '/kv'"),
        ("http://127.0.0.1:26601/api/", "a node URL has no path, got '/api/'"),
        ("http://127.0.0.1:26601?x=1", "a node URL has no query, got 'x=1'"),
        ("http://127.0.0.1:26601#top", "a node URL has no fragment, got 'top'"),
        ("http://127.0.0.1:99999", "a port is 1..65535"),
        ("http://127.0.0.1:0", "a port is 1..65535, got 0"),
        ("http://127.0.0.1:port", "a port is 1..65535"),
        ("http://user@127.0.0.1:26601", "a node URL has no user name or password"),
        ("", "empty"),
    ],
)
def test_node_urls_that_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as info:
        cli_args.node_url(text)
    message = str(info.value)
    assert message.startswith(f"not a node URL: {text.strip()!r}") and complaint in message
    assert "expected http://host:port" in message
