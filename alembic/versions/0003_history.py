"""Records are history: cell versions, import content hashes and acquisition times (issue: bad input never hurts).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


# "Records are history" needed no new column, so this revision changes nothing and stays in
# the chain (0004 follows it): a changed cell description under a recorded id is refused
# (labctl.recording.history), not versioned; an import's content hash is its protocol row's
# sha256 (the generated description of the file), found again on a second import; and the
# acquisition time is written to the run's own started_at.


def upgrade() -> None:
    """Nothing to change (see above)."""


def downgrade() -> None:
    """Nothing to change (see above)."""
