"""Baseline of feedback examples (serve/feedback.py): the schema as it was when migrations began.

Adopts a database made before migrations (by ``create_all``): creates only what is missing, and adds ``feedback.attribute_values`` (an older release's "ADD COLUMN if missing" step) when it lacks it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taxonomy.migrations import adopt_column, adopt_table

revision = "feedback_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    adopt_table(
        "feedback",
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('example_id', sa.String(length=256), nullable=False),
        sa.Column('verdict', sa.String(length=16), nullable=False),
        sa.Column('tags', sa.Text(), nullable=False),
        sa.Column('product', sa.Text(), nullable=False),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('attribute_values', sa.Text(), nullable=True),
        sa.Column('reviewer', sa.String(length=64), nullable=False),
        sa.Column('taxonomy_version', sa.Integer(), nullable=False),
        sa.Column('index_generation', sa.String(length=40), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        indexes=[("ix_feedback_example_id", ["example_id"], False)],
    )
    adopt_column("feedback", sa.Column('attribute_values', sa.Text(), nullable=True))  # before migrations: added when missing


def downgrade() -> None:
    op.drop_table("feedback")
