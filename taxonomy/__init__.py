"""tagsmith taxonomy package: the taxonomy graph, its versioned store, formats and validator.

Imports nothing else of tagsmith (and never FastAPI): every other package builds on it.
"""

from taxonomy.default import (
    DEFAULT_TAXONOMY_FORMAT,
    default_taxonomy_path,
    load_default_taxonomy,
    seed_default_taxonomy,
)
from taxonomy.diff import TaxonomyDiff, diff_snapshots, migration_map
from taxonomy.editor import apply_edits, coerce_edits
from taxonomy.edits import (
    AddAttributeValue,
    AddNode,
    AddSynonym,
    AttachAttribute,
    AttributeValueSpec,
    DefineAttribute,
    DeprecateNode,
    DetachAttribute,
    Edit,
    EditBatch,
    MergeNodes,
    MoveNode,
    RemoveAttributeValue,
    RemoveSynonym,
    RenameNode,
    SetDescription,
    UndeprecateNode,
)
from taxonomy.errors import (
    EditRejected,
    EmptyStore,
    StaleVersion,
    TaxonomyError,
    TaxonomyFormatError,
    UnknownVersion,
)
from taxonomy.formats import (
    EXPORT_FORMATS,
    IMPORT_FORMATS,
    dump,
    load_taxonomy,
    parse_document,
    read_document,
)
from taxonomy.model import Attribute, AttributeValue, Node, Normalization, TaxonomyDocument
from taxonomy.search import SearchHit, search
from taxonomy.snapshot import Snapshot
from taxonomy.store import TaxonomyStore, VersionInfo
from taxonomy.validator import (
    AttributeAssignment,
    ProposedTag,
    TagError,
    TagValidator,
    ValidationReport,
    suggest_id,
)

__all__ = [
    "DEFAULT_TAXONOMY_FORMAT",
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "AddAttributeValue",
    "AddNode",
    "AddSynonym",
    "AttachAttribute",
    "Attribute",
    "AttributeAssignment",
    "AttributeValue",
    "AttributeValueSpec",
    "DefineAttribute",
    "DeprecateNode",
    "DetachAttribute",
    "Edit",
    "EditBatch",
    "EditRejected",
    "EmptyStore",
    "MergeNodes",
    "MoveNode",
    "Node",
    "Normalization",
    "ProposedTag",
    "RemoveAttributeValue",
    "RemoveSynonym",
    "RenameNode",
    "SearchHit",
    "SetDescription",
    "Snapshot",
    "StaleVersion",
    "TagError",
    "TagValidator",
    "TaxonomyDiff",
    "TaxonomyDocument",
    "TaxonomyError",
    "TaxonomyFormatError",
    "TaxonomyStore",
    "UndeprecateNode",
    "UnknownVersion",
    "ValidationReport",
    "VersionInfo",
    "apply_edits",
    "coerce_edits",
    "default_taxonomy_path",
    "diff_snapshots",
    "dump",
    "load_default_taxonomy",
    "load_taxonomy",
    "migration_map",
    "parse_document",
    "read_document",
    "search",
    "seed_default_taxonomy",
    "suggest_id",
]
