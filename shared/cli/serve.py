"""Serve one service with uvicorn, bounded as the settings say: every way a service is started
(`make run`, the Dockerfile, the end-to-end tests) goes through here.

    python -m shared.cli.serve intake --host 0.0.0.0 --port 8001

With `COMPLAINTS_METRICS_PORT` set, the process listens on that port too, on the same host:
one uvicorn server on both sockets (one app, one lifespan, one event loop; a shutdown drains
both), the app telling them apart by the port a request came in on (`MetricsPort`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import socket
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from shared.domain.codes import Service
from shared.http.protocol import bounded_protocol
from shared.logs import LOG_CONFIG
from shared.settings import Settings

log = logging.getLogger("complaints")


def server_options(settings: Settings) -> dict[str, Any]:
    """What uvicorn is told besides the address: limits and timeouts, logging, proxies."""
    return {
        "http": bounded_protocol(settings),  # header size, count and read timeouts
        "timeout_keep_alive": settings.keep_alive_seconds,
        # X-Forwarded-For is believed only from COMPLAINTS_TRUSTED_PROXIES, by the app itself
        # (shared.http.app); uvicorn's own would believe any local peer.
        "proxy_headers": False,
        "log_config": str(LOG_CONFIG),
        "access_log": False,  # our own access log carries the correlation id, never a query
    }


def listening(config: uvicorn.Config, metrics_port: int | None) -> list[socket.socket] | None:
    """The sockets to serve: None for uvicorn's own (the API's port alone), else the API's
    port and the metrics port, each bound on the host as uvicorn binds its own (it exits,
    logging why, if a port is taken)."""
    if metrics_port is None:
        return None
    metrics = copy.copy(config)  # (bind_socket reads only the address)
    metrics.port = metrics_port
    return [config.bind_socket(), metrics.bind_socket()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m shared.cli.serve",
        description="Serve one service with uvicorn, bounded as the COMPLAINTS_* settings say.",
    )
    parser.add_argument("service", choices=[s.value for s in Service])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", help="default: COMPLAINTS_LOG_LEVEL")
    args = parser.parse_args(argv)
    settings = Settings()
    if settings.metrics_port == args.port:
        parser.error(f"--port {args.port} is COMPLAINTS_METRICS_PORT: give the API another")
    config = uvicorn.Config(
        f"services.{args.service}.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level or settings.log_level,
        **server_options(settings),
    )
    sockets = listening(config, settings.metrics_port)
    if sockets is not None:
        log.info("/metrics is served on port %d only", settings.metrics_port)
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    if not server.started:  # (as uvicorn.run ends)
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    main()
