"""The edge of a real uvicorn process (`shared.cli.serve`): oversized and slow requests are cut
off without holding the server, and a forged X-Forwarded-For escapes no limit."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.processes import service, service_env, setup_store, token
from tests.postgres import create_database, drop_database

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_COUNT = 100
#: Short, so that a test waits for a slow client's disconnection no longer than this.
TIMEOUT = 1.0
BURST = 3
#: Longest a test waits for the server to close a connection it should close within TIMEOUT.
PATIENCE = 10.0


@pytest.fixture(scope="module")
def edge(postgres_admin_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """One intake process with short read timeouts and a tight limit per address."""
    url = create_database(postgres_admin_url)
    env = service_env(
        url,
        COMPLAINTS_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
        COMPLAINTS_MAX_HEADER_COUNT=str(MAX_HEADER_COUNT),
        COMPLAINTS_HEADER_TIMEOUT_SECONDS=str(TIMEOUT),
        COMPLAINTS_BODY_TIMEOUT_SECONDS=str(TIMEOUT),
        COMPLAINTS_RATE_LIMIT_PER_SECOND="0.1",
        COMPLAINTS_RATE_LIMIT_BURST=str(BURST),
    )
    setup_store(env)
    with service("intake", env) as intake:
        yield intake, env
    drop_database(postgres_admin_url, url)


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=PATIENCE)


def answer_of(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" if it only closes)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return received


def one_answer(sock: socket.socket) -> bytes:
    """The head and body of one answer on a connection kept open (its Content-Length read)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    answer_head, body = received.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in answer_head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return answer_head


def closed_while_trickling(sock: socket.socket) -> tuple[bool, float, bytes]:
    """Send one byte at a time, each after waiting up to 0.2 s for the server to close the
    connection; whether it did within PATIENCE, after how long, and what it answered."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < PATIENCE:
        try:
            sock.sendall(b"a")
            answer = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True, time.monotonic() - started, b""
        return answer == b"", time.monotonic() - started, answer
    return False, time.monotonic() - started, b""


def head(*lines: str) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode()


def test_a_header_block_over_the_limit_is_refused_once_the_limit_is_read(
    edge: tuple[str, dict[str, str]],
) -> None:
    url, _ = edge
    start = head("GET /health HTTP/1.1", "Host: edge") + b"Authorization: Bearer "
    with connect(url) as sock:
        # One byte over the limit, and the head not even finished: refused all the same.
        sock.sendall(start + b"a" * (MAX_HEADER_BYTES + 1 - len(start)))
        answer = answer_of(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"content-type: application/problem+json" in answer
    assert b"headers" in answer.split(b"\r\n\r\n", 1)[1]
    # A head just under the limit is served.
    padding = "a" * (MAX_HEADER_BYTES - 1024)
    assert httpx.get(f"{url}/health", headers={"Authorization": padding}).status_code == 200


def test_health_answers_while_a_32_mb_header_is_refused(
    edge: tuple[str, dict[str, str]],
) -> None:
    url, _ = edge
    outcome: dict[str, object] = {}

    def push() -> None:
        with connect(url) as sock:
            sent = 0
            try:
                sock.sendall(head("GET /health HTTP/1.1", "Host: edge") + b"Authorization: ")
                for _ in range(512):  # 32 MB
                    sock.sendall(b"a" * 65536)
                    sent += 65536
            except (BrokenPipeError, ConnectionResetError):
                pass
            outcome["sent"] = sent
            outcome["answer"] = answer_of(sock)

    pusher = threading.Thread(target=push)
    pusher.start()
    try:
        health = [httpx.get(f"{url}/health", timeout=2).status_code for _ in range(3)]
    finally:
        pusher.join(PATIENCE)
    assert health == [200, 200, 200]
    assert not pusher.is_alive()
    # Cut off long before the end (what was sent beyond the limit sat in socket buffers).
    assert isinstance(outcome["sent"], int) and outcome["sent"] < 16 * 2**20
    answer = outcome["answer"]
    assert isinstance(answer, bytes)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")


def test_a_header_block_of_too_many_fields_is_refused(
    edge: tuple[str, dict[str, str]],
) -> None:
    url, _ = edge
    fields = [f"X-Field-{n}: {n}" for n in range(MAX_HEADER_COUNT + 1)]
    with connect(url) as sock:
        sock.sendall(head("GET /health HTTP/1.1", "Host: edge", *fields, ""))
        answer = answer_of(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    few = {f"X-Field-{n}": str(n) for n in range(MAX_HEADER_COUNT // 2)}
    assert httpx.get(f"{url}/health", headers=few).status_code == 200


def test_a_client_trickling_its_headers_is_disconnected(
    edge: tuple[str, dict[str, str]],
) -> None:
    url, _ = edge
    with connect(url) as sock:
        sock.sendall(head("GET /health HTTP/1.1", "Host: edge") + b"X-Slow: ")
        closed, after, answer = closed_while_trickling(sock)
    assert closed, f"still open after {after:.1f} s"
    assert answer == b""  # nothing answered: the request never reached the app
    assert after < TIMEOUT + 3
    assert httpx.get(f"{url}/health").status_code == 200


def test_a_kept_alive_connection_may_idle_between_requests_longer_than_a_head_may_take(
    edge: tuple[str, dict[str, str]],
) -> None:
    """The head's time starts with its first byte: idling is the keep-alive timeout's affair."""
    url, _ = edge
    request = head("GET /health HTTP/1.1", "Host: edge", "")
    with connect(url) as sock:
        sock.sendall(request)
        assert one_answer(sock).startswith(b"HTTP/1.1 200 ")
        sock.settimeout(TIMEOUT + 0.5)
        with pytest.raises(TimeoutError):  # nothing comes, and the connection stays open
            sock.recv(1)
        sock.sendall(request)
        assert one_answer(sock).startswith(b"HTTP/1.1 200 ")


def test_a_client_trickling_its_body_is_disconnected(
    edge: tuple[str, dict[str, str]],
) -> None:
    url, env = edge
    agent = token(env, "agent", "agent-slow")
    with connect(url) as sock:
        sock.sendall(
            head(
                "POST /complaints HTTP/1.1",
                "Host: edge",
                f"Authorization: Bearer {agent}",
                "Content-Type: application/json",
                "Content-Length: 1000",
                "",
            )
            + b'{"channel": "'
        )
        closed, after, answer = closed_while_trickling(sock)
    assert closed, f"still open after {after:.1f} s"
    assert answer == b""
    assert after < TIMEOUT + 3


def test_a_forged_x_forwarded_for_does_not_escape_the_limit_of_an_address(
    edge: tuple[str, dict[str, str]],
) -> None:
    """The peer is 127.0.0.1, which uvicorn's own proxy handling would believe by default."""
    url, _ = edge
    codes = [
        httpx.get(f"{url}/complaints", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(BURST + 1)
    ]
    assert codes[-1] == 429, codes
