"""A real PostgreSQL for the tests: the one at 127.0.0.1:5432, or a throwaway local cluster.

Never a mock. If no server answers, a cluster is started from the local binaries (`initdb`,
`pg_ctl`); if those are missing too, the run stops with one message saying so.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import psycopg
from psycopg import sql

from shared.cli.run import free_port

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(url: str) -> bool:
    try:
        with closing(psycopg.connect(url, connect_timeout=3)):
            return True
    except psycopg.Error:
        return False


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


class NoPostgres(RuntimeError):
    pass


class Cluster:
    """A throwaway PostgreSQL cluster from the local binaries (`initdb`, `pg_ctl`), on a free
    port. It can be crashed (`stop -m immediate`: no shutdown checkpoint, like a power cut for
    the server process) and started again on the same data. `options`: server settings
    (`-c name=value`) it always runs with."""

    def __init__(self, *options: str) -> None:
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise NoPostgres(
                "No initdb/pg_ctl were found to start a PostgreSQL cluster. Install "
                "PostgreSQL 15 (e.g. `apt-get install postgresql`)."
            )
        self.pg_ctl = pg_ctl
        self.options = "".join(f" -c {option}" for option in options)
        self.workdir = tempfile.mkdtemp(prefix="complaints-pg-")
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.workdir, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self.data = os.path.join(self.workdir, "data")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        subprocess.run(
            [*self.prefix, initdb, "-D", self.data, "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        subprocess.run(
            [
                *self.prefix,
                self.pg_ctl,
                "-D",
                self.data,
                "-l",
                os.path.join(self.workdir, "log"),
                "-w",
                "-o",
                f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1{self.options}",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 30
        while not _answers(self.url):
            if time.monotonic() > deadline:
                raise NoPostgres("the throwaway PostgreSQL cluster did not start")
            time.sleep(0.2)

    def crash(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", self.data, "-m", "immediate", "stop"],
            capture_output=True,
        )

    def remove(self) -> None:
        self.crash()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields an admin URL of a PostgreSQL server to create test databases in."""
    url = os.environ.get("COMPLAINTS_TEST_POSTGRES_URL", DEFAULT_URL)
    if _answers(url):
        yield url
        return
    try:
        cluster = Cluster()
    except NoPostgres as exc:
        raise NoPostgres(
            f"No PostgreSQL answers at {url} and {exc} Or set COMPLAINTS_TEST_POSTGRES_URL "
            "to a server you can create databases on."
        ) from None
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.remove()


def create_database(admin_url: str, *, template: str | None = None) -> str:
    """Create a fresh database and return its URL."""
    name = f"complaints_test_{uuid.uuid4().hex[:12]}"
    with closing(psycopg.connect(admin_url, autocommit=True)) as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        conn.execute(statement)
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with closing(psycopg.connect(admin_url, autocommit=True)) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


#: The tables the projections write (the read models and the audit chain), each in a stable
#: order: what the crash tests compare with a rebuild.
READ_MODELS = {
    "complaint_summaries": "complaint_id",
    "deadlines": "complaint_id, name",
    "complaint_analysis": "complaint_id",
    "notifications": "complaint_id, notification_id",
    "audit_chain": "position",
}


def read_models(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read model, in a stable order."""
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            for table, order in READ_MODELS.items()
        }
