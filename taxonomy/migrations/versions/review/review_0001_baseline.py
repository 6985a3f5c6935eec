"""Baseline of the review queue (serve/review/store.py): the schema as it was when migrations began.

Adopts a database made before migrations (by ``create_all``): creates only what is missing, and adds ``review_items.revision`` (an older release's "ADD COLUMN if missing" step) when it lacks it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taxonomy.migrations import adopt_column, adopt_table

revision = "review_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    adopt_table(
        "review_events",
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('item_id', sa.String(length=40), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('actor_name', sa.String(length=200), nullable=True),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        indexes=[("ix_review_events_item_id", ["item_id"], False)],
    )
    adopt_table(
        "review_items",
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('dedup_key', sa.String(length=300), nullable=False),
        sa.Column('pending_key', sa.String(length=300), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('product', sa.Text(), nullable=False),
        sa.Column('product_id', sa.String(length=256), nullable=True),
        sa.Column('result', sa.Text(), nullable=False),
        sa.Column('category', sa.String(length=512), nullable=True),
        sa.Column('confidence', sa.Float(), nullable=False),
        sa.Column('runner_up', sa.String(length=512), nullable=True),
        sa.Column('runner_up_confidence', sa.Float(), nullable=False),
        sa.Column('taxonomy_version', sa.Integer(), nullable=False),
        sa.Column('index_generation', sa.String(length=40), nullable=True),
        sa.Column('source', sa.String(length=80), nullable=False),
        sa.Column('times_enqueued', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('claimed_by', sa.String(length=64), nullable=True),
        sa.Column('claimed_by_name', sa.String(length=200), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('decided_by', sa.String(length=64), nullable=True),
        sa.Column('decided_by_name', sa.String(length=200), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('final_category', sa.String(length=512), nullable=True),
        sa.Column('final_attributes', sa.Text(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('feedback_id', sa.String(length=40), nullable=True),
        sa.Column('revision', sa.Integer(), server_default='1', nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('pending_key'),
        indexes=[("ix_review_items_decided_at", ["decided_at"], False), ("ix_review_items_dedup_key", ["dedup_key"], False), ("ix_review_items_status", ["status"], False)],
    )
    adopt_table(
        "review_reasons",
        sa.Column('item_id', sa.String(length=40), nullable=False),
        sa.Column('reason', sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(['item_id'], ['review_items.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('item_id', 'reason'),
        indexes=[("ix_review_reasons_reason", ["reason"], False)],
    )
    adopt_column("review_items", sa.Column('revision', sa.Integer(), server_default='1', nullable=False))  # before migrations: added when missing


def downgrade() -> None:
    op.drop_table("review_reasons")
    op.drop_table("review_items")
    op.drop_table("review_events")
