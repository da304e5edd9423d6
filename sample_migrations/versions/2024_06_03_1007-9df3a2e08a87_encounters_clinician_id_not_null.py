"""make encounters.clinician_id not null

Every encounter has had an attending clinician since the scheduling rewrite;
the last NULL rows were fixed by hand in INC-2291.

Revision ID: 9df3a2e08a87
Revises: c5289cc231f5
Create Date: 2024-06-03 10:07:44.250198+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "9df3a2e08a87"
down_revision: str | Sequence[str] | None = "c5289cc231f5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "encounters",
        "clinician_id",
        existing_type=sa.Integer(),
        nullable=False,
    )


def downgrade() -> None:
    op.alter_column(
        "encounters",
        "clinician_id",
        existing_type=sa.Integer(),
        nullable=True,
    )
