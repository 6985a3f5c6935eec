"""``tagsmith db``: the database behind the service's state (``database.url`` or SQLite files)."""

from __future__ import annotations

import typer

from serve.cli._common import console, fail, settings

app = typer.Typer(no_args_is_help=True)


def _create_shared_tables(url: str) -> None:
    """The tables of what only a shared database holds: index generations, UI sessions,
    crosswalks (the taxonomies they map to get their tables when first imported)."""
    from sqlalchemy.exc import SQLAlchemyError

    from retrieval.generations_db import DatabaseGenerations
    from serve.database import open_engine
    from serve.ui.session_db import DatabaseSessionStore
    from taxonomy.crosswalk_store import CrosswalkStore

    try:
        DatabaseGenerations(open_engine(url)).close()
        DatabaseSessionStore(open_engine(url)).close()
        engine = open_engine(url)
        CrosswalkStore(engine).close()
        engine.dispose()
    except SQLAlchemyError as exc:
        fail(f"the database is unreachable or refused the schema: {type(exc).__name__}: {str(exc).splitlines()[0]}")


@app.command("upgrade")
def upgrade() -> None:
    """Create the missing tables and columns of every store (taxonomy, keys, feedback, review
    queue, jobs) in the configured database; safe to run again and from several hosts at once (the
    service does the same when it starts)."""
    from sqlalchemy.exc import SQLAlchemyError

    from serve.database import safe_url
    from serve.feedback import FeedbackStore
    from serve.filemodes import private_data_dir
    from serve.jobs import JobStore
    from serve.keys import KeyStore
    from serve.review.store import ReviewStore
    from taxonomy import TaxonomyStore

    s = settings()
    private_data_dir(s.data_dir)
    try:
        TaxonomyStore(s.store_url("taxonomy")).close()
        KeyStore(s.store_location("keys")).close()
        FeedbackStore(s.store_location("feedback")).close()
        ReviewStore(s.store_location("review")).close()
        JobStore(s.store_location("jobs"), s.data_dir / "jobs").close()
    except SQLAlchemyError as exc:
        fail(f"the database is unreachable or refused the schema: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    if s.database.url_value:  # index generations and UI sessions: in the database only
        _create_shared_tables(s.database.url_value)
    where = safe_url(s.database.url_value) if s.database.url_value else f"SQLite files in {s.data_dir}"
    console.print(f"schema up to date: taxonomy, keys, feedback, review, jobs ({where})")
