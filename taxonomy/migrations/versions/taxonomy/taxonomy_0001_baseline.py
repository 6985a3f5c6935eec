"""Baseline of the versioned taxonomy store (taxonomy/schema.py), with its one head row: the schema as it was when migrations began.

Adopts a database made before migrations (by ``create_all``): creates only what is missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from taxonomy.migrations import adopt_table

revision = "taxonomy_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    adopt_table(
        "taxonomy_head",
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    adopt_table(
        "taxonomy_versions",
        sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('author', sa.String(length=200), nullable=True),
        sa.Column('message', sa.Text(), nullable=True),
        sa.Column('base_version', sa.Integer(), nullable=True),
        sa.Column('edit_count', sa.Integer(), nullable=False),
        sa.Column('node_count', sa.Integer(), nullable=False),
        sa.Column('active_count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('version'),
    )
    adopt_table(
        "taxonomy_checkpoints",
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('document', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(['version'], ['taxonomy_versions.version'], ),
        sa.PrimaryKeyConstraint('version'),
    )
    adopt_table(
        "taxonomy_edits",
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('edit', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['version'], ['taxonomy_versions.version'], ),
        sa.PrimaryKeyConstraint('version', 'seq'),
    )
    # the one head row (through a Table: a schema_translate_map applies to it, not to SQL
    # text nor to a lightweight sa.table)
    head = sa.Table("taxonomy_head", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("version", sa.Integer))
    if context.is_offline_mode() or op.get_bind().execute(sa.select(head.c.id)).first() is None:
        op.bulk_insert(head, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("taxonomy_edits")
    op.drop_table("taxonomy_checkpoints")
    op.drop_table("taxonomy_versions")
    op.drop_table("taxonomy_head")
