"""API keys with roles (owner, staff) and rotation; the merchant webhook circuit breaker.

Each merchant's existing key becomes its first owner key.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_api_keys_merchant_id", "api_keys", ["merchant_id"])
    op.execute(
        """
        INSERT INTO api_keys (id, merchant_id, key_hash, prefix, role, created_at)
        SELECT 'key_' || substr(md5(id), 1, 26), id, api_key_hash, api_key_prefix, 'owner',
               created_at
        FROM merchants
        """
    )
    op.drop_constraint("merchants_api_key_hash_key", "merchants", type_="unique")
    op.drop_column("merchants", "api_key_hash")
    op.drop_column("merchants", "api_key_prefix")
    op.add_column(
        "merchants",
        sa.Column("webhook_failures", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column(
        "merchants", sa.Column("webhook_parked_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("merchants", sa.Column("webhook_last_error", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("merchants", "webhook_last_error")
    op.drop_column("merchants", "webhook_parked_until")
    op.drop_column("merchants", "webhook_failures")
    op.add_column("merchants", sa.Column("api_key_prefix", sa.String(length=16), nullable=True))
    op.add_column("merchants", sa.Column("api_key_hash", sa.String(length=64), nullable=True))
    op.execute(
        """
        UPDATE merchants m SET api_key_hash = k.key_hash, api_key_prefix = k.prefix
        FROM (SELECT DISTINCT ON (merchant_id) merchant_id, key_hash, prefix FROM api_keys
              WHERE role = 'owner' ORDER BY merchant_id, created_at) k
        WHERE k.merchant_id = m.id
        """
    )
    op.create_unique_constraint("merchants_api_key_hash_key", "merchants", ["api_key_hash"])
    op.drop_index("ix_api_keys_merchant_id", table_name="api_keys")
    op.drop_table("api_keys")
