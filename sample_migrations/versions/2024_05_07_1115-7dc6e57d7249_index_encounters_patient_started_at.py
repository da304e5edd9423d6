"""index encounters (patient_id, started_at) concurrently

encounters is large by now; build the index without blocking writes.
CREATE INDEX CONCURRENTLY cannot run inside a transaction block, hence the
autocommit block.

Revision ID: 7dc6e57d7249
Revises: 9e68476d999a
Create Date: 2024-05-07 11:15:20.482719+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7dc6e57d7249"
down_revision: str | Sequence[str] | None = "9e68476d999a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_encounters_patient_id_started_at",
            "encounters",
            ["patient_id", "started_at"],
            unique=False,
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_encounters_patient_id_started_at",
            table_name="encounters",
            postgresql_concurrently=True,
        )
