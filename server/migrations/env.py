"""Alembic environment. The service runs migrations itself (server.store.db.Database.open), passing
an open connection in `config.attributes["connection"]`; without one, only offline mode (SQL
script output, `url` set in the config) is supported."""

from __future__ import annotations

from alembic import context

# --- issue 3 (identity): register the identity tables on Base.metadata -----------------------
import identity.guardian_models  # issue 4: guardian face enrollments
import identity.models  # noqa: F401
from server.store.models import Base

# ---------------------------------------------------------------------------------------------

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
        raise RuntimeError("run migrations through server.store.Database.open(url), "
                           "or pass an open connection in config.attributes['connection']")
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
