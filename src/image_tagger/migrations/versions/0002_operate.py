"""operating jobs: cancel and forced re-analysis

Revision ID: 0002_operate
Revises: 0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

import image_tagger.db

revision = "0002_operate"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("upload_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "cancelled_items", sa.Integer(), server_default="0", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "cancel_requested_at",
                image_tagger.db.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "force_reanalysis",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("upload_jobs", schema=None) as batch_op:
        batch_op.drop_column("force_reanalysis")
        batch_op.drop_column("cancel_requested_at")
        batch_op.drop_column("cancelled_items")
