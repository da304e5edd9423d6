"""normalise patient emails to lower case

Patient portal logins compare e-mail addresses case-insensitively, but the
intake form stored them as typed. Lower-case the existing rows; the
application lower-cases on write from release 2024.04 on.

Revision ID: fc7bad4eb6f3
Revises: bc06db019257
Create Date: 2024-04-02 16:48:03.671940+00:00

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "fc7bad4eb6f3"
down_revision: str | Sequence[str] | None = "bc06db019257"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE patients SET email = lower(email), updated_at = now() "
        "WHERE email IS NOT NULL AND email <> lower(email)"
    )


def downgrade() -> None:
    # The original capitalisation is not recoverable and nothing depends on it.
    pass
