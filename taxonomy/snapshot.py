"""An immutable, versioned view of one taxonomy: frozen graph plus precomputed indexes.

A request takes one snapshot and uses it to the end; edits build a new snapshot that the
store publishes with a single reference swap, so readers never see a half-applied edit.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from functools import cached_property
from types import MappingProxyType
from typing import Any

import networkx as nx

from taxonomy.errors import TaxonomyError
from taxonomy.lookalike import lookalike_key
from taxonomy.model import Attribute, Node, TaxonomyDocument, paused_gc

#: graph key of an attribute node / of one allowed value (category keys are plain ids)
AttributeKey = tuple[str, str]
ValueKey = tuple[str, str, str]


class Snapshot:
    """One taxonomy version. Never mutated after construction; safe to share across threads."""

    def __init__(self, document: TaxonomyDocument, version: int = 0) -> None:
        self.version = version
        with paused_gc():
            self._build(document)

    # ---- construction -------------------------------------------------------------------
    def _build(self, document: TaxonomyDocument) -> None:
        nodes: dict[str, Node] = {}
        for node in document.nodes:
            if node.id in nodes:
                raise TaxonomyError(f"duplicate node id {node.id!r}")
            nodes[node.id] = node
        attributes: dict[str, Attribute] = {}
        for attr in document.attributes:
            if attr.id in attributes:
                raise TaxonomyError(f"duplicate attribute id {attr.id!r}")
            if len({v.id for v in attr.values}) != len(attr.values):
                raise TaxonomyError(f"attribute {attr.id!r} has duplicate value ids")
            value_ids = {v.id for v in attr.values}
            for value in attr.values:
                if value.replaced_by is not None and (value.replaced_by not in value_ids or value.replaced_by == value.id):
                    raise TaxonomyError(
                        f"value {value.id!r} of {attr.id!r} is replaced by {value.replaced_by!r}, not another value of it"
                    )
            attributes[attr.id] = attr

        children: dict[str, list[str]] = {node_id: [] for node_id in nodes}
        roots: list[str] = []
        for node in document.nodes:
            if node.parent is None:
                roots.append(node.id)
            elif node.parent not in nodes:
                raise TaxonomyError(f"node {node.id!r} has unknown parent {node.parent!r}")
            else:
                children[node.parent].append(node.id)
            if node.replaced_by is not None and node.replaced_by not in nodes:
                raise TaxonomyError(f"node {node.id!r} replaced by unknown node {node.replaced_by!r}")
            for attr_id in node.attributes:
                if attr_id not in attributes:
                    raise TaxonomyError(f"node {node.id!r} attaches unknown attribute {attr_id!r}")
            for attr_id in node.excluded_attributes:
                if attr_id not in attributes:
                    raise TaxonomyError(f"node {node.id!r} excludes unknown attribute {attr_id!r}")
                if attr_id in node.attributes:
                    raise TaxonomyError(f"node {node.id!r} both attaches and excludes {attr_id!r}")

        paths = _paths(nodes)
        # the level is derived from the tree: fix it here so stored input can never disagree
        fixed = [
            n if n.level == len(paths[n.id]) else n.model_copy(update={"level": len(paths[n.id])})
            for n in document.nodes
        ]
        if any(a is not b for a, b in zip(fixed, document.nodes, strict=True)):
            document = document.model_copy(update={"nodes": tuple(fixed)})
            nodes = {n.id: n for n in fixed}

        self.document = document
        self.nodes: Mapping[str, Node] = MappingProxyType(nodes)
        self.attributes: Mapping[str, Attribute] = MappingProxyType(attributes)
        self._paths = paths
        self._all_children = {k: tuple(v) for k, v in children.items()}
        self._children = {
            k: tuple(c for c in v if not nodes[c].deprecated) for k, v in children.items()
        }
        self.roots: tuple[str, ...] = tuple(r for r in roots if not nodes[r].deprecated)
        self.all_roots: tuple[str, ...] = tuple(roots)
        self.active_ids: frozenset[str] = frozenset(k for k, n in nodes.items() if not n.deprecated)
        self.active_leaf_ids: frozenset[str] = frozenset(
            k for k in self.active_ids if not self._children[k]
        )

    @cached_property
    def graph(self) -> Any:
        """The frozen networkx DiGraph: category ids, ``("attribute", id)`` and
        ``("value", attribute_id, value_id)`` nodes; edges parent→child, category→attribute
        (``kind="has_attribute"``, or ``kind="excludes_attribute"`` for an inherited attribute
        the category does not have), attribute→value (``kind="allows"``)."""
        g = nx.DiGraph(name=self.document.name, version=self.version)
        for node in self.document.nodes:
            g.add_node(node.id, kind="category", node=node)
        for node in self.document.nodes:
            if node.parent is not None:
                g.add_edge(node.parent, node.id, kind="child")
        for attr in self.document.attributes:
            g.add_node(("attribute", attr.id), kind="attribute", attribute=attr)
            for value in attr.values:
                g.add_node(("value", attr.id, value.id), kind="value", value=value)
                g.add_edge(("attribute", attr.id), ("value", attr.id, value.id), kind="allows")
        for node in self.document.nodes:
            for attr_id in node.attributes:
                g.add_edge(node.id, ("attribute", attr_id), kind="has_attribute")
            for attr_id in node.excluded_attributes:
                g.add_edge(node.id, ("attribute", attr_id), kind="excludes_attribute")
        return nx.freeze(g)

    def with_version(self, version: int) -> Snapshot:
        """The same content under another version number (shares all indexes)."""
        clone = copy.copy(self)
        clone.version = version
        clone.__dict__.pop("graph", None)  # the graph carries the version in its attributes
        return clone

    # ---- lookups ------------------------------------------------------------------------
    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"<Snapshot v{self.version} {self.document.name!r}: {len(self.nodes)} nodes>"

    def get(self, node_id: str) -> Node | None:
        return self.nodes.get(node_id)

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def is_active(self, node_id: str) -> bool:
        return node_id in self.active_ids

    def parent(self, node_id: str) -> str | None:
        return self.nodes[node_id].parent

    def children(self, node_id: str, *, include_deprecated: bool = False) -> tuple[str, ...]:
        table = self._all_children if include_deprecated else self._children
        return table[node_id]

    def is_leaf(self, node_id: str) -> bool:
        """True when the node has no active child (deprecated children do not count)."""
        return not self._children[node_id]

    def path(self, node_id: str) -> tuple[str, ...]:
        return self._paths[node_id]

    def ancestors(self, node_id: str) -> tuple[str, ...]:
        return self._paths[node_id][:-1]

    def descendants(self, node_id: str, *, include_deprecated: bool = True) -> tuple[str, ...]:
        table = self._all_children if include_deprecated else self._children
        out: list[str] = []
        stack = list(reversed(table[node_id]))
        while stack:
            current = stack.pop()
            out.append(current)
            stack.extend(reversed(table[current]))
        return tuple(out)

    def path_names(self, node_id: str) -> tuple[str, ...]:
        return tuple(self.nodes[i].name for i in self._paths[node_id])

    def path_text(self, node_id: str, sep: str = " > ") -> str:
        return sep.join(self.path_names(node_id))

    def resolve(self, node_id: str) -> str | None:
        """Follow ``replaced_by`` (merges, deprecations) to an active id; None if none."""
        seen: set[str] = set()
        current: str | None = node_id
        while current is not None and current not in seen:
            node = self.nodes.get(current)
            if node is None:
                return None
            if not node.deprecated:
                return current
            seen.add(current)
            current = node.replaced_by
        return None

    def attributes_for(self, category_id: str, *, include_deprecated: bool = False) -> tuple[Attribute, ...]:
        """The attributes a category has: those attached to it or to an ancestor, less those
        excluded on the way down (:attr:`Node.excluded_attributes`), root's first. Deprecated
        attributes are left out unless ``include_deprecated`` (they are no longer offered or
        accepted for new tags, but stay readable)."""
        return tuple(
            attr for attr in (self.attributes[a] for a in self._applicable(category_id))
            if include_deprecated or not attr.deprecated
        )

    def attribute_origin(self, category_id: str, attribute_id: str) -> str | None:
        """The category (self or ancestor) where ``attribute_id`` is attached, if the category
        has it (None also when it is excluded on the way down)."""
        return self._applicable(category_id).get(attribute_id)

    def _applicable(self, category_id: str) -> dict[str, str]:
        """attribute id → the node it is attached at, for the attributes ``category_id`` has."""
        out: dict[str, str] = {}
        for ancestor in self._paths[category_id]:
            node = self.nodes[ancestor]
            for attr_id in node.excluded_attributes:
                out.pop(attr_id, None)
            for attr_id in node.attributes:
                out.setdefault(attr_id, ancestor)
        return out

    # ---- near-miss indexes (lazy: only built when a bad id is seen) ---------------------
    @cached_property
    def lookalike_ids(self) -> Mapping[str, tuple[str, ...]]:
        """lookalike key → ids (active first), to suggest the exact id for a near miss."""
        return _index((lookalike_key(k), k) for k in _active_first(self))

    @cached_property
    def lookalike_names(self) -> Mapping[str, tuple[str, ...]]:
        """lookalike key of active names and synonyms → ids (a name given instead of an id)."""
        pairs: list[tuple[str, str]] = []
        for k in sorted(self.active_ids):
            node = self.nodes[k]
            pairs.extend((lookalike_key(s), k) for s in (node.name, *node.synonyms))
        return _index(pairs)


def _active_first(snapshot: Snapshot) -> list[str]:
    return sorted(snapshot.nodes, key=lambda k: (snapshot.nodes[k].deprecated, k))


def _index(pairs: Iterable[tuple[str, str]]) -> Mapping[str, tuple[str, ...]]:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        bucket = grouped.setdefault(key, [])
        if value not in bucket:
            bucket.append(value)
    return MappingProxyType({k: tuple(v) for k, v in grouped.items()})


def _paths(nodes: Mapping[str, Node]) -> dict[str, tuple[str, ...]]:
    """Root-first id paths of every node; raises on a parent cycle."""
    paths: dict[str, tuple[str, ...]] = {}
    for start in nodes:
        chain: list[str] = []
        on_chain: set[str] = set()
        current: str | None = start
        while current is not None and current not in paths:
            if current in on_chain:
                raise TaxonomyError(f"parent cycle through node {current!r}")
            chain.append(current)
            on_chain.add(current)
            current = nodes[current].parent
        prefix = paths[current] if current is not None else ()
        for node_id in reversed(chain):
            prefix = (*prefix, node_id)
            paths[node_id] = prefix
    return paths
