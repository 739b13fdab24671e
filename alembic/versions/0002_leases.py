"""Run and channel leases granted on the database's clock (issue: a run that is safe to leave alone).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _holder_columns() -> list[sa.Column]:
    return [
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("pid_started_s", sa.Float(), nullable=False),
    ]


def _lease_times() -> list[sa.Column]:
    return [
        sa.Column("acquired_db_s", sa.Float(), nullable=False),
        sa.Column("renewed_db_s", sa.Float(), nullable=False),
        sa.Column("expires_db_s", sa.Float(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "run_lease",
        sa.Column("run_id", sa.Integer(), nullable=False),
        *_holder_columns(),
        *_lease_times(),
        sa.Column("released_db_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_table(
        "channel_lease",
        sa.Column("station", sa.String(length=200), nullable=False),
        sa.Column("instrument", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        *_holder_columns(),
        sa.Column("run_id", sa.Integer(), nullable=True),
        *_lease_times(),
        sa.ForeignKeyConstraint(["run_id"], ["run.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("station", "instrument", "channel"),
    )


def downgrade() -> None:
    op.drop_table("channel_lease")
    op.drop_table("run_lease")
