"""The obvious alternative: the `eventsourcing` library's own Application, used in-process
(no HTTP, no rules, no projections), on the same PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlparse
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class Note(Aggregate):
    @event("Created")
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines: list[str] = []

    @event("Appended")
    def append(self, line: str) -> None:
        self.lines.append(line)


class Notes(Application[UUID]):
    name = "benchpeer"


def _app(dsn: str) -> Notes:
    url = urlparse(dsn)
    return Notes(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": url.path.lstrip("/"),
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_PASSWORD": url.password or "",
            "POSTGRES_POOL_SIZE": "16",
            "CREATE_TABLE": "y",
        }
    )


def measure(dsn: str, seconds: float, concurrencies: tuple[int, ...]) -> dict[str, Any]:
    app = _app(dsn)
    try:
        creations = {}
        for threads in concurrencies:
            counts = [0] * threads
            stop = time.monotonic() + seconds

            def client(i: int, counts: list[int] = counts, stop: float = stop) -> None:
                while time.monotonic() < stop:
                    app.save(Note(text="Billed twice for November."))
                    counts[i] += 1

            began = time.monotonic()
            workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            creations[str(threads)] = sum(counts) / (time.monotonic() - began)
        gets = {}
        for size in (10, 100):
            note = Note(text="x")
            for n in range(size - 1):
                note.append(line=f"line {n}")
            app.save(note)
            latencies = []
            stop = time.monotonic() + seconds / 2
            while time.monotonic() < stop:
                began_get = time.perf_counter()
                app.repository.get(note.id)
                latencies.append(time.perf_counter() - began_get)
            latencies.sort()
            gets[str(size)] = {
                "p50_ms": latencies[len(latencies) // 2] * 1000,
                "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
            }
        return {"creations_per_s": creations, "get": gets}
    finally:
        app.close()
