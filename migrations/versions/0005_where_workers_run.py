"""where workers run and their GPUs

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

`workers.gpus`: the GPUs a worker announces at start ([{index, name, memory_mib}], [] on a CPU worker);
`workers.slurm_job_id`, `slurm_job_name`, `slurm_partition`: the Slurm job it runs in; `workers.pod_name`,
`pod_namespace`: its Kubernetes pod. All nullable: a worker registered before this revision said none of it
(NULL gpus reads as "not announced", not as "no GPU"); it says them when it registers again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("gpus", sa.JSON()), ("slurm_job_id", sa.String(64)), ("slurm_job_name", sa.String(200)),
           ("slurm_partition", sa.String(200)), ("pod_name", sa.String(253)), ("pod_namespace", sa.String(63)))


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
