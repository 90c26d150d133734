"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

import image_tagger.db

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", image_tagger.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "revoked_at", image_tagger.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=512), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("storage_path", sa.String(length=1024), nullable=False),
        sa.Column(
            "created_at", image_tagger.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("sha256", name=op.f("uq_images_sha256")),
    )
    op.create_table(
        "upload_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("total_items", sa.Integer(), nullable=False),
        sa.Column("completed_items", sa.Integer(), nullable=False),
        sa.Column("failed_items", sa.Integer(), nullable=False),
        sa.Column("error_summary", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column(
            "created_at", image_tagger.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", image_tagger.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "started_at", image_tagger.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "finished_at", image_tagger.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_jobs")),
    )
    with op.batch_alter_table("upload_jobs", schema=None) as batch_op:
        batch_op.create_index("ix_upload_jobs_status", ["status"], unique=False)

    op.create_table(
        "image_analyses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("pipeline_version", sa.String(length=32), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("metric_notes", sa.JSON(), nullable=False),
        sa.Column("vlm", sa.JSON(), nullable=False),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.Column(
            "created_at", image_tagger.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "updated_at", image_tagger.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_image_analyses_image_id_images"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_analyses")),
        sa.UniqueConstraint(
            "image_id", "pipeline_version", name=op.f("uq_image_analyses_image_id")
        ),
    )
    with op.batch_alter_table("image_analyses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_image_analyses_image_id"), ["image_id"], unique=False
        )

    op.create_table(
        "tool_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tool", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Numeric(precision=14, scale=8), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column(
            "created_at", image_tagger.db.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_tool_usage_image_id_images"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["upload_jobs.id"],
            name=op.f("fk_tool_usage_job_id_upload_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_usage")),
    )
    with op.batch_alter_table("tool_usage", schema=None) as batch_op:
        batch_op.create_index("ix_tool_usage_created_at", ["created_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_tool_usage_image_id"), ["image_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_tool_usage_job_id"), ["job_id"], unique=False
        )

    op.create_table(
        "upload_job_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("filename", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column(
            "lease_expires_at",
            image_tagger.db.UTCDateTime(timezone=True),
            nullable=True,
        ),
        sa.Column(
            "started_at", image_tagger.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "finished_at", image_tagger.db.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("seconds", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["image_id"],
            ["images.id"],
            name=op.f("fk_upload_job_items_image_id_images"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["upload_jobs.id"],
            name=op.f("fk_upload_job_items_job_id_upload_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_job_items")),
    )
    with op.batch_alter_table("upload_job_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upload_job_items_image_id"), ["image_id"], unique=False
        )
        batch_op.create_index(
            "ix_upload_job_items_job_status", ["job_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_upload_job_items_status_lease",
            ["status", "lease_expires_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("upload_job_items", schema=None) as batch_op:
        batch_op.drop_index("ix_upload_job_items_status_lease")
        batch_op.drop_index("ix_upload_job_items_job_status")
        batch_op.drop_index(batch_op.f("ix_upload_job_items_image_id"))

    op.drop_table("upload_job_items")
    with op.batch_alter_table("tool_usage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tool_usage_job_id"))
        batch_op.drop_index(batch_op.f("ix_tool_usage_image_id"))
        batch_op.drop_index("ix_tool_usage_created_at")

    op.drop_table("tool_usage")
    with op.batch_alter_table("image_analyses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_analyses_image_id"))

    op.drop_table("image_analyses")
    with op.batch_alter_table("upload_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_upload_jobs_status")

    op.drop_table("upload_jobs")
    op.drop_table("images")
    op.drop_table("api_tokens")
