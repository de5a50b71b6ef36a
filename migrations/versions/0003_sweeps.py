"""sweeps

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

`sweeps`: a grid of runs submitted as one study; `runs.sweep_id` / `runs.sweep_cell`: a run's sweep and grid
values (a sweep's run without a task is held back until its sweep may run one more).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=False),
        sa.Column("baseline", sa.JSON(), nullable=True),
        sa.Column("max_concurrent", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
    )
    op.create_index("ix_sweeps_created", "sweeps", ["created_at", "id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("sweep_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("sweep_cell", sa.JSON(), nullable=True))
        batch.create_foreign_key("fk_runs_sweep_id_sweeps", "sweeps", ["sweep_id"], ["id"], ondelete="SET NULL")
        batch.create_index("ix_runs_sweep", ["sweep_id", "status"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_sweep")
        batch.drop_constraint("fk_runs_sweep_id_sweeps", type_="foreignkey")
        batch.drop_column("sweep_cell")
        batch.drop_column("sweep_id")
    op.drop_index("ix_sweeps_created", table_name="sweeps")
    op.drop_table("sweeps")
