"""Edit operations as pydantic models: a discriminated union on ``op``.

The HTTP API reuses them as request bodies; the store records them verbatim in its edit log
and replays them to rebuild a version. Semantics live in :mod:`taxonomy.editor`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter

from taxonomy.model import Cardinality, Name, NodeId, Normalization, ValueId, ValueName, ValueType


def _op_required(schema: dict[str, Any]) -> None:
    """``op`` has a default so that Python code can write ``AddNode(id=…)``, but a request must
    send it (it picks the union member): the schema says so, as the validator enforces."""
    if "op" in schema.get("properties", {}):
        schema["required"] = ["op", *(name for name in schema.get("required", []) if name != "op")]
        schema["properties"]["op"].pop("default", None)


_EDIT = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_op_required)


class AddNode(BaseModel):
    """Add a category under ``parent`` (``None``: a new root)."""

    model_config = _EDIT
    op: Literal["add_node"] = "add_node"
    id: NodeId
    name: Name
    parent: NodeId | None
    synonyms: tuple[Name, ...] = ()
    description: str | None = None


class RenameNode(BaseModel):
    model_config = _EDIT
    op: Literal["rename"] = "rename"
    id: NodeId
    name: Name
    keep_old_name_as_synonym: StrictBool = Field(
        default=False, description="add the previous name to the synonyms (retrieval still finds it)"
    )


class MoveNode(BaseModel):
    """Re-parent a category (with its subtree); ``parent=None`` makes it a root."""

    model_config = _EDIT
    op: Literal["move"] = "move"
    id: NodeId
    parent: NodeId | None


class MergeNodes(BaseModel):
    """Merge ``source`` into ``target``: the source's children move to the target, its name and
    synonyms become the target's synonyms, its attributes are attached to the target, and the
    source is deprecated with ``replaced_by=target`` (stored tags migrate through it)."""

    model_config = _EDIT
    op: Literal["merge"] = "merge"
    source: NodeId
    target: NodeId


class DeprecateNode(BaseModel):
    """Retire a category that has no active children; ``replaced_by`` names its successor."""

    model_config = _EDIT
    op: Literal["deprecate"] = "deprecate"
    id: NodeId
    replaced_by: NodeId | None = None


class UndeprecateNode(BaseModel):
    model_config = _EDIT
    op: Literal["undeprecate"] = "undeprecate"
    id: NodeId


class AddSynonym(BaseModel):
    model_config = _EDIT
    op: Literal["add_synonym"] = "add_synonym"
    id: NodeId
    synonym: Name


class RemoveSynonym(BaseModel):
    model_config = _EDIT
    op: Literal["remove_synonym"] = "remove_synonym"
    id: NodeId
    synonym: str


class SetDescription(BaseModel):
    model_config = _EDIT
    op: Literal["set_description"] = "set_description"
    id: NodeId
    description: str | None


class AttributeValueSpec(BaseModel):
    model_config = _EDIT
    id: ValueId
    name: ValueName


class DefineAttribute(BaseModel):
    """Create an attribute (e.g. Color) with its allowed values; attach it separately."""

    model_config = _EDIT
    op: Literal["define_attribute"] = "define_attribute"
    id: NodeId
    name: Name
    cardinality: Cardinality = "single"
    values: tuple[AttributeValueSpec, ...] = ()
    open_values: StrictBool = False  # strict: 0 / "yes" are a 422, as the schema says
    description: str | None = None
    value_type: ValueType = "text"
    unit: str | None = Field(default=None, max_length=100)
    normalization: Normalization | None = None


class AddAttributeValue(BaseModel):
    model_config = _EDIT
    op: Literal["add_attribute_value"] = "add_attribute_value"
    attribute: NodeId
    id: ValueId
    name: ValueName


class RemoveAttributeValue(BaseModel):
    model_config = _EDIT
    op: Literal["remove_attribute_value"] = "remove_attribute_value"
    attribute: NodeId
    id: ValueId


class RenameAttribute(BaseModel):
    """Rename an attribute (its id, and so stored tags, stay)."""

    model_config = _EDIT
    op: Literal["rename_attribute"] = "rename_attribute"
    id: NodeId
    name: Name


class RenameAttributeValue(BaseModel):
    """Rename a value (its id stays); the old name can be kept as a synonym, so text that still
    says it is matched."""

    model_config = _EDIT
    op: Literal["rename_attribute_value"] = "rename_attribute_value"
    attribute: NodeId
    id: ValueId
    name: ValueName
    keep_old_name_as_synonym: StrictBool = False


class SetAttributeRule(BaseModel):
    """Replace, as a whole, how an attribute's values are read: their kind, unit and
    normalization rule (fields left out reset to their defaults, so a replayed edit log gives
    the same result)."""

    model_config = _EDIT
    op: Literal["set_attribute_rule"] = "set_attribute_rule"
    id: NodeId
    value_type: ValueType = "text"
    unit: str | None = Field(default=None, max_length=100)
    normalization: Normalization | None = None


class DeprecateAttribute(BaseModel):
    """Retire an attribute: kept (stored tags stay readable) but no longer offered or accepted."""

    model_config = _EDIT
    op: Literal["deprecate_attribute"] = "deprecate_attribute"
    id: NodeId


class UndeprecateAttribute(BaseModel):
    model_config = _EDIT
    op: Literal["undeprecate_attribute"] = "undeprecate_attribute"
    id: NodeId


class DeprecateAttributeValue(BaseModel):
    """Retire one value of an attribute: kept, no longer offered or accepted for new tags;
    ``replaced_by`` (an active value of the same attribute) is where stored tags migrate."""

    model_config = _EDIT
    op: Literal["deprecate_attribute_value"] = "deprecate_attribute_value"
    attribute: NodeId
    id: ValueId
    replaced_by: ValueId | None = None


class UndeprecateAttributeValue(BaseModel):
    model_config = _EDIT
    op: Literal["undeprecate_attribute_value"] = "undeprecate_attribute_value"
    attribute: NodeId
    id: ValueId


class AttachAttribute(BaseModel):
    """Attach an attribute to a category; its descendants inherit it."""

    model_config = _EDIT
    op: Literal["attach_attribute"] = "attach_attribute"
    category: NodeId
    attribute: NodeId


class DetachAttribute(BaseModel):
    model_config = _EDIT
    op: Literal["detach_attribute"] = "detach_attribute"
    category: NodeId
    attribute: NodeId


class ExcludeAttribute(BaseModel):
    """The category (and, by inheritance, its subtree) no longer has an attribute it inherits
    from an ancestor; a descendant can attach it again."""

    model_config = _EDIT
    op: Literal["exclude_attribute"] = "exclude_attribute"
    category: NodeId
    attribute: NodeId


class IncludeAttribute(BaseModel):
    """Undo :class:`ExcludeAttribute`: the category inherits the attribute again."""

    model_config = _EDIT
    op: Literal["include_attribute"] = "include_attribute"
    category: NodeId
    attribute: NodeId


Edit = Annotated[
    AddNode
    | RenameNode
    | MoveNode
    | MergeNodes
    | DeprecateNode
    | UndeprecateNode
    | AddSynonym
    | RemoveSynonym
    | SetDescription
    | DefineAttribute
    | AddAttributeValue
    | RemoveAttributeValue
    | RenameAttribute
    | RenameAttributeValue
    | SetAttributeRule
    | DeprecateAttribute
    | UndeprecateAttribute
    | DeprecateAttributeValue
    | UndeprecateAttributeValue
    | AttachAttribute
    | DetachAttribute
    | ExcludeAttribute
    | IncludeAttribute,
    Field(discriminator="op"),
]

EDIT_LIST: TypeAdapter[list[Edit]] = TypeAdapter(list[Edit])


class EditBatch(BaseModel):
    """What a client submits: edits made against ``expected_version``, applied all-or-nothing."""

    model_config = ConfigDict(extra="forbid")
    expected_version: int = Field(ge=0)
    edits: list[Edit] = Field(min_length=1)
    author: str | None = Field(default=None, max_length=200)
    message: str | None = Field(default=None, max_length=2000)
