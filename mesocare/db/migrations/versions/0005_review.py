"""review labels: staff labels on misunderstood messages (the text stays in the tracker store)

Revision ID: 0005_review
Revises: 0004_staff_profile
Create Date: 2026-12-04

The insights page's indexes on Rasa's `events` table are not created here (another database, owned by
Rasa): see mesocare.staff.insights.ensure_tracker_indexes (`mesocare insights create-indexes`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_review"
down_revision = "0004_staff_profile"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_labels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.String(length=255), nullable=False),
        sa.Column("text_hash", sa.String(length=64), nullable=False),
        sa.Column("intent", sa.String(length=64), nullable=False),
        sa.Column("missed_red_flag", sa.Boolean(), nullable=False),
        sa.Column("reviewer", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", name="uq_review_label_event"),
    )
    with op.batch_alter_table("review_labels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_labels_sender_id"), ["sender_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_review_labels_missed_red_flag"), ["missed_red_flag"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("review_labels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_labels_missed_red_flag"))
        batch_op.drop_index(batch_op.f("ix_review_labels_sender_id"))
    op.drop_table("review_labels")
