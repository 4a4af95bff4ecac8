"""A PostgreSQL database of a measurement's own, set up as `make setup` does and dropped
afterwards, for the measurements that leave what a store shared with the rest of the bench must
not hold (events no projector has read, projections reset)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.settings import Settings


@contextmanager
def own_database(admin: str, prefix: str) -> Iterator[dict[str, str]]:
    """A database of its own on the server at `admin`, its environment in this process's
    while it lasts (yielded too); the process environment is restored afterwards."""
    from bench.run import bench_env
    from tests.postgres import create_database, drop_database

    dsn = create_database(admin)
    saved = dict(os.environ)
    try:
        env = bench_env(dsn, Path(tempfile.mkdtemp(prefix=prefix)))
        os.environ.update(env)
        subprocess.run([sys.executable, "-m", "shared.cli.setup_store"], env=env, check=True)
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        drop_database(admin, dsn)


def quiet_settings() -> Settings:
    """The environment's settings, without the background jobs (their statements and CPU are
    not what is measured)."""
    return Settings(projector_enabled=False, deadline_watch_enabled=False, dispatcher_enabled=False)
