"""staff profile (how patients see a staff member), re-alert bookkeeping, index for the live inbox

Revision ID: 0004_staff_profile
Revises: 0003_privacy
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_staff_profile"
down_revision = "0003_privacy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("job_title", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("display_as", sa.String(length=8), nullable=False,
                                      server_default="role"))
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("realerted_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("realert_count", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_escalations_updated_at", "escalations", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_escalations_updated_at", table_name="escalations")
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        batch_op.drop_column("realert_count")
        batch_op.drop_column("realerted_at")
    with op.batch_alter_table("staff_users", schema=None) as batch_op:
        batch_op.drop_column("display_as")
        batch_op.drop_column("job_title")
        batch_op.drop_column("display_name")
