"""Alembic's environment for every store's history (taxonomy/migrations/__init__.py): run with
the connection (online) or the URL (offline ``--sql``) the caller put in the config's
attributes; each store's own version table."""

from __future__ import annotations

from alembic import context

from taxonomy.migrations import StoreSchema, include_name, namespace

cfg = context.config
schema: StoreSchema = cfg.attributes["schema"]
options = {
    "target_metadata": schema.metadata,
    "version_table": schema.version_table,
    "include_name": include_name(schema),
    "compare_type": True,
}

if context.is_offline_mode():
    context.configure(url=cfg.attributes["url"], literal_binds=True, **options)
    with context.begin_transaction():
        context.run_migrations()
else:
    # the caller's connection, inside its transaction (and schema lock): begin_transaction
    # below adds none of its own
    connection = cfg.attributes["connection"]
    context.configure(connection=connection, version_table_schema=namespace(connection), **options)
    with context.begin_transaction():
        context.run_migrations()
