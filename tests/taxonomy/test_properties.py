"""Property tests: random taxonomies, random edit sequences, the validator against a model.

The model below tracks parents and deprecation from the accepted edits alone, independently
of the snapshot code; the validator must agree with it on every id and every near miss.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from taxonomy import (
    AddNode,
    DeprecateNode,
    EditRejected,
    MergeNodes,
    MoveNode,
    Node,
    RenameNode,
    Snapshot,
    TagValidator,
    TaxonomyDocument,
    UndeprecateNode,
    apply_edits,
    dump,
    parse_document,
)

ID_ALPHABET = "aAeEoOcCpPxXsSiI019-_./ßÉ"
ids = st.text(ID_ALPHABET, min_size=1, max_size=6).filter(lambda s: s == s.strip())
LOOKALIKES = str.maketrans({"a": "а", "e": "е", "o": "о", "c": "с", "p": "р", "x": "х", "s": "ѕ", "i": "і",
                            "A": "А", "E": "Е", "O": "О", "C": "С", "P": "Р", "X": "Х", "S": "Ѕ", "I": "І"})
#: the default tier runs each property on a quick profile, the slow tier on the full one
QUICK = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FULL = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def taxonomies(draw: st.DrawFn) -> TaxonomyDocument:
    node_ids = draw(st.lists(ids, min_size=1, max_size=20, unique=True))
    nodes = []
    for i, node_id in enumerate(node_ids):
        parent = draw(st.sampled_from([None, *node_ids[:i]]))
        nodes.append(Node(id=node_id, name=f"Name {i}", parent=parent))
    return TaxonomyDocument(name="random", nodes=tuple(nodes))


class Model:
    """Parents and deprecation, as the edit semantics say they should be."""

    def __init__(self, doc: TaxonomyDocument) -> None:
        self.parent = {n.id: n.parent for n in doc.nodes}
        self.deprecated: set[str] = set()

    def active(self) -> set[str]:
        return set(self.parent) - self.deprecated

    def leaves(self) -> set[str]:
        with_children = {p for k, p in self.parent.items() if k not in self.deprecated}
        return self.active() - with_children

    def apply(self, edit: Any) -> None:
        if isinstance(edit, AddNode | MoveNode):
            self.parent[edit.id] = edit.parent
        elif isinstance(edit, MergeNodes):
            for k, p in list(self.parent.items()):
                if p == edit.source:
                    self.parent[k] = edit.target
            self.deprecated.add(edit.source)
        elif isinstance(edit, DeprecateNode):
            self.deprecated.add(edit.id)
        elif isinstance(edit, UndeprecateNode):
            self.deprecated.discard(edit.id)


@st.composite
def edit_for(draw: st.DrawFn, snap: Snapshot) -> Any:
    existing = sorted(snap.nodes)
    some = st.sampled_from(existing)
    maybe = st.one_of(st.none(), some)
    op = draw(st.sampled_from(["add", "add", "rename", "move", "merge", "deprecate", "undeprecate"]))
    if op == "add":
        return AddNode(id=draw(ids), name=f"New {draw(st.integers(0, 99))}", parent=draw(maybe))
    if op == "rename":
        return RenameNode(id=draw(some), name=f"Renamed {draw(st.integers(0, 99))}")
    if op == "move":
        return MoveNode(id=draw(some), parent=draw(maybe))
    if op == "merge":
        return MergeNodes(source=draw(some), target=draw(some))
    if op == "deprecate":
        return DeprecateNode(id=draw(some), replaced_by=draw(maybe))
    return UndeprecateNode(id=draw(some))


def check_invariants(snap: Snapshot, model: Model) -> None:
    assert {n.id: n.parent for n in snap.document.nodes} == model.parent
    assert snap.active_ids == model.active()
    assert snap.active_leaf_ids == model.leaves()
    for node_id in snap.active_ids:
        path = snap.path(node_id)
        assert all(snap.parent(c) == p for p, c in itertools.pairwise(path))
        assert all(a in snap.active_ids for a in path)  # never an active node under a retired one
        assert snap.node(node_id).level == len(path)
    for node_id in set(snap.nodes) - snap.active_ids:
        resolved = snap.resolve(node_id)
        assert resolved is None or resolved in snap.active_ids


def near_misses(node_id: str) -> set[str]:
    return {
        node_id.swapcase(), node_id.upper(), node_id.lower(), f" {node_id}", f"{node_id}\t",
        f"{node_id}\u200b", node_id.translate(LOOKALIKES), node_id.replace("-", "‐"),
        "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in node_id),  # full width
    }


def random_edit_sequences_keep_the_taxonomy_consistent_and_the_validator_exact(
    doc: TaxonomyDocument, data: st.DataObject
) -> None:
    snap = Snapshot(doc)
    model = Model(doc)
    history = [snap]
    for step in range(data.draw(st.integers(0, 25), label="steps")):
        edit = data.draw(edit_for(snap), label=f"edit {step}")
        try:
            snap = apply_edits(snap, [edit], version=snap.version + 1)
        except EditRejected as exc:
            event(f"rejected {exc.code}")
            continue
        event(f"accepted {edit.op}")
        model.apply(edit)
        check_invariants(snap, model)
        history.append(snap)

    leaf_validator = TagValidator(leaf_only=True)
    validator = TagValidator()
    known = set(model.parent)
    for node_id in sorted(known):
        report = validator.validate(snap, [node_id])
        assert report.ok == (node_id in model.active()), (node_id, report)
        if node_id in model.deprecated:
            assert report.errors[0].rule == "deprecated"
            assert report.errors[0].suggestion == snap.resolve(node_id)
        assert leaf_validator.validate(snap, [node_id]).ok == (node_id in model.leaves())
        for variant in near_misses(node_id) - {node_id}:
            verdict = validator.validate(snap, [variant])
            assert verdict.ok == (variant in model.active()), (variant, verdict)  # 0 false accepts/rejects
            if variant not in known and node_id in model.active():
                assert verdict.errors[0].suggestion is not None  # a near miss gets a pointer
    for old in history[:-1]:  # ids of another version
        for node_id in set(snap.nodes) - set(old.nodes):
            assert validator.validate(old, [node_id]).errors[0].rule == "unknown_id"


def json_and_google_round_trips_are_exact(doc: TaxonomyDocument) -> None:
    snap = Snapshot(doc)
    assert Snapshot(parse_document(dump(snap, "json"), "json")).document == snap.document
    from_google = Snapshot(parse_document(dump(snap, "google"), "google"))
    assert [(n.id, n.name, n.parent) for n in from_google.document.nodes] == [
        (n.id, n.name, n.parent) for n in snap.document.nodes
    ]


# each property twice: quick (default tier) and full (slow tier); given() wraps anew each time
test_random_edit_sequences_keep_the_taxonomy_consistent_and_the_validator_exact = QUICK(
    given(doc=taxonomies(), data=st.data())(random_edit_sequences_keep_the_taxonomy_consistent_and_the_validator_exact)
)
test_random_edit_sequences_full = pytest.mark.slow(FULL(
    given(doc=taxonomies(), data=st.data())(random_edit_sequences_keep_the_taxonomy_consistent_and_the_validator_exact)
))
test_json_and_google_round_trips_are_exact = QUICK(given(doc=taxonomies())(json_and_google_round_trips_are_exact))
test_json_and_google_round_trips_full = pytest.mark.slow(FULL(given(doc=taxonomies())(json_and_google_round_trips_are_exact)))
