"""The prediction server's web app: a page to draw digits on, POST /predict, GET /health and
GET /model, and the API's description at /docs. `create_app(trained)` makes it; `mnist-cnn-serve`
(serve.py) runs it.

Built on FastAPI and uvicorn, which are imported only when an app is made: importing this module
costs what predict's does.

How it keeps answering, whatever it is sent:
- a request body over the size limit is refused (413) by its Content-Length before it is read,
  and by counting the bytes of a chunked body as they arrive;
- only common image formats are decoded, and an image with too many pixels is refused before
  its pixels are decoded (a decompression bomb);
- preprocessing and the net run in worker threads, off the event loop; a bounded number of
  requests wait their turn and later ones are told to come back (503), so memory stays flat;
- a request must arrive whole within a deadline (deadline_protocol, which serve.py gives uvicorn):
  a client that trickles its request in, or sends nothing, is answered 408 and cut off;
- every error is JSON, {"error": "one sentence"}, never a traceback; every answer is in the API's
  description (contract.py).
"""

import asyncio
import base64
import contextlib
import importlib.util
import io
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .cam import predicted_class_map
from .checkpoint import TrainedModel
from .data import DATASETS
from .errors import MnistCnnError, first_line, moved
from .inference import notes_on, predict_digits
from .model import count_parameters
from .preprocess import UPLOAD_FORMATS, load_digit, to_pixels

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.requests import Request

# No `from __future__ import annotations` here: FastAPI reads the route functions' annotations at
# run time, and those functions are defined inside create_app, beside the imports they name.

STATIC = Path(__file__).with_name("static")  # the drawing page and /docs: HTML, CSS and JavaScript
MAX_UPLOAD_MB = 5.0
REQUEST_TIMEOUT = 10.0  # seconds for a request to arrive whole, from its connection or last answer
MAX_PIXELS = 25_000_000  # a 24 Mpixel camera's photo fits; more is refused before it is decoded
RAW_TYPES = {"", "application/octet-stream"}  # besides image/*: a body that is the image's bytes

# Scripts, styles and pictures from the server itself only (the page needs no other site), and
# data: URLs for the 28x28 picture /predict sends back.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:",
    "X-Content-Type-Options": "nosniff",
}


# The API's description moved to contract.py, with a model for every answer.
__getattr__ = moved(
    __name__,
    dict.fromkeys(["PREDICT_BODY", "PREDICT_EXAMPLE", "EXPLAIN_EXAMPLE", "ERROR_RESPONSES"], ".contract"),
)


class ClientError(Exception):
    """A request the server will not take: answered with status and {"error": message}."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class BodyTooLarge(Exception):
    """Raised inside BodyLimit's receive() once a body grows past the limit."""


class BodyLimit:
    """ASGI middleware: refuse request bodies over max_bytes with 413, before reading them when
    their Content-Length says so, and by counting the bytes of a chunked one as they arrive
    (the request is then stopped part-way, so no more than max_bytes is ever held)."""

    def __init__(self, app: Callable, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def too_large(self, size: str) -> str:
        return f"the request body is {size} the {self.max_bytes / 2**20:g} MB this server takes at most"

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and not length.isdigit():
            return await send_error(send, 400, "the Content-Length header is not a number")
        if length is not None and int(length) > self.max_bytes:
            return await send_error(send, 413, self.too_large(f"{int(length) / 2**20:.1f} MB, over"))

        received = 0

        async def counting_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge
            return message

        started = False

        async def watching_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:  # too late for an answer of our own
                raise
            await send_error(send, 413, self.too_large("longer than"))


async def send_error(send: Callable, status: int, message: str) -> None:
    """Answer a request from plain ASGI (below FastAPI) with {"error": message}."""
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Predictor:
    """Reads uploaded images with the net in worker threads.

    Decoding, preprocessing and the forward pass take a few milliseconds of CPU each, which on
    the event loop would stall every other connection; so they run in `workers` threads. Up to
    `queue` more requests wait for a thread, each holding at most one upload; any more are turned
    away at once (503), so a crowd of clients cannot grow the server's memory. (Batching several
    images into one forward pass would save little: the net's share of a request is ~10%, the
    rest is decoding and preprocessing, one image at a time.)
    """

    def __init__(self, trained: TrainedModel, workers: int, queue: int, max_pixels: int = MAX_PIXELS) -> None:
        self.trained, self.workers, self.max_pixels = trained, workers, max_pixels
        self.classes = DATASETS[trained.dataset].classes
        self.capacity = workers + queue
        self.admitted = 0  # requests being read, waiting or running; changed on the event loop only
        self.pool: ThreadPoolExecutor | None = None

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a place for one request, or refuse it (503) when all are taken."""
        if self.admitted >= self.capacity:
            raise ClientError(
                503,
                f"the server is busy with {self.admitted} requests; try again in a moment",
                {"Retry-After": "1"},
            )
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def predict(
        self, data: bytes, filename: str | None, top: int, explain: bool = False
    ) -> dict[str, Any]:
        """read() in a worker thread, leaving the event loop free for other requests."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="predict")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, self.read, data, filename, top, explain)

    def read(self, data: bytes, filename: str | None, top: int, explain: bool = False) -> dict[str, Any]:
        """One image's prediction, in the shape `mnist-cnn-predict --json` prints for a file, and
        "image": the 28x28 picture the net saw, as a PNG data URL; with explain, "explain": where
        the net found the predicted class (see class_map_numbers)."""
        name = filename or "the upload"
        picture, image = load_digit(data, self.trained.normalization, name, self.max_pixels, UPLOAD_FORMATS)
        guess = predict_digits(self.trained.model, image[None], top, self.classes)[0]
        answer = {
            "file": filename,
            **guess,
            "notes": notes_on(picture, name),
            "image": png_data_url(to_pixels(image, self.trained.normalization)),
        }
        if explain:
            answer["explain"] = class_map_numbers(self.trained.model, image)
        return answer

    def warm_up(self) -> None:
        """One forward pass, so that the first user does not wait for torch's lazy set-up."""
        predict_digits(self.trained.model, torch.zeros(1, 1, 28, 28), 1, self.classes)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def class_map_numbers(model: torch.nn.Module, image: torch.Tensor) -> dict[str, Any]:
    """What ?explain=1 adds: the predicted class's activation map (explain.predicted_class_map) as
    plain numbers, for a page to lay over the 28x28 image the net saw.

    "class": the predicted class's index; "map": 28 rows of 28, the class map stretched over the
    image; "coarse": the map as the net made it (2x2 for the seed net, 3x3 for the improved net),
    whose mean is the class's score; "scores": every class's score (logit), whose softmax gives
    the probabilities. The maps are in the scores' units: only their differences count.
    """
    found = predicted_class_map(model, image)
    return {
        "class": found.index,
        "map": found.map.tolist(),
        "coarse": found.coarse.tolist(),
        "scores": found.scores.tolist(),
    }


def png_data_url(pixels: np.ndarray) -> str:
    """A uint8 gray array as a data: URL of a PNG, which a page can show as it is."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def clean_name(filename: str | None) -> str | None:
    """An upload's file name, fit to quote in a one-line message: its last part, no control
    characters, at most 100 characters."""
    if not filename:
        return None
    name = re.sub(r"[\x00-\x1f\x7f]", "?", filename.replace("\\", "/").rsplit("/", 1)[-1])
    return name[:100] or None


def describe_net(trained: TrainedModel, source: str) -> dict[str, Any]:
    """What GET /model says: the net's name, where its weights came from, the data set it learnt,
    its parameter count, its test accuracy (when known) and its classes."""
    return {
        "name": trained.name,
        "weights": source,
        "dataset": trained.dataset,
        "parameters": count_parameters(trained.model),
        "test_accuracy": trained.test_accuracy,
        "classes": list(DATASETS[trained.dataset].classes),
    }


def create_app(
    trained: TrainedModel,
    about: dict[str, Any] | None = None,
    max_upload_bytes: int = int(MAX_UPLOAD_MB * 2**20),
    workers: int = 1,
    queue: int = 64,
    max_pixels: int = MAX_PIXELS,
) -> "FastAPI":
    """The web app serving trained: the page, /predict, /health, /model and /docs.

    about: what /model says (by default what trained itself tells); max_upload_bytes: the largest
    request body; workers: images read at once; queue: requests that may wait for a worker."""
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    from .contract import HEALTH_ANSWERS, MODEL_ANSWERS, PREDICT_ANSWERS, PREDICT_BODY

    about = about or describe_net(trained, trained.name)
    predictor = Predictor(trained, workers, queue, max_pixels)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        predictor.warm_up()
        yield
        predictor.stop()

    app = FastAPI(
        title="mnist-cnn",
        summary=f"Reads a handwritten digit with the {about['name']} net ({about['weights']}).",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's /docs and /redoc load their scripts from a CDN; ours ship with us
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    add_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs/swagger-ui", StaticFiles(directory=swagger_ui_files()), name="swagger-ui")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html", headers=PAGE_HEADERS)

    @app.get(
        "/health",
        summary="Whether the server is up, with its net loaded",
        response_model=None,
        responses=HEALTH_ANSWERS,
    )
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/model",
        summary="The net: its name, weights, data set, parameters, test accuracy, classes",
        response_model=None,
        responses=MODEL_ANSWERS,
    )
    async def model() -> dict[str, Any]:
        return about

    @app.post(
        "/predict",
        summary="Read the digit in one image",
        description="Send an image file as multipart/form-data (field `file`), or the image's bytes as "
        "the body (Content-Type image/png, image/jpeg, ...). The answer has the likeliest class, its "
        "probability, the `top` likeliest, and the 28x28 image the net saw (a PNG data URL).\n\n"
        "With `explain=1` it also has `explain`, where the net found the predicted class: `class`, its "
        "index; `map`, its class activation map over the 28x28 image (28 rows of 28 numbers); `coarse`, "
        "the map as the net made it before it was stretched (2x2 for the seed net, 3x3 for the improved "
        "net), whose mean is the class's score; `scores`, every class's score (logit), whose softmax is "
        "the probabilities. The maps are in the scores' units: read them from their lowest value to "
        'their highest.\n\nEvery error is `{"error": "one sentence"}`.',
        openapi_extra={"requestBody": PREDICT_BODY},
        response_model=None,
        responses=PREDICT_ANSWERS,
    )
    async def predict(
        request: Request,
        top: int = Query(
            3, ge=1, le=len(predictor.classes), description="how many likeliest classes to give"
        ),
        explain: bool = Query(
            False, description="also give the predicted class's activation map, as numbers (1 or 0)"
        ),
    ) -> dict[str, Any]:
        with predictor.admit():
            data, filename = await read_upload(request)
            return await predictor.predict(data, filename, top, explain)

    return app


def swagger_ui_files() -> Path:
    """The folder of Swagger UI's script, styles and icon, as the fastapi-swagger package ships
    them: /docs works offline, and a pip upgrade brings Swagger UI's fixes. (FastAPI's own /docs
    loads them from a CDN.)"""
    import importlib.resources

    return Path(str(importlib.resources.files("fastapi_swagger") / "resources"))


def deadline_protocol(seconds: float) -> type:
    """uvicorn's h11 HTTP protocol, with a deadline for each request to arrive whole: its headers
    and body within `seconds` of the connection opening or of the previous answer on it. A
    request that misses it is answered 408 when no answer has started, and its connection is
    closed: a client that trickles its request in a byte at a time, or sends nothing, holds a
    connection, and at most a queue place, for no longer than that. (uvicorn times out only an
    idle kept-alive connection; a reverse proxy in front does the same job, where there is one.)"""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    body = json.dumps({"error": f"the request did not arrive within {seconds:g} s"}).encode()
    answer = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )

    class DeadlineProtocol(H11Protocol):
        deadline: asyncio.TimerHandle | None = None

        def arm(self) -> None:
            if self.deadline is None and self.conn.their_state is not h11.DONE:
                self.deadline = self.loop.call_later(seconds, self.too_slow)

        def disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.arm()

        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is h11.DONE:  # the whole request is in: the app has it
                self.disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()  # the next request's clock starts now
            self.arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self.disarm()
            super().connection_lost(exc)

        def too_slow(self) -> None:
            self.deadline = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
                self.transport.write(answer)
            self.transport.close()  # the app, if it was reading the body, sees the client gone

    return DeadlineProtocol


async def read_upload(request: "Request") -> tuple[bytes, str | None]:
    """The image's bytes and file name (None for a raw body): the form's field "file", or the
    whole body. BodyLimit has capped the bytes read either way."""
    from starlette.datastructures import UploadFile

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        # max_files: one image; the form's files (spooled to disk past 1 MB) are closed after.
        form = await parse_form(request)
        try:
            upload = form.get("file")
            if upload is None:
                raise ClientError(422, "the form has no field 'file': send the image as file=@digit.png")
            if not isinstance(upload, UploadFile):
                raise ClientError(422, "the form's field 'file' holds text, not a file")
            others = len([name for name in form if name != "file"])
            if others:
                raise ClientError(422, f"the form has {others} field(s) besides 'file': send the image alone")
            data, filename = await upload.read(), clean_name(upload.filename)
        finally:
            await form.close()
    elif kind in RAW_TYPES or kind.startswith("image/"):
        data, filename = await request.body(), None
    else:
        raise ClientError(
            415,
            f"a body of type {kind} is not an image: send a form with a field 'file' (curl -F "
            "file=@digit.png) or the image's bytes as image/png, image/jpeg, ...",
        )
    if not data:
        raise ClientError(400, f"{filename or 'the upload'} is empty (0 bytes)")
    return data, filename


async def parse_form(request: "Request") -> Any:
    """The request's multipart form, or a ClientError 400 for a damaged one. (Starlette answers
    400 itself since 0.37; before, python-multipart's own errors reached the app.)"""
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    try:
        return await request.form(max_files=1, max_fields=10)
    except (HTTPException, ClientDisconnect, BodyTooLarge):
        raise
    except Exception as error:  # python-multipart's parse errors, in the Starlette releases that pass them on
        raise ClientError(400, f"invalid multipart form ({first_line(error)})") from None


def add_error_handlers(app: "FastAPI") -> None:
    """Every error as {"error": "one sentence"}: ours, FastAPI's (404, 405, 422), and the
    unexpected, which the client sees without its traceback (uvicorn logs it)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect

    def answer(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def client_error(request: Any, error: Any) -> Any:  # a ClientError
        return answer(error.status, error.message, error.headers)

    async def unreadable(request: Any, error: Any) -> Any:  # an MnistCnnError
        return answer(422, str(error))

    async def http_error(request, error) -> Any:
        where = f"{request.method} {request.url.path}"
        if error.status_code == 404:
            message = f"nothing at {request.url.path}: the API is /predict, /health and /model (see /docs)"
        elif error.status_code == 405:
            message = f"{where} is not allowed; this path takes {(error.headers or {}).get('Allow', 'other methods')}"
        else:
            message = str(error.detail)
        return answer(error.status_code, message, getattr(error, "headers", None))

    async def invalid(request, error) -> Any:
        first = error.errors()[0]  # one sentence: the first problem
        source, *name = first.get("loc", ("request",))
        where = f"{source} parameter {'.'.join(map(str, name))}" if name else str(source)
        return answer(422, f"{where}: {first.get('msg', 'invalid')}")

    async def gone(
        request: Any, error: Any
    ) -> Any:  # ClientDisconnect: no one reads it, keep it out of the log
        return answer(400, "the client went away before it had sent the whole request")

    async def unexpected(request, error: Exception) -> Any:
        return answer(500, "the server failed to answer this request; its log says why")

    app.add_exception_handler(ClientError, client_error)
    app.add_exception_handler(MnistCnnError, unreadable)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(ClientDisconnect, gone)
    app.add_exception_handler(Exception, unexpected)


def need_serve_extra() -> None:
    """Fail with one line when FastAPI, uvicorn or python-multipart is not installed."""
    modules = {
        "fastapi": ["fastapi"],
        "uvicorn": ["uvicorn"],
        "python-multipart": ["python_multipart", "multipart"],
        "fastapi-swagger": ["fastapi_swagger"],
    }
    missing = [name for name, found in modules.items() if not any(map(importlib.util.find_spec, found))]
    if missing:
        raise MnistCnnError(
            f"serving needs the serve extra ({', '.join(missing)} missing): pip install 'mnist-cnn[serve]'"
        )
