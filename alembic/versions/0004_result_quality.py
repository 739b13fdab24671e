"""Result quality: each analysis value says whether it is trustworthy and, if not, why.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """result.flagged (the value failed its quality check) and result.flag_reason (why).

    Rows written before this revision were never checked; they read as not flagged, which is
    what they claimed when they were written.
    """
    with op.batch_alter_table("result") as batch:
        batch.add_column(sa.Column("flagged", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("flag_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("result") as batch:
        batch.drop_column("flag_reason")
        batch.drop_column("flagged")
