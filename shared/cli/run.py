"""Start all four services against one store and stop them together (`make run`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from shared.audit.checkpoints import key_fingerprint, load_key
from shared.cli.setup_store import main as setup_main
from shared.settings import Settings

SERVICES = {"intake": 8001, "investigation": 8002, "escalation": 8003, "callback": 8004}
GATEWAY_PORT = 8025


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    """Whether the service on `port` answers /ready with 200 before `timeout` (False at once
    if its process exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on just now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Ask the process to stop (SIGTERM: a clean shutdown); kill it if it does not in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def service_command(
    name: str, port: int, *, host: str = "127.0.0.1", log_level: str = "info"
) -> list[str]:
    """How a service process is started (`shared.cli.serve`: uvicorn as the settings say)."""
    return [
        sys.executable,
        "-m",
        "shared.cli.serve",
        name,
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        log_level,
    ]


def metrics_ports_of(settings: Settings) -> dict[str, int]:
    """With COMPLAINTS_METRICS_PORT set, the four services on this one host serve their
    metrics on it and the three ports after it, in the order of SERVICES; else none."""
    if settings.metrics_port is None:
        return {}
    return {name: settings.metrics_port + i for i, name in enumerate(SERVICES)}


def main() -> None:
    settings = Settings()
    setup_main()
    host = os.environ.get("COMPLAINTS_HOST", "127.0.0.1")
    gateway = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "devtools.gateway:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(GATEWAY_PORT),
            "--log-level",
            "warning",
        ],
    )
    metrics_ports = metrics_ports_of(settings)
    processes = {
        name: subprocess.Popen(
            service_command(name, port, host=host, log_level=settings.log_level),
            env=os.environ | {"COMPLAINTS_METRICS_PORT": str(metrics_ports[name])}
            if metrics_ports
            else None,
        )
        for name, port in SERVICES.items()
    }

    processes["gateway"] = gateway

    def stop(*_: object) -> None:
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name, port in SERVICES.items():
        if not wait_ready(port, processes[name]):
            print(f"{name} did not become ready on port {port}", file=sys.stderr)
            stop()
    print("\nAll four services are up:")
    for name, port in SERVICES.items():
        print(f"  {name:<14} http://{host}:{port}   docs: http://{host}:{port}/docs")
    for name, metrics_port in metrics_ports.items():
        print(f"  {name:<14} metrics: http://{host}:{metrics_port}/metrics")
    print(f"\nConsole (any service serves it):  http://{host}:{SERVICES['intake']}/console/")
    fingerprint = key_fingerprint(load_key(settings.audit_key_path, create=False))
    print(f"\nAudit signing key, SHA-256 fingerprint: {fingerprint}")
    print("  (GET /audit/public-key; give it to regulators by a channel of your own to pin)")
    print(
        "\nMint a token:  make token ROLE=agent        (roles: agent, investigator, "
        "supervisor, callback, analyst, regulator, admin)"
    )
    print("Stop:          Ctrl-C\n")
    while all(p.poll() is None for p in processes.values()):
        time.sleep(0.5)
    print("a service stopped; stopping the others", file=sys.stderr)
    stop()


if __name__ == "__main__":
    main()
