"""A real server process against clients nobody here wrote: schemathesis's requests, generated from
the API's description and checked against it (scripts/api_contract.py), and slow clients, which
are cut off at --request-timeout without holding a place in the queue."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from .helpers import REPO, start_server, stop_server

pytestmark = pytest.mark.slow


def test_every_answer_to_schemathesis_is_one_the_description_allows():
    pytest.importorskip("schemathesis", reason="schemathesis is not installed: pip install -e '.[test]'")
    run = subprocess.run(
        [sys.executable, "scripts/api_contract.py", "--examples", "200", "--seed", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout
    table = run.stdout[run.stdout.index("| request |") :]
    total = int(table.splitlines()[-1].rsplit("|", 2)[-2])
    assert total >= 200, table  # a few hundred requests
    assert "| POST /predict | " in table and "405" in table.splitlines()[0], table


SECONDS = 1.0  # the servers' --request-timeout here


@pytest.fixture(scope="module")
def server():
    """A server that takes one request at a time and lets none wait (--queue 0)."""
    server, url = start_server("--request-timeout", str(SECONDS), "--queue", "0")
    yield url
    stop_server(server)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def answer_to(sock: socket.socket) -> tuple[bytes, float]:
    """What the server says until it closes the connection, and after how many seconds."""
    start, answer = time.monotonic(), b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer, time.monotonic() - start


def post(url: str) -> bytes:
    with connect(url) as sock:
        body = (REPO / "docs" / "digits" / "7.png").read_bytes()
        head = (
            f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n"
        )
        sock.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
        return answer_to(sock)[0]


HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n"


def trickle(sock: socket.socket, data: bytes, seconds: float) -> None:
    """Send data a byte at a time for about seconds (as slowloris does), or until the server
    closes the connection."""
    for byte in data[: max(1, int(seconds / 0.05))]:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return
        time.sleep(0.05)


@pytest.mark.parametrize(
    "sends",
    ["nothing", "headers a byte at a time", "the body a byte at a time"],
)
def test_a_request_that_does_not_arrive_in_time_is_answered_408_and_closed(server, sends):
    with connect(server) as sock:
        if sends == "headers a byte at a time":
            trickle(sock, HEAD, 3 * SECONDS)
        elif sends == "the body a byte at a time":
            sock.sendall(HEAD)
            trickle(sock, bytes(1000), 3 * SECONDS)
        answer, after = answer_to(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"the request did not arrive within 1 s" in answer
    assert after < 3 * SECONDS + 2
    assert b'"label":"7"' in post(server).replace(b" ", b"")  # and it goes on


def test_a_slow_body_holds_its_queue_place_only_until_the_deadline(server):
    with connect(server) as slow:
        slow.sendall(HEAD + b"\x89")  # holds the only place (--workers 1 --queue 0) while it trickles
        time.sleep(SECONDS / 4)
        assert post(server).split(b"\r\n", 1)[0] == b"HTTP/1.1 503 Service Unavailable"
        assert answer_to(slow)[0].startswith(b"HTTP/1.1 408")
    assert post(server).startswith(b"HTTP/1.1 200")  # the place is free again


def test_a_kept_alive_connection_gets_a_new_deadline_for_each_request(server):
    with connect(server) as sock:
        for _ in range(3):  # each request arrives in time, the three together do not
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200")
            time.sleep(SECONDS * 0.6)
