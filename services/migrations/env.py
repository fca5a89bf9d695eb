"""Alembic's environment: runs the revisions on the store's connection.

The service passes its open connection (``config.attributes["connection"]``), inside the
transaction that holds the schema lock; the ``alembic`` command line connects to the
configured database instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from services.tables import Base


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters a table by copying it; batch mode writes those copies.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    from services.settings import get_settings
    from services.store import engine_url

    engine = create_engine(engine_url(get_settings().resolved_database_url))
    with engine.begin() as opened:
        run(opened)
