"""rename patients.phone to phone_number

Revision ID: c5289cc231f5
Revises: 7dc6e57d7249
Create Date: 2024-05-21 15:30:09.771843+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c5289cc231f5"
down_revision: str | Sequence[str] | None = "7dc6e57d7249"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "patients",
        "phone",
        new_column_name="phone_number",
        existing_type=sa.String(length=32),
        existing_nullable=True,
    )


def downgrade() -> None:
    op.alter_column(
        "patients",
        "phone_number",
        new_column_name="phone",
        existing_type=sa.String(length=32),
        existing_nullable=True,
    )
