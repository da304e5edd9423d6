"""create encounters

Revision ID: c2b722edb006
Revises: 0d5b4ef5d34c
Create Date: 2024-03-06 14:02:11.904512+00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c2b722edb006"
down_revision: str | Sequence[str] | None = "0d5b4ef5d34c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

encounter_status = sa.Enum("planned", "in_progress", "finished", name="encounter_status")


def upgrade() -> None:
    op.create_table(
        "encounters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.Integer(), nullable=False),
        # FK to clinicians is missing on purpose here; see 3213fa000745.
        sa.Column("clinician_id", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            encounter_status,
            server_default="planned",
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_encounters_patient_id_patients"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encounters")),
    )


def downgrade() -> None:
    op.drop_table("encounters")
    encounter_status.drop(op.get_bind(), checkfirst=False)
