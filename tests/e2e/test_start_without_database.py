"""A real service process started while its PostgreSQL cannot be reached stays alive and not
ready, and becomes ready by itself once the database answers; its log lines are JSON with
ISO-8601 UTC times, and its start at info level prints none of alembic's lines."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.engine import make_url

from shared.cli.run import free_port, service_command, stop_process
from tests.e2e.processes import ROOT, log_file

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(60)]


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextmanager
def tcp_proxy(port: int, target: tuple[str, int]) -> Iterator[None]:
    """Listen on 127.0.0.1:`port` and pass every connection on to `target`, both ways."""
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(0.2)
    stopping = threading.Event()
    opened: list[socket.socket] = []

    def serve() -> None:
        while not stopping.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(target)
            opened.extend((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopping.set()
        thread.join()
        server.close()
        for each in opened:
            each.close()


def _ready(url: str) -> httpx.Response | None:
    try:
        return httpx.get(f"{url}/ready", timeout=2)
    except httpx.HTTPError:
        return None


def test_a_service_waits_for_its_database_alive_and_not_ready(
    store_env: dict[str, str],
) -> None:
    real = make_url(store_env["COMPLAINTS_DATABASE_URL"])
    port = free_port()  # where the database "is": nothing answers there yet
    away = real.set(port=port).render_as_string(hide_password=False)
    # (and a local time zone far from UTC: the logs' times are UTC all the same)
    env = {**store_env, "COMPLAINTS_DATABASE_URL": away, "TZ": "Asia/Shanghai"}
    service_port = free_port()
    url = f"http://127.0.0.1:{service_port}"
    log_path = log_file("waiting-intake")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            service_command("intake", service_port, log_level="info"),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while (answer := _ready(url)) is None:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert answer.status_code == 503
        assert "the event store cannot be opened" in answer.json()["detail"]
        assert httpx.get(f"{url}/health").json()["status"] == "ok"

        with tcp_proxy(port, (real.host or "127.0.0.1", real.port or 5432)):
            deadline = time.monotonic() + 25
            while (answer := _ready(url)) is None or answer.status_code != 200:
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
            assert answer.json()["status"] == "ready"
            stop_process(process)
    finally:
        stop_process(process)

    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert lines, "the service logged nothing"
    for line in lines:
        at = datetime.fromisoformat(line["time"])
        assert at.utcoffset() is not None and at.utcoffset() == UTC.utcoffset(None)
        assert line["time"].endswith("+00:00")
        assert not line["logger"].startswith("alembic")
    assert any("starting anyway" in line["message"] for line in lines)
    assert any("ready" in line["message"] and line["logger"] == "complaints" for line in lines)
