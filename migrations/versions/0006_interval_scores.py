"""interval scores: the active price version's forecasts recorded at each ingest, scored when
their target day closes (the adaptive interval state, independent of traffic)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from btc_predictor.storage.tables import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "interval_scores",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("asset", sa.String(32), nullable=False),
        sa.Column("price_version", sa.Integer(), nullable=False),
        sa.Column("risk_version", sa.Integer(), nullable=True),
        sa.Column("horizon", sa.Integer(), nullable=False),
        sa.Column("origin_date", sa.Date(), nullable=False),
        sa.Column("target_date", sa.Date(), nullable=False),
        sa.Column("last_close", sa.Double(), nullable=False),
        sa.Column("forecast", sa.Double(), nullable=False),
        sa.Column("sigma", sa.Double(), nullable=True),
        sa.Column("actual", sa.Double(), nullable=True),
        sa.Column("score", sa.Double(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("scored_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "asset", "price_version", "origin_date", "horizon", name="uq_interval_scores_key"
        ),
    )
    op.create_index(
        "ix_interval_scores_series", "interval_scores", ["asset", "price_version", "horizon"]
    )
    op.create_index("ix_interval_scores_target_date", "interval_scores", ["target_date"])


def downgrade() -> None:
    op.drop_index("ix_interval_scores_target_date", table_name="interval_scores")
    op.drop_index("ix_interval_scores_series", table_name="interval_scores")
    op.drop_table("interval_scores")
