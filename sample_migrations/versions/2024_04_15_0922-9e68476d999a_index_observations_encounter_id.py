"""index observations.encounter_id

The encounter timeline loads all observations of an encounter; without this
index that is a sequential scan of observations.

Revision ID: 9e68476d999a
Revises: fc7bad4eb6f3
Create Date: 2024-04-15 09:22:38.015266+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "9e68476d999a"
down_revision: str | Sequence[str] | None = "fc7bad4eb6f3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_observations_encounter_id"),
        "observations",
        ["encounter_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_observations_encounter_id"), table_name="observations")
