"""Models of the API-key administration endpoints (scope ``admin``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["tags", "feedback", "taxonomy:write", "admin"]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scopes: list[Scope] = Field(min_length=1, max_length=4)
    name: str = Field(default="", max_length=200, description="who or what uses the key")


class KeyOut(BaseModel):
    id: str = Field(description="public id: in listings, logs and revocations")
    name: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="the key itself: shown this once, stored only hashed")


class KeyList(BaseModel):
    items: list[KeyOut]
