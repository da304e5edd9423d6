"""Alembic environment for the EHR schema.

The database URL comes from, in order:

1. ``alembic -x url=postgresql://...`` on the command line,
2. the ``SIGNOFF_DATABASE_URL`` environment variable,
3. ``sqlalchemy.url`` in alembic.ini (left unset in this repository).

Offline mode (``alembic upgrade head --sql``) needs no database: without a URL
it renders SQL for the PostgreSQL dialect.

Every revision runs in its own transaction (``transaction_per_migration``) so
that revisions using ``autocommit_block()`` (CREATE INDEX CONCURRENTLY,
ALTER TYPE ... ADD VALUE) commit the work before them and leave the work
after them in a fresh transaction.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import make_url

config = context.config

# Callers that embed alembic (tests, tools) can set
# config.attributes["configure_logger"] = False to keep their own logging.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# No autogenerate: the schema is defined by the revisions themselves.
target_metadata = None

OFFLINE_FALLBACK_URL = "postgresql://"


def database_url() -> str | None:
    x_args = context.get_x_argument(as_dictionary=True)
    url = x_args.get("url") or os.environ.get("SIGNOFF_DATABASE_URL")
    if not url:
        url = config.get_main_option("sqlalchemy.url")
    return url or None


def psycopg_url(url: str) -> str:
    """postgresql:// defaults to psycopg2 in SQLAlchemy; we ship psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def run_migrations_offline() -> None:
    """Emit SQL to the script output instead of running it."""
    url = database_url() or OFFLINE_FALLBACK_URL
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations against a live database."""
    url = database_url()
    if url is None:
        raise RuntimeError(
            "no database URL: pass `alembic -x url=postgresql://...` "
            "or set SIGNOFF_DATABASE_URL"
        )
    connectable = create_engine(psycopg_url(url), poolclass=pool.NullPool)

    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            transaction_per_migration=True,
        )

        with context.begin_transaction():
            context.run_migrations()

    connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
