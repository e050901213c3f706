"""Load test of `mnist-cnn-serve`: requests per second, p50 and p99 latency, and errors, for 1, 8
and 32 clients at once, as a markdown table.

    python scripts/load_test.py --threads 1 --workers 1
    python scripts/load_test.py --url http://127.0.0.1:8000      # a server already running

By default it starts the server itself (`python -m mnist_cnn.serve --port 0`, the shipped net,
with --threads and --workers as given) and stops it at the end. Each client posts the ten
pictures of docs/digits in turn (multipart, as the drawing page does), waiting for each answer
before sending the next. Each level sends at most --requests requests and runs at most --seconds
seconds, after a short warm-up. Only 127.0.0.1 is ever loaded. The clients share the machine
with the server: on a small machine their CPU time is part of what is measured.

    python scripts/load_test.py --clients 32 --slow-clients 0 16 --seconds 30

runs each level without and beside slow clients, which send their requests a byte every half
second until the server cuts them off (--request-timeout) and then start again.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import os
import re
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from mnist_cnn.machine import cpu_model
from mnist_cnn.serve import start_in_background

REPO = Path(__file__).resolve().parents[1]
DIGITS = sorted((REPO / "docs" / "digits").iterdir())
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def memory_mb(pid: int | None) -> str:
    """The server's resident memory now and at its peak (VmRSS, VmHWM), from /proc."""
    if pid is None:
        return "-"
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "-"
    values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
    return f"{int(values['VmRSS']) / 1024:.0f} / {int(values['VmHWM']) / 1024:.0f}"


def multipart_bodies() -> list[tuple[bytes, dict[str, str]]]:
    """Each picture of docs/digits as a multipart/form-data body and its headers, encoded once:
    the clients' CPU time (they share the machine with the server) goes to sending."""
    bodies = []
    for path in DIGITS:
        field = {"file": (path.name, path.read_bytes(), mimetypes.guess_type(path.name)[0])}
        request = httpx.Request("POST", "http://x/predict", files=field)
        bodies.append((request.read(), {"Content-Type": request.headers["Content-Type"]}))
    return bodies


SLOW_HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"


async def slow_client(url: str, in_body: bool, cut_off: list[int]) -> None:
    """A client that sends its request one byte every half second, as slowloris does: its headers,
    or (in_body) its headers at once and then its body, holding a queue place while it does.
    Each time the server cuts it off it counts one and starts again, until it is cancelled."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    while True:
        reader, writer = await asyncio.open_connection(host, port)
        answer = asyncio.ensure_future(reader.read())  # b"" or the 408, once the server cuts it off
        try:
            if in_body:
                writer.write(SLOW_HEAD)
            for byte in SLOW_HEAD if not in_body else bytes(100_000):
                if answer.done():
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(0.5)
            await answer
        except ConnectionError:
            pass
        finally:
            answer.cancel()
            writer.close()
        cut_off[0] += 1


async def run_level(url: str, clients: int, requests: int, seconds: float, slow: int = 0) -> dict:
    """clients posting at once until requests are sent or seconds have passed, beside slow slow
    clients (half of them slow in their headers, half in their body)."""
    cut_off = [0]
    slow_ones = [asyncio.ensure_future(slow_client(url, n % 2 == 1, cut_off)) for n in range(slow)]
    bodies = multipart_bodies()
    latencies: list[float] = []
    errors = 0
    sent = 0

    async def post(http: httpx.AsyncClient, n: int) -> None:
        nonlocal errors
        body, headers = bodies[n % len(bodies)]
        start = time.perf_counter()
        try:
            response = await http.post("/predict", content=body, headers=headers)
            ok = response.status_code == 200 and "label" in response.json()
        except (httpx.HTTPError, ValueError):  # no answer, or one that is not JSON
            ok = False
        latencies.append(time.perf_counter() - start)
        errors += not ok

    # One client, one connection, as a browser tab would have. (A single httpx client shared by
    # 32 tasks spends more CPU in its connection pool than the server spends answering.)
    # trust_env=False: never through a proxy, whatever the environment says.
    https = [httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) for _ in range(clients)]
    try:
        await asyncio.gather(*(post(http, n) for n, http in enumerate(https)))  # warm-up: connect
        latencies.clear()
        errors = 0
        deadline = time.perf_counter() + seconds

        async def client(http: httpx.AsyncClient) -> None:
            nonlocal sent
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                await post(http, sent)

        start = time.perf_counter()
        await asyncio.gather(*(client(http) for http in https))
        wall = time.perf_counter() - start
    finally:
        await asyncio.gather(*(http.aclose() for http in https))
        for task in slow_ones:
            task.cancel()
        await asyncio.gather(*slow_ones, return_exceptions=True)
    latencies.sort()
    return {
        "clients": clients,
        "slow": slow,
        "cut_off": cut_off[0],
        "requests": len(latencies),
        "per_second": len(latencies) / wall,
        "p50": 1000 * latencies[len(latencies) // 2],
        "p99": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "errors": errors,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", help="a server already running on 127.0.0.1 (default: start one)")
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads (default: 1)")
    p.add_argument("--workers", type=int, default=1, help="the server's --workers (default: 1)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="default: 1 8 32")
    p.add_argument("--requests", type=int, default=1000, help="the most sent per level (default: 1000)")
    p.add_argument("--seconds", type=float, default=15, help="the longest a level runs (default: 15)")
    p.add_argument(
        "--slow-clients",
        type=int,
        nargs="+",
        default=[0],
        help="beside each level, clients that send a byte every half second (default: 0)",
    )
    p.add_argument(
        "--request-timeout", type=float, default=10, help="the server's --request-timeout (default: 10)"
    )
    args = p.parse_args()
    if args.url and urlsplit(args.url).hostname not in LOOPBACK:
        p.error("--url: only a server on this machine (127.0.0.1) is load-tested")

    if args.url:
        server, url = None, args.url
    else:
        flags = ["--workers", str(args.workers), "--request-timeout", str(args.request_timeout)]
        server, url = start_in_background(*flags, threads=args.threads)
    pid = server.pid if server else None
    try:
        rows = []
        for clients in args.clients:
            for slow in args.slow_clients:
                level = asyncio.run(run_level(url, clients, args.requests, args.seconds, slow))
                rows.append({**level, "memory": memory_mb(pid)})
                print(
                    f"{clients} (+{slow} slow) clients: {level['per_second']:.0f} requests/s", file=sys.stderr
                )
    finally:
        if server:
            server.send_signal(signal.SIGINT)  # as Ctrl-C: the server stops cleanly
            server.wait(timeout=30)

    setup = f"--threads {args.threads} --workers {args.workers}" if server else url
    if server and args.slow_clients != [0]:
        setup += f" --request-timeout {args.request_timeout:g}"
    print(f"POST /predict, the ten pictures of docs/digits in turn; server {setup}; {cpu_model()},")
    print(f"{os.cpu_count()} cores, shared by the server and the clients.\n")
    slow_columns = args.slow_clients != [0]
    head = "| clients | " + "slow clients | cut off | " * slow_columns
    print(head + "requests | requests/s | p50 ms | p99 ms | errors | server memory MB (now / peak) |")
    print("|---:" * (7 + 2 * slow_columns) + "|")
    for r in rows:
        slow = f"{r['slow']} | {r['cut_off']} | " * slow_columns
        print(
            f"| {r['clients']} | {slow}{r['requests']} | {r['per_second']:.0f} | {r['p50']:.1f} "
            f"| {r['p99']:.1f} | {r['errors']} | {r['memory']} |"
        )
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
