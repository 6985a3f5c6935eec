"""API-key administration over HTTP (the same store as `tagsmith keys`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from serve.api.auth import AdminScope
from serve.api.deps import StateDep
from serve.api.errors import ApiError, errors
from serve.api.keys.protocol import KeyCreate, KeyCreated, KeyList, KeyOut
from serve.keys import ApiKey, LastAdminKey

router = APIRouter(prefix="/v1/keys", tags=["keys"])
KeyId = Annotated[str, Path(min_length=1, max_length=64, description="the key's public id")]


def _out(record: ApiKey) -> KeyOut:
    return KeyOut(
        id=record.id, name=record.name, scopes=sorted(record.scopes),  # type: ignore[arg-type]
        created_at=record.created_at, revoked_at=record.revoked_at,
    )


@router.post("", status_code=201, response_model=KeyCreated, responses=errors(), summary="Create an API key.")
def create_key(body: KeyCreate, state: StateDep, _: AdminScope) -> KeyCreated:
    record, key = state.keys.create(frozenset(body.scopes), body.name)
    return KeyCreated(**_out(record).model_dump(), key=key)


@router.get("", response_model=KeyList, responses=errors(), summary="List API keys (never the keys themselves).")
def list_keys(state: StateDep, _: AdminScope) -> KeyList:
    return KeyList(items=[_out(r) for r in state.keys.all()])


@router.delete(
    "/{key_id}", response_model=KeyOut, responses=errors(404, 409),
    summary="Revoke an API key (not the caller's own, nor the last active admin key: 409).",
)
def revoke_key(key_id: KeyId, state: StateDep, caller: AdminScope) -> KeyOut:
    # a key revoking itself is almost always a mistake (the wrong id pasted) that locks the
    # caller out mid-session; another admin key or `tagsmith keys revoke` can do it
    if key_id == caller.key_id:
        raise ApiError(
            409, "conflict",
            f"key {key_id} is the key making this request: revoke it with another admin key "
            "or `tagsmith keys revoke` on the server",
        )
    try:
        return _out(state.keys.revoke(key_id))
    except KeyError as exc:
        raise ApiError(404, "not_found", f"no API key {key_id!r}") from exc
    except LastAdminKey as exc:
        raise ApiError(
            409, "conflict",
            f"key {key_id} is the last active admin key: create another admin key first "
            "(POST /v1/keys with scopes [\"admin\"]); the server's operator can force it with "
            "`tagsmith keys revoke --force`",
        ) from exc
