"""`mnist-cnn-serve`: a prediction server, with a page to draw digits on.

    mnist-cnn-serve                                  # the shipped improved net, http://127.0.0.1:8000
    mnist-cnn-serve --weights seed --port 8080
    curl -F file=@docs/digits/7.png http://127.0.0.1:8000/predict

GET / is the drawing page, POST /predict reads one image (with ?explain=1, also where the net
found its class), GET /health and GET /model describe the server, /docs the API: the app is
server.py's; this module opens the net, listens, and runs it with uvicorn until Ctrl-C.
"""

import argparse
import contextlib
import ipaddress
import math
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch

from .checkpoint import TrainedModel
from .cli import ArgumentParser, add_net_arguments, command_name, exit_on_error, weights_or_default
from .device import select_device
from .errors import MnistCnnError, moved
from .loading import open_net
from .server import (
    MAX_UPLOAD_MB,
    REQUEST_TIMEOUT,
    create_app,
    deadline_protocol,
    describe_net,
    need_serve_extra,
)
from .weights import get_weights

# The app, where it was before it had a module of its own (server.py).
__getattr__ = moved(
    __name__,
    dict.fromkeys(
        [
            *("STATIC", "MAX_PIXELS", "UPLOAD_FORMATS", "RAW_TYPES", "PAGE_HEADERS", "ClientError"),
            *("BodyTooLarge", "BodyLimit", "send_error", "Predictor", "class_map_numbers", "png_data_url"),
            *("clean_name", "read_upload", "add_error_handlers"),
        ],
        ".server",
    )
    | dict.fromkeys(["PREDICT_BODY", "PREDICT_EXAMPLE", "EXPLAIN_EXAMPLE", "ERROR_RESPONSES"], ".contract"),
)


def open_served_net(
    checkpoint: str | None,
    weights: str | None,
    device: torch.device | str = "cpu",
    dataset: str | None = None,
) -> tuple[TrainedModel, dict[str, Any]]:
    """The net to serve, as predict opens it (the shipped improved net that learnt dataset when
    given neither a checkpoint nor weights), and what GET /model says of it."""
    weights = weights_or_default(checkpoint, weights, dataset, quiet=True)  # the address line names it
    trained = open_net(checkpoint, weights, device, dataset)
    source = str(get_weights(weights)) if weights is not None else str(checkpoint)
    return trained, describe_net(trained, source)


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: a free one), or one clear MnistCnnError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        raise MnistCnnError(f"--host {host}: no such address ({error.strerror})") from None
    except UnicodeError:  # an empty or over-long label: "..", 64 letters between dots
        raise MnistCnnError(f"--host {host}: not a host name or address") from None
    try:
        sock = socket.socket(family, kind, proto)
    except OSError as error:  # an IPv6 address where IPv6 is off
        raise MnistCnnError(f"--host {host}: cannot open a socket for it: {error.strerror}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise MnistCnnError(f"cannot listen on {host} port {port}: {error.strerror}") from None
    return sock


def is_loopback(host: str) -> bool:
    """Whether host (an address) is this machine only: 127.0.0.0/8 or ::1."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def at_least(low: int | float, kind: type = int) -> Callable[[str], Any]:
    """An argparse type: a number of kind, at least low."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' * (kind is int)}number") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        if value == math.inf:
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        return value

    return parse


def port_number(text: str) -> int:
    port = at_least(0)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"must be at most 65535, got {text}")
    return port


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(
        "mnist_cnn.serve",
        description="Serve a trained net over HTTP: a page to draw digits on (GET /), POST /predict, "
        "GET /health, GET /model, and the API's description at /docs.",
    )
    add_net_arguments(p, checkpoint_flag=True)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every network)",
    )
    p.add_argument("--port", type=port_number, default=8000, help="default: 8000; 0 picks a free port")
    p.add_argument(
        "--max-upload-mb",
        type=at_least(0.001, float),
        default=MAX_UPLOAD_MB,
        metavar="MB",
        help=f"the largest request body (default: {MAX_UPLOAD_MB:g})",
    )
    p.add_argument(
        "--request-timeout",
        type=at_least(0.001, float),
        default=REQUEST_TIMEOUT,
        metavar="SECONDS",
        help="the longest a request may take to arrive, headers and body; a slower one is answered "
        "408 and its connection closed (default: %(default)g)",
    )
    p.add_argument(
        "--threads",
        type=at_least(1),
        default=1,
        help="torch's CPU threads (default: 1; one image is too small for more to help)",
    )
    p.add_argument(
        "--workers",
        type=at_least(1),
        default=1,
        help="images read at once, each in its own thread (default: 1; under Python's GIL, more help little)",
    )
    p.add_argument(
        "--queue",
        type=at_least(0),
        default=64,
        help="requests that may wait for a worker; more are answered 503 at once (default: %(default)s)",
    )
    return p.parse_args(argv)


def start_in_background(*flags: str, threads: int = 1) -> tuple[subprocess.Popen, str]:
    """`python -m mnist_cnn.serve --port 0 --threads N flags` in a subprocess (its output piped),
    and its address, read from the line it prints once it listens: for tests and load tests. A
    server that does not start is a MnistCnnError with what it said."""
    command = [sys.executable, "-m", "mnist_cnn.serve", "--port", "0", "--threads", str(threads), *flags]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert server.stdout is not None
    line = server.stdout.readline()  # "...serve: serving NAME at http://HOST:PORT (Ctrl-C stops it)"
    found = re.fullmatch(r".*serve: serving \S+ at (http://\S+) \(Ctrl-C stops it\)\n", line)
    if not found:
        server.kill()
        said = (line + server.communicate(timeout=10)[1]).strip()
        raise MnistCnnError(f"the server did not start: {said or 'it said nothing'}")
    return server, found.group(1)


@exit_on_error
def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the net, print the address, serve until Ctrl-C."""
    args = parse_args(argv)
    need_serve_extra()
    import uvicorn

    torch.set_num_threads(args.threads)
    trained, about = open_served_net(args.checkpoint, args.weights, select_device(args.device), args.dataset)
    app = create_app(
        trained,
        about,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        workers=args.workers,
        queue=args.queue,
    )
    sock = listen(args.host, args.port)
    name = command_name("mnist_cnn.serve")
    if not is_loopback(sock.getsockname()[0]):
        print(
            f"warning: {name} listens on {args.host}, which other machines can reach; it has no "
            "authentication",
            file=sys.stderr,
        )
    print(f"{name}: serving {about['weights']} at {url_of(sock)} (Ctrl-C stops it)", flush=True)
    # uvicorn's own log: warnings and errors only (no line per request); it stops on Ctrl-C or
    # SIGTERM after the requests under way are answered.
    config = uvicorn.Config(
        app,
        http=deadline_protocol(args.request_timeout),
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises Ctrl-C again once it has stopped
        server.run(sockets=[sock])
    print(f"{name}: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    main()
