"""Google Product Taxonomy ``taxonomy-with-ids`` text format.

One line per category, ``<id> - <name> > <name> > ...`` (the full path of names), optionally
preceded by ``# Google_Product_Taxonomy_Version: <label>``. Parents are found by path, so
line order does not matter. The format has no deprecation: exports hold active nodes only.
"""

from __future__ import annotations

from taxonomy.errors import TaxonomyFormatError
from taxonomy.model import Node, TaxonomyDocument
from taxonomy.snapshot import Snapshot

ID_SEP = " - "
PATH_SEP = " > "
VERSION_HEADER = "# Google_Product_Taxonomy_Version:"


def parse_google_text(text: str, *, name: str = "Google Product Taxonomy") -> TaxonomyDocument:
    label: str | None = None
    rows: list[tuple[int, str, list[str]]] = []
    for lineno, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if line.startswith("#"):
            if line.startswith(VERSION_HEADER):
                label = line[len(VERSION_HEADER) :].strip() or None
            continue
        node_id, sep, path = line.partition(ID_SEP)
        if not sep or not node_id or not path:
            raise TaxonomyFormatError(f"line {lineno}: expected '<id> - <path>', got {line!r}")
        rows.append((lineno, node_id, path.split(PATH_SEP)))

    id_by_path: dict[str, str] = {}
    for lineno, node_id, names in rows:
        key = PATH_SEP.join(names)
        if key in id_by_path:
            raise TaxonomyFormatError(f"line {lineno}: path {key!r} appears twice")
        id_by_path[key] = node_id
    nodes = []
    for lineno, node_id, names in rows:
        parent = None
        if len(names) > 1:
            parent = id_by_path.get(PATH_SEP.join(names[:-1]))
            if parent is None:
                raise TaxonomyFormatError(
                    f"line {lineno}: parent path {PATH_SEP.join(names[:-1])!r} has no line"
                )
        try:
            nodes.append(Node(id=node_id, name=names[-1], parent=parent, level=len(names)))
        except ValueError as exc:
            raise TaxonomyFormatError(f"line {lineno}: {exc}") from exc
    return TaxonomyDocument(name=name, source_version=label, nodes=tuple(nodes))


def dump_google_text(snapshot: Snapshot) -> str:
    doc = snapshot.document
    lines = []
    if doc.source_version:
        lines.append(f"{VERSION_HEADER} {doc.source_version}")
    for node in doc.nodes:
        if node.deprecated:
            continue
        if ID_SEP in node.id or node.id.startswith("#"):
            raise TaxonomyFormatError(f"id {node.id!r} cannot be written in the Google format")
        names = snapshot.path_names(node.id)
        if any(PATH_SEP in n or "\n" in n or "\r" in n for n in names):
            raise TaxonomyFormatError(f"a name on the path of {node.id!r} contains ' > ' or a newline")
        if any(snapshot.nodes[a].deprecated for a in snapshot.ancestors(node.id)):
            raise TaxonomyFormatError(f"active node {node.id!r} sits under a deprecated node")
        lines.append(f"{node.id}{ID_SEP}{PATH_SEP.join(names)}")
    return "\n".join(lines) + "\n"
