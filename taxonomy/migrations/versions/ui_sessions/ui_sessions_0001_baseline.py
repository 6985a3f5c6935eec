"""Baseline of the web UI's sessions in the database (serve/ui/session_db.py): the schema as it was when migrations began.

Adopts a database made before migrations (by ``create_all``): creates only what is missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taxonomy.migrations import adopt_table

revision = "ui_sessions_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    adopt_table(
        "ui_sessions",
        sa.Column('id_sha256', sa.String(length=64), nullable=False),
        sa.Column('key_id', sa.String(length=64), nullable=False),
        sa.Column('key_name', sa.Text(), nullable=False),
        sa.Column('scopes', sa.Text(), nullable=False),
        sa.Column('csrf', sa.String(length=64), nullable=False),
        sa.Column('created', sa.Float(), nullable=False),
        sa.Column('last_seen', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id_sha256'),
        indexes=[("ix_ui_sessions_key_id", ["key_id"], False), ("ix_ui_sessions_last_seen", ["last_seen"], False)],
    )


def downgrade() -> None:
    op.drop_table("ui_sessions")
