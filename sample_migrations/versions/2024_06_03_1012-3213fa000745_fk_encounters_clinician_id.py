"""add foreign key encounters.clinician_id -> clinicians

Revision ID: 3213fa000745
Revises: 9df3a2e08a87
Create Date: 2024-06-03 10:12:30.008417+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "3213fa000745"
down_revision: str | Sequence[str] | None = "9df3a2e08a87"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_foreign_key(
        op.f("fk_encounters_clinician_id_clinicians"),
        "encounters",
        "clinicians",
        ["clinician_id"],
        ["id"],
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_encounters_clinician_id_clinicians"),
        "encounters",
        type_="foreignkey",
    )
