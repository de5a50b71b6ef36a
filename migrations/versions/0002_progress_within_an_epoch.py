"""progress within an epoch

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

`runs.live`: what the worker is doing now (epoch, split, batch of batches, samples/s), sent with its heartbeat;
`runs.progress_at`: when the last batch finished, so a long first epoch that is making progress is not stalled.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("live", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("progress_at")
        batch.drop_column("live")
