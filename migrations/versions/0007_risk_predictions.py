"""risk ledger: served risk forecasts, scored when the target day's candle arrives

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from btc_predictor.storage.tables import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "risk_predictions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("asset", sa.String(32), nullable=False),
        sa.Column("model", sa.String(32), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=False),
        sa.Column("price_version", sa.Integer(), nullable=True),
        sa.Column("as_of", UTCDateTime(), nullable=False),
        sa.Column("horizon", sa.Integer(), nullable=False),
        sa.Column("target_date", sa.Date(), nullable=False),
        sa.Column("last_close", sa.Double(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("volatility", sa.Double(), nullable=False),
        sa.Column("range_pct", sa.Double(), nullable=False),
        sa.Column("range_lower_pct", sa.Double(), nullable=True),
        sa.Column("range_upper_pct", sa.Double(), nullable=True),
        sa.Column("naive_range_pct", sa.Double(), nullable=False),
        sa.Column("var_95", sa.Double(), nullable=True),
        sa.Column("var_99", sa.Double(), nullable=True),
        sa.Column("p_up", sa.Double(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("actual_range_pct", sa.Double(), nullable=True),
        sa.Column("abs_error", sa.Double(), nullable=True),
        sa.Column("naive_abs_error", sa.Double(), nullable=True),
        sa.Column("inside", sa.Boolean(), nullable=True),
        sa.Column("loss_pct", sa.Double(), nullable=True),
        sa.Column("var_95_violated", sa.Boolean(), nullable=True),
        sa.Column("var_99_violated", sa.Boolean(), nullable=True),
        sa.Column("went_up", sa.Boolean(), nullable=True),
        sa.Column("scored_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "asset", "model_version", "as_of", "horizon", name="uq_risk_predictions_key"
        ),
    )
    op.create_index("ix_risk_predictions_asset", "risk_predictions", ["asset"])
    op.create_index("ix_risk_predictions_target_date", "risk_predictions", ["target_date"])


def downgrade() -> None:
    op.drop_index("ix_risk_predictions_target_date", table_name="risk_predictions")
    op.drop_index("ix_risk_predictions_asset", table_name="risk_predictions")
    op.drop_table("risk_predictions")
