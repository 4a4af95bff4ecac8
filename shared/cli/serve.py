"""Serve one service with uvicorn, bounded as the settings say: every way a service is started
(`make run`, the Dockerfile, the end-to-end tests) goes through here.

    python -m shared.cli.serve intake --host 0.0.0.0 --port 8001
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn

from shared.domain.codes import Service
from shared.http.protocol import bounded_protocol
from shared.logs import LOG_CONFIG
from shared.settings import Settings


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
    uvicorn.run(
        f"services.{args.service}.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level or settings.log_level,
        **server_options(settings),
    )


if __name__ == "__main__":
    main()
