"""Alembic environment. The service runs migrations itself (core.store.db.Database.open), passing
an open connection in `config.attributes["connection"]`; without one, only offline mode (SQL
script output, `url` set in the config) is supported."""

from __future__ import annotations

from alembic import context

import core.store.faces  # noqa: F401  (registers the face tables on Base.metadata)
from core.store.models import Base

config = context.config
target_metadata = Base.metadata


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=bool(url and url.startswith("sqlite")))
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through core.store.Database.open(url), "
                           "or pass an open connection in config.attributes['connection']")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
