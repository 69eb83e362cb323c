"""Blocks of a chain with leader reputation through `block_json` and the client's verification:
the failed-leader record is written only when a block has one, it is part of the id the client
recomputes, and a malformed record is refused naming the field (a `CertificateError`)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from core_helpers import GENESIS_BLOCK, chain, make_block, qc_for, vi
from test_client import CERTIFIER

from bft.client import CertificateError, verify_block
from bft.core.messages import Block
from bft.node.api_json import block_json


def _committed_doc(block: Block) -> dict[str, Any]:
    above = chain(block, [block.view + 1, block.view + 2])
    doc: dict[str, Any] = json.loads(json.dumps(block_json(block, qc_for(block), qc_for(above[-1]), above)))
    return doc


BLAMING = replace(make_block(GENESIS_BLOCK, 4), failed_leaders=(vi(1), vi(3)))


def test_a_block_with_a_record_verifies_and_its_json_names_it() -> None:
    doc = _committed_doc(BLAMING)
    assert doc["failed_leaders"] == [1, 3]
    assert verify_block(doc, CERTIFIER).block == BLAMING
    plain = _committed_doc(make_block(GENESIS_BLOCK, 1))
    assert "failed_leaders" not in plain
    assert verify_block(plain, CERTIFIER).block.failed_leaders == ()


def test_the_record_is_in_the_id_the_client_recomputes() -> None:
    doc = _committed_doc(BLAMING)
    del doc["failed_leaders"]
    with pytest.raises(CertificateError, match="not the hash of the block's contents"):
        verify_block(doc, CERTIFIER)
    doc = _committed_doc(BLAMING)
    doc["failed_leaders"] = [1, 2]
    with pytest.raises(CertificateError, match="not the hash of the block's contents"):
        verify_block(doc, CERTIFIER)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ([], "must list 1 to"),
        ([3, 1], "not strictly ascending"),
        ([1, 1], "not strictly ascending"),
        (["1"], "not a validator index"),
        ([-1], "not a validator index"),
        ([True], "not a validator index"),
        ("1,3", "failed_leaders"),
    ],
)
def test_a_malformed_record_is_refused_naming_the_field(value: object, says: str) -> None:
    doc = _committed_doc(BLAMING)
    doc["failed_leaders"] = value
    with pytest.raises(CertificateError, match=says):
        verify_block(doc, CERTIFIER)
