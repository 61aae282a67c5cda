"""Alembic environment of the projects schema: runs on the connection ``db.upgrade`` hands over.

``alembic revision --autogenerate`` works too: set ``sqlalchemy.url`` with ``-x url=...``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from clicksam.server.projects.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///clicksam.sqlite3")
    with create_engine(url).connect() as own:
        _run(own)
        own.commit()
