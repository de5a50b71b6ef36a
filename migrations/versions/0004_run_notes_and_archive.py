"""run notes and archive

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

`runs.notes`: free text a person keeps with a run (PATCH /runs/{id}); `runs.archived_at`: when the run was
archived, so run lists hide it unless asked (GET /runs?archived=only|all). Both nullable: existing runs have
no notes and are not archived.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))
        batch.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("archived_at")
        batch.drop_column("notes")
