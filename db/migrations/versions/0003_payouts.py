"""Escrowed payouts and marketplace checkouts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=True),
        sa.Column("checkout_id", sa.String(length=40), nullable=True),
        sa.Column("stripe_account", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("platform_fee", sa.BigInteger(), nullable=False),
        sa.Column("seller_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("hold_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payment_intent_id", sa.String(length=64), nullable=True),
        sa.Column("charge_id", sa.String(length=64), nullable=True),
        sa.Column("transfer_id", sa.String(length=64), nullable=True),
        sa.Column("reversal_id", sa.String(length=64), nullable=True),
        sa.Column("dispute_id", sa.String(length=64), nullable=True),
        sa.Column("transfer_error", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        *_timestamps(),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("platform_fee + seller_amount = amount", name="parts_add_up"),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("order_id"),
        sa.UniqueConstraint("checkout_id"),
    )
    op.create_index("ix_payouts_merchant_created", "payouts", ["merchant_id", "created_at", "id"])
    op.create_index("ix_payouts_status_hold", "payouts", ["status", "hold_until"])
    op.create_index("ix_payouts_charge_id", "payouts", ["charge_id"])
    op.create_table(
        "checkouts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("payout_id", sa.String(length=40), nullable=False),
        sa.Column("listing", sa.String(length=200), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("buyer_email", sa.String(length=254), nullable=False),
        sa.Column("payment_method", sa.String(length=64), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("payout_id"),
    )
    op.create_index("ix_checkouts_merchant_id", "checkouts", ["merchant_id"])


def downgrade() -> None:
    op.drop_index("ix_checkouts_merchant_id", table_name="checkouts")
    op.drop_table("checkouts")
    op.drop_index("ix_payouts_charge_id", table_name="payouts")
    op.drop_index("ix_payouts_status_hold", table_name="payouts")
    op.drop_index("ix_payouts_merchant_created", table_name="payouts")
    op.drop_table("payouts")
