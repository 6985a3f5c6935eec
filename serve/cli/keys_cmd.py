"""``tagsmith keys``: create, list and revoke the HTTP service's API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from serve.cli._common import console, fail, settings, store_settings

if TYPE_CHECKING:
    from serve.keys import KeyStore

app = typer.Typer(no_args_is_help=True)


def _store() -> KeyStore:
    from serve.filemodes import private_dir
    from serve.keys import KeyStore

    s = store_settings()
    private_dir(s.data_dir)
    return KeyStore(s.store_location("keys"))


@app.command("create")
def create(
    scopes: Annotated[str, typer.Option(help="comma-separated: tags, feedback, taxonomy:write, admin")],
    name: Annotated[str, typer.Option(help="who or what uses the key")] = "",
) -> None:
    """Create a key; the key itself is printed once, on the last line."""
    from serve.keys import parse_scopes

    try:
        wanted = parse_scopes(scopes)
    except ValueError as exc:
        fail(str(exc))
    store = _store()
    record, key = store.create(wanted, name)
    store.close()
    console.print(
        f"created key [bold]{record.id}[/] ({record.name}) with scopes {', '.join(sorted(record.scopes))}; "
        "it is shown only now, store it safely:", soft_wrap=True, highlight=False,
    )
    print(key)


@app.command("list")
def list_keys() -> None:
    """List keys (ids, names, scopes; never the keys)."""
    store = _store()
    records = store.all()
    store.close()
    table = Table()
    for col in ("id", "name", "scopes", "created", "revoked"):
        table.add_column(col)
    for r in records:
        table.add_row(
            r.id, r.name, ",".join(sorted(r.scopes)), f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "",
        )
    console.print(table)


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (first column of `keys list`)")],
    force: Annotated[bool, typer.Option(
        "--force", help="revoke even the last active admin key (this CLI can still create keys)",
    )] = False,
) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from serve.keys import LastAdminKey

    store = _store()
    try:
        record = store.revoke(key_id, keep_an_admin=not force)
    except KeyError:
        fail(f"no key {key_id!r} (see `tagsmith keys list`)")
    except LastAdminKey:
        fail(
            f"key {key_id} is the last active admin key: without it nobody can manage keys over the "
            "API. Create another first (`tagsmith keys create --scopes admin`), or pass --force: "
            "`tagsmith keys create` on this host, which needs no key, stays the way back in"
        )
    finally:
        store.close()
    console.print(f"revoked key {record.id} ({record.name})")


@app.command("ensure")
def ensure(
    scopes: Annotated[str, typer.Option(help="scopes of the key made when none exists")] = "admin",
    name: Annotated[str, typer.Option(help="its name")] = "first key",
) -> None:
    """Create a key only when the service has none (and no dev mode or configured admin key):
    what `scripts/serve.sh` runs so that a first start works."""
    from serve.keys import parse_scopes
    from serve.state import auth_problem

    s = settings()
    store = _store()
    try:
        if auth_problem(s, store) is None:
            console.print("API keys are configured (`tagsmith keys list`)")
            return
        if s.auth.admin_key is not None:  # a bad configured key: creating another would not help
            fail(str(auth_problem(s, store)), 2)
        record, key = store.create(parse_scopes(scopes), name)
    finally:
        store.close()
    console.print(
        f"no API key existed: created key [bold]{record.id}[/] with scopes {', '.join(sorted(record.scopes))}; "
        "send it as `Authorization: Bearer <key>`. It is shown only now:", soft_wrap=True, highlight=False,
    )
    print(key)
