"""Baseline of bulk jobs (serve/jobs/store.py): the schema as it was when migrations began.

Adopts a database made before migrations (by ``create_all``): creates only what is missing, and adds ``jobs.review`` (an older release's "ADD COLUMN if missing" step) when it lacks it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taxonomy.migrations import adopt_column, adopt_table

revision = "jobs_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    adopt_table(
        "job_batches",
        sa.Column('job_id', sa.String(length=40), nullable=False),
        sa.Column('batch', sa.Integer(), nullable=False),
        sa.Column('first_seq', sa.Integer(), nullable=False),
        sa.Column('end_seq', sa.Integer(), nullable=False),
        sa.Column('done', sa.Integer(), nullable=False),
        sa.Column('lease_token', sa.String(length=32), nullable=True),
        sa.Column('lease_owner', sa.String(length=200), nullable=True),
        sa.Column('lease_until', sa.Float(), nullable=False),
        sa.Column('claims', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('job_id', 'batch', name='pk_job_batches'),
    )
    adopt_table(
        "job_items",
        sa.Column('job_id', sa.String(length=40), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('custom_id', sa.String(length=256), nullable=False),
        sa.Column('item', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('job_id', 'seq', name='pk_job_items'),
        sa.UniqueConstraint('job_id', 'custom_id', name='uq_job_items_custom_id'),
    )
    adopt_table(
        "job_results",
        sa.Column('job_id', sa.String(length=40), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('custom_id', sa.String(length=256), nullable=False),
        sa.Column('ok', sa.Integer(), nullable=False),
        sa.Column('line', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('job_id', 'seq', name='pk_job_results'),
        sa.UniqueConstraint('job_id', 'custom_id', name='uq_job_results_custom_id'),
    )
    adopt_table(
        "jobs",
        sa.Column('id', sa.String(length=40), nullable=False),
        sa.Column('owner', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('succeeded', sa.Integer(), nullable=False),
        sa.Column('failed', sa.Integer(), nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=True),
        sa.Column('request_sha256', sa.String(length=64), nullable=False),
        sa.Column('message', sa.Text(), nullable=True),
        sa.Column('review', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('owner', 'idempotency_key', name='uq_jobs_idempotency'),
    )
    adopt_column("jobs", sa.Column('review', sa.Integer(), nullable=True))  # before migrations: added when missing


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_table("job_results")
    op.drop_table("job_items")
    op.drop_table("job_batches")
