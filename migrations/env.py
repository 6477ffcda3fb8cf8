"""Alembic environment: always run with a connection handed in by btc_predictor.storage.db."""

from alembic import context

from btc_predictor.storage.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations with `btc-predictor db upgrade`, which supplies the database"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
