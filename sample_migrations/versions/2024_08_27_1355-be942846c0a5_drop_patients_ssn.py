"""drop patients.ssn

We no longer collect social security numbers (privacy review PR-118); the
values were purged from the source system and are not needed for billing.

Revision ID: be942846c0a5
Revises: 159bd3e0d7b6
Create Date: 2024-08-27 13:55:51.214996+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "be942846c0a5"
down_revision: str | Sequence[str] | None = "159bd3e0d7b6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column("patients", "ssn")


def downgrade() -> None:
    # The data is gone; only the column comes back.
    op.add_column(
        "patients",
        sa.Column("ssn", sa.String(length=11), autoincrement=False, nullable=True),
    )
