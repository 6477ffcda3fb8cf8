"""model family (price | risk) on versions and promotions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every version and promotion before this migration is a price model. A plain string, not
# sa.text: with a SQL-expression default Alembic's SQLite batch mode rebuilds the table, and
# dropping model_versions then fails its foreign keys once any version exists.
_PRICE = "price"


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("family", sa.String(16), nullable=False, server_default=_PRICE))
    with op.batch_alter_table("promotions") as batch:
        batch.add_column(sa.Column("family", sa.String(16), nullable=False, server_default=_PRICE))
    op.create_index("ix_promotions_asset_family", "promotions", ["asset", "family"])


def downgrade() -> None:
    op.drop_index("ix_promotions_asset_family", table_name="promotions")
    with op.batch_alter_table("promotions") as batch:
        batch.drop_column("family")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("family")
