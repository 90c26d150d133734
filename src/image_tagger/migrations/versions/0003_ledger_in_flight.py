"""the ledger: calls in flight, and the answers of ok calls

Revision ID: 0003_ledger_in_flight
Revises: 0002_operate
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

import image_tagger.db

revision = "0003_ledger_in_flight"
down_revision = "0002_operate"
branch_labels = None
depends_on = None

IN_FLIGHT = sa.text("outcome = 'in_flight'")


def upgrade() -> None:
    with op.batch_alter_table("tool_usage", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reserved_usd", sa.Numeric(precision=14, scale=8), nullable=True)
        )
        batch_op.add_column(sa.Column("answer", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("prompts_version", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "stored_at", image_tagger.db.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index(
            "ix_tool_usage_in_flight",
            ["created_at"],
            unique=False,
            sqlite_where=IN_FLIGHT,
            postgresql_where=IN_FLIGHT,
        )


def downgrade() -> None:
    with op.batch_alter_table("tool_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_tool_usage_in_flight")
        batch_op.drop_column("stored_at")
        batch_op.drop_column("prompts_version")
        batch_op.drop_column("answer")
        batch_op.drop_column("reserved_usd")
