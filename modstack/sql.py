"""SQLAlchemy engines and table creation shared by the stores kept in a database (the message
log, dead letters, the review queue): SQLite on one machine, PostgreSQL at scale."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlalchemy as sa


@lru_cache(maxsize=8)
def engine_for(url: str) -> sa.Engine:
    """One engine per URL and process: a SQLite file gets no pool (each operation closes its
    connection, so a removed file is noticed), a server a pool of checked connections."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    if sa.engine.make_url(url).get_backend_name() == "sqlite":
        return sa.create_engine(url, poolclass=NullPool, connect_args={"timeout": 10})
    return sa.create_engine(url, pool_pre_ping=True)


def create_tables(metadata: sa.MetaData, engine: sa.Engine) -> None:
    """Create the tables of `metadata` that do not exist yet, when several processes may do it
    at once (replicas starting together): PostgreSQL refuses the second CREATE of a table with
    a unique violation on its catalogue even after the existence check, so a failure is
    accepted when every table exists afterwards."""
    import sqlalchemy as sa

    try:
        metadata.create_all(engine, checkfirst=True)
    except sa.exc.DBAPIError:
        existing = set(sa.inspect(engine).get_table_names())
        if not set(metadata.tables) <= existing:
            raise
