"""privacy: contact columns hold Fernet tokens (longer than the old VARCHAR limits)

Revision ID: 0003_privacy
Revises: 0002_staff_sessions
Create Date: 2026-12-04

Rows written before this revision keep plain text until `mesocare privacy rotate-keys` encrypts them
(the migration itself needs no key).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_privacy"
down_revision = "0002_staff_sessions"
branch_labels = None
depends_on = None

_OLD_LENGTHS = {"contact_name": 255, "contact_phone": 64, "contact_email": 255}


def upgrade() -> None:
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        for column, length in _OLD_LENGTHS.items():
            batch_op.alter_column(column, existing_type=sa.String(length=length), type_=sa.Text(),
                                  existing_nullable=True)


def downgrade() -> None:
    # Only safe after decrypting: Fernet tokens do not fit the old lengths.
    with op.batch_alter_table("escalations", schema=None) as batch_op:
        for column, length in _OLD_LENGTHS.items():
            batch_op.alter_column(column, existing_type=sa.Text(), type_=sa.String(length=length),
                                  existing_nullable=True)
