"""add 'cancelled' to encounter_status

ALTER TYPE ... ADD VALUE cannot run inside a transaction block before
PostgreSQL 12 (and the new value cannot be used in the same transaction on
any version), so it runs in an autocommit block.

Revision ID: 159bd3e0d7b6
Revises: 3213fa000745
Create Date: 2024-07-16 08:48:15.590362+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "159bd3e0d7b6"
down_revision: str | Sequence[str] | None = "3213fa000745"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("ALTER TYPE encounter_status ADD VALUE 'cancelled'")


def downgrade() -> None:
    # PostgreSQL cannot drop an enum value: rebuild the type without it.
    # Cancelled encounters did not exist before this revision; they go back
    # to 'finished' (that is how the scheduler closed them before).
    op.execute("UPDATE encounters SET status = 'finished' WHERE status = 'cancelled'")
    op.execute("ALTER TYPE encounter_status RENAME TO encounter_status_old")
    op.execute("CREATE TYPE encounter_status AS ENUM ('planned', 'in_progress', 'finished')")
    op.execute("ALTER TABLE encounters ALTER COLUMN status DROP DEFAULT")
    op.execute(
        "ALTER TABLE encounters ALTER COLUMN status TYPE encounter_status "
        "USING status::text::encounter_status"
    )
    op.execute("ALTER TABLE encounters ALTER COLUMN status SET DEFAULT 'planned'")
    op.execute("DROP TYPE encounter_status_old")
