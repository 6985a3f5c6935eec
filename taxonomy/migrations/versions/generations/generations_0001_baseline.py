"""Baseline of index generations in the database (retrieval/generations_db.py): the schema as it was when migrations began.

Adopts a database made before migrations (by ``create_all``): creates only what is missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taxonomy.migrations import adopt_table

revision = "generations_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    adopt_table(
        "index_blobs",
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('sha256'),
    )
    adopt_table(
        "index_files",
        sa.Column('number', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('number', 'name'),
        indexes=[("ix_index_files_sha256", ["sha256"], False)],
    )
    adopt_table(
        "index_generations",
        sa.Column('number', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('manifest_sha256', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('number'),
    )


def downgrade() -> None:
    op.drop_table("index_generations")
    op.drop_table("index_files")
    op.drop_table("index_blobs")
