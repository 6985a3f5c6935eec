"""Baseline of API keys (serve/keys.py): the schema as it was when migrations began.

Adopts a database made before migrations (by ``create_all``): creates only what is missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from taxonomy.migrations import adopt_table

revision = "keys_0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    adopt_table(
        "api_keys",
        sa.Column('id', sa.String(length=12), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('scopes', sa.String(length=200), nullable=False),
        sa.Column('key_sha256', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
