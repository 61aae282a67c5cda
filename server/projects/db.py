"""Open the projects database and bring its schema up to date (Alembic, on start).

SQLite by default: one file in the data directory, WAL journal, foreign keys on, ``synchronous=FULL`` (a
save that was answered survives a power cut, not only a killed process). Its transactions are begun by us
(``BEGIN`` / ``BEGIN IMMEDIATE``) instead of by the sqlite3 module, so a write transaction holds the write
lock from its first statement. Any other SQLAlchemy URL works, PostgreSQL through psycopg 3
(``postgresql+psycopg://user@host/db``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from clicksam.errors import UsageError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR: Final[Path] = Path(__file__).resolve().parent / "migrations"
SQLITE_FILE: Final[str] = "clicksam.sqlite3"
#: seconds a SQLite writer waits for another writer's lock before giving up
SQLITE_BUSY_TIMEOUT_S: Final[float] = 30.0


class DatabaseUrlError(UsageError):
    """The database URL cannot be used: malformed, an unknown dialect, or its driver is not installed."""


def default_url(data_dir: Path) -> str:
    """The SQLite file in ``data_dir`` (created with its folder on first use)."""
    return f"sqlite:///{data_dir / SQLITE_FILE}"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_on_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_on_begin(connection: Any) -> None:
    immediate = connection.get_execution_options().get("sqlite_immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_db_engine(url: str) -> Engine:
    """An engine for ``url``; for SQLite the file's folder is created and the pragmas are set per connection.

    Raises:
        DatabaseUrlError: a malformed URL, an unknown dialect, or a driver that is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUrlError(
            f"not a database URL: {url!r}; use e.g. postgresql+psycopg://user@host/db or sqlite:///file"
        ) from exc
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
            )
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", _sqlite_on_begin)
            return engine
        return create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError as exc:
        raise DatabaseUrlError(f"SQLAlchemy knows no database {parsed.drivername!r}: {exc}") from exc
    except ModuleNotFoundError as exc:
        raise DatabaseUrlError(
            f"no driver for {parsed.drivername} ({exc.name} is not installed): "
            "pip install 'clicksam[server]' brings SQLite and PostgreSQL (psycopg 3)"
        ) from exc


def writer(engine: Engine) -> Engine:
    """The same engine whose transactions take SQLite's write lock at BEGIN (no-op elsewhere)."""
    return engine.execution_options(sqlite_immediate=True)


#: PostgreSQL advisory lock key that serialises migrations of servers starting at once
_MIGRATION_LOCK = 0x636C69636B73616D  # "clicksam"


def upgrade(engine: Engine) -> None:
    """Run every Alembic migration not yet applied (``upgrade head``) on ``engine``'s database.

    Servers starting at once take turns: SQLite by the write lock taken at BEGIN, PostgreSQL by an
    advisory lock held until the migration's transaction ends; the later ones find nothing to do.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with writer(engine).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    logger.info("projects database at %s is up to date", engine.url.render_as_string(hide_password=True))
