"""Baseline of the crosswalk store (taxonomy/crosswalk_store.py): the schema as it was when migrations began.

Adopts a database made before migrations (by ``create_all``): creates only what is missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taxonomy.migrations import adopt_table

revision = "crosswalks_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    adopt_table(
        "crosswalk_heads",
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    adopt_table(
        "crosswalk_versions",
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('author', sa.String(length=200), nullable=True),
        sa.Column('message', sa.Text(), nullable=True),
        sa.Column('source_version', sa.Integer(), nullable=False),
        sa.Column('target_version', sa.Integer(), nullable=False),
        sa.Column('row_count', sa.Integer(), nullable=False),
        sa.Column('document', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('name', 'version'),
    )


def downgrade() -> None:
    op.drop_table("crosswalk_versions")
    op.drop_table("crosswalk_heads")
