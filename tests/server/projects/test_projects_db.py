"""The database: migrations equal the models, SQLite settings, migrations are idempotent on start, an
older database upgrades with its data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from clicksam.server.projects.db import DatabaseUrlError, create_db_engine, default_url, upgrade
from clicksam.server.projects.models import Base


def test_migrations_build_exactly_the_models(database: str | None, tmp_path: Path) -> None:
    engine = create_db_engine(database or default_url(tmp_path))
    try:
        upgrade(engine)
        upgrade(engine)  # a second start finds nothing to do
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == "0002"
    finally:
        engine.dispose()


def test_sqlite_is_one_wal_file_with_foreign_keys_in_the_data_dir(tmp_path: Path) -> None:
    engine = create_db_engine(default_url(tmp_path / "data"))
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert (tmp_path / "data" / "clicksam.sqlite3").is_file()
    finally:
        engine.dispose()


def test_unusable_urls_say_why() -> None:
    with pytest.raises(
        DatabaseUrlError, match=r"pymysql is not installed\): pip install 'clicksam\[server\]'"
    ):
        create_db_engine("mysql+pymysql://x@127.0.0.1/db")
    with pytest.raises(DatabaseUrlError, match=r"SQLAlchemy knows no database 'mysql\+nosuchdriver'"):
        create_db_engine("mysql+nosuchdriver://x@127.0.0.1/db")
    with pytest.raises(DatabaseUrlError, match="not a database URL: 'just words'"):
        create_db_engine("just words")


def test_servers_starting_at_once_migrate_once(database: str | None, tmp_path: Path) -> None:
    import threading

    url = database or default_url(tmp_path)
    engines = [create_db_engine(url) for _ in range(3)]
    errors: list[BaseException] = []

    def run(engine: object) -> None:
        try:
            upgrade(engine)  # type: ignore[arg-type]
        except BaseException as exc:  # collected: the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        with engines[0].connect() as conn:
            assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [("0002",)]
    finally:
        for e in engines:
            e.dispose()


def test_a_database_at_the_first_revision_upgrades_with_its_data(
    database: str | None, tmp_path: Path
) -> None:
    from alembic import command
    from alembic.config import Config

    from clicksam.server.projects.db import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))

    def migrate(step: Callable[[Config, str], None], revision: str) -> None:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            step(config, revision)

    engine = create_db_engine(database or default_url(tmp_path))
    try:
        migrate(command.upgrade, "0001")  # a database made before proposals existed, with a project
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO projects (name, created_at) VALUES ('old', CURRENT_TIMESTAMP)")
        upgrade(engine)  # what a start does
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT name FROM projects").all() == [("old",)]
            assert conn.exec_driver_sql("SELECT count(*) FROM proposals").scalar() == 0
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        migrate(command.downgrade, "0001")  # and back: the proposals table goes, the data stays
        with engine.connect() as conn:
            assert "proposals" not in sqlalchemy.inspect(conn).get_table_names()
            assert conn.exec_driver_sql("SELECT name FROM projects").all() == [("old",)]
    finally:
        engine.dispose()
