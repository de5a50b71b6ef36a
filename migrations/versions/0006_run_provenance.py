"""run provenance and re-runs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

`runs.provenance`: what a training attempt records at its start (amst_core.provenance: code version and commit,
torch, CUDA, cuDNN, host and device, the data fingerprint, the full resolved config, their digests), written by the
worker; `runs.rerun_of`: the run this one re-runs (POST /runs/{id}/rerun), NULL when that run is deleted. Both
nullable: a run that trained before this revision recorded no provenance, and most runs re-run nothing.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("provenance", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("rerun_of", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_runs_rerun_of_runs", "runs", ["rerun_of"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("fk_runs_rerun_of_runs", type_="foreignkey")
        batch.drop_column("rerun_of")
        batch.drop_column("provenance")
