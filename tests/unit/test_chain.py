"""Hash links between a complaint's events."""

from __future__ import annotations

import copy
import itertools
import json
import pickle
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from shared.audit.verify import PERSONAL_FIELDS
from shared.domain.chain import GENESIS, chain, json_default, link
from shared.domain.codes import Status
from shared.domain.personal import (
    ERASED_TEXT,
    EVENT_FIELDS,
    Erased,
    as_record,
    copied_along,
    leaves,
)
from shared.http.views import mask_email, mask_phone


def records() -> list[dict[str, Any]]:
    return [{"version": v, "type": "E", "data": {"n": v, "text": "投诉"}} for v in range(1, 6)]


def test_each_hash_links_to_the_previous_one() -> None:
    links = chain(records())
    assert links[0][0] == GENESIS
    for (_, previous), (prev_hash, _) in itertools.pairwise(links):
        assert prev_hash == previous
    assert len({h for _, h in links}) == len(links)


def test_changing_an_event_changes_its_hash_and_every_later_one() -> None:
    original = chain(records())
    tampered = records()
    tampered[2]["data"]["n"] = 99
    changed = chain(tampered)
    assert changed[:2] == original[:2]
    assert all(a[1] != b[1] for a, b in zip(original[2:], changed[2:], strict=True))


def test_key_order_does_not_matter_but_content_does() -> None:
    assert link(GENESIS, {"a": 1, "b": 2}) == link(GENESIS, {"b": 2, "a": 1})
    assert link(GENESIS, {"a": 1}) != link(GENESIS, {"a": 2})
    assert link(GENESIS, {"a": 1}) != link("f" * 64, {"a": 1})


def test_masking() -> None:
    assert mask_phone("13812341234") == "138****1234"
    assert mask_phone("12345") == "*****"
    assert mask_email("zhang.wei@example.cn") == "z***@example.cn"
    assert mask_phone(None) is None


def test_the_verifier_commits_to_every_field_the_store_seals() -> None:
    """The standalone verifier keeps its own list of personal fields; it must be ours."""
    assert PERSONAL_FIELDS == EVENT_FIELDS


def test_an_erased_value_reads_erased_and_keeps_its_digest() -> None:
    value = Erased("ab" * 32)
    assert value == ERASED_TEXT
    for kept in (copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert isinstance(kept, Erased) and kept.sha256 == value.sha256
    data = {"intake": {"customer": {"name": value}}, "comments": [value, "plain"]}
    assert as_record(data) == {
        "intake": {"customer": {"name": {"sha256": "ab" * 32}}},
        "comments": [{"sha256": "ab" * 32}, "plain"],
    }


def test_a_record_holds_json_types_exactly_as_json_would_write_them() -> None:
    """The chain and the export hash and write `as_record` directly; it must give what a
    JSON round trip of the event data would, or a regulator's verifier would disagree."""
    data = {
        "at": datetime(2026, 11, 23, 8, 30, tzinfo=UTC),
        "id": UUID(int=7),
        "amount": Decimal("38.00"),
        "status": Status.ARCHIVED,
        "pair": (1, 2.5),
        "flags": [True, None, "投诉"],
        3: {"nested": [{"summary": Erased("cd" * 32)}]},
        "counts": OrderedDict(a=1),
    }
    expected = json.loads(json.dumps(data, default=json_default))
    expected[str(3)] = {"nested": [{"summary": {"sha256": "cd" * 32}}]}
    record = as_record(data)
    assert record == expected
    assert json.dumps(record) == json.dumps(expected)
    assert type(record["status"]) is str and type(record["pair"]) is list


def test_sealing_copies_only_what_it_replaces() -> None:
    state = {
        "intake": {"customer": {"name": "n", "phone": "p"}, "evidence": [{"summary": "s"}]},
        "deadlines": [{"due_at": "x"}],
    }
    paths = (("intake", "customer", "name"), ("intake", "evidence", "*", "summary"))
    copied = copied_along(state, paths)
    for path in paths:
        for parent, name in leaves(copied, path):
            parent[name] = "sealed"
    assert state["intake"]["customer"]["name"] == "n"
    assert state["intake"]["evidence"][0]["summary"] == "s"
    assert copied["intake"]["customer"] == {"name": "sealed", "phone": "p"}
    assert copied["intake"]["evidence"] == [{"summary": "sealed"}]
    assert copied["deadlines"] is state["deadlines"]  # nothing to seal there: shared


def test_an_export_line_is_its_body_with_the_hashes_last() -> None:
    from shared.audit.chain import export_line, line_body

    line: dict[str, Any] = {
        "position": 7,
        "type": "Accepted",
        "ctx": None,
        "data": {"intake": {"customer": {"name": {"sha256": "ab" * 32}}, "note": '投诉 "x"\n'}},
        "salt": None,
    }
    spliced = export_line(line_body(line), "c" * 64, "d" * 64)
    whole = {**line, "hash": "c" * 64, "prev_hash": "d" * 64}
    assert spliced == json.dumps(whole, ensure_ascii=False, separators=(",", ":")) + "\n"
