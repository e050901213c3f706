"""The prediction server: its API through FastAPI's TestClient, every kind of bad input, its
command line, and one real uvicorn process (address line, size limits on the wire, Ctrl-C)."""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import socket
import subprocess
import sys
import threading
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette 1.x: "Using httpx with starlette.testclient is deprecated"
    from fastapi.testclient import TestClient

from mnist_cnn import contract
from mnist_cnn.checkpoint import save_checkpoint
from mnist_cnn.errors import MnistCnnError
from mnist_cnn.inference import predict_files
from mnist_cnn.preprocess import load_image, to_mnist, to_pixels
from mnist_cnn.serve import is_loopback, main, open_served_net
from mnist_cnn.server import ClientError, Predictor, create_app
from mnist_cnn.weights import ImprovedNetWeights
from mnist_cnn.weights_file import net_metadata, weights_bytes

from .helpers import (
    HEAVY,
    REPO,
    TRAINING,
    assert_one_line_error,
    pen_digit,
    run_main,
    start_server,
    stop_server,
)

LIMIT = 300_000  # the test app's largest body, in bytes: small, so the tests send little


@pytest.fixture(scope="module")
def served():
    """The shipped net as the server opens it, and what /model says of it."""
    return open_served_net(None, None)


@pytest.fixture(scope="module")
def client(served):
    with TestClient(create_app(*served, max_upload_bytes=LIMIT)) as client:
        yield client


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def drawing(digit: int) -> Image.Image:
    """A digit as the page sends it: white strokes on a transparent canvas (the ink is the alpha)."""
    ink = 255 - np.asarray(pen_digit(digit, width=14, page=280))
    return Image.fromarray(np.dstack([np.full((280, 280, 3), 255, np.uint8), ink]), "RGBA")


def upload(client, data: bytes, name: str = "digit.png", **params):
    return client.post("/predict", files={"file": (name, data, "image/png")}, params=params)


# --- Predictions -------------------------------------------------------------------------------


@pytest.mark.parametrize("digit", range(10))
def test_pen_digits_are_read(client, digit):
    response = upload(client, png(pen_digit(digit, width=8)))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["digit"] == digit and answer["label"] == str(digit) and answer["probability"] > 0.5
    assert [t["digit"] for t in answer["top"]][0] == digit and len(answer["top"]) == 3


@pytest.mark.parametrize("digit", [1, 4, 7])
def test_a_drawing_on_a_transparent_canvas_is_read(client, digit):
    answer = upload(client, png(drawing(digit)), "drawing.png").json()
    assert answer["label"] == str(digit), answer


def test_the_answer_has_predicts_json_shape_and_the_same_numbers(client, tmp_path):
    path = tmp_path / "three.png"
    pen_digit(3, width=6).save(path)
    results, errors = predict_files(ImprovedNetWeights.DEFAULT.load().model, [path])
    response = upload(client, path.read_bytes(), "three.png")
    assert_documented(response)
    answer = response.json()
    expected = {**results[0], "file": "three.png"}
    assert not errors and answer.pop("image").startswith("data:image/png")
    assert answer == expected  # the same preprocessing and net, so the same numbers


def test_the_answer_carries_the_28x28_image_the_net_saw(client):
    data = png(pen_digit(5, width=10))
    url = upload(client, data).json()["image"]
    assert url.startswith("data:image/png;base64,")
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    assert seen.shape == (28, 28) and seen.dtype == np.uint8
    assert np.array_equal(seen, to_pixels(to_mnist(load_image(data))))
    assert seen[0].max() == 0 and seen.max() == 255  # light ink on black, at full strength


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream", None])
def test_the_raw_image_bytes_are_a_body_too(client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/predict", content=png(pen_digit(2, width=8)), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "2" and response.json()["file"] is None


def test_top_gives_every_class_for_the_bars(client):
    answer = upload(client, png(pen_digit(9, width=8)), top=10).json()
    assert sorted(t["digit"] for t in answer["top"]) == list(range(10))
    assert sum(t["probability"] for t in answer["top"]) == pytest.approx(1, abs=1e-4)


def test_an_animated_gif_says_which_frame_it_read(client):
    frames = [pen_digit(d, width=8) for d in (4, 1)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    answer = upload(client, buffer.getvalue(), "anim.gif").json()
    assert answer["label"] == "4" and answer["notes"] == ["anim.gif has 2 frames; read the first"]


# --- Where the net looked: ?explain=1 ----------------------------------------------------------


@pytest.fixture(scope="module")
def seed_client():
    """A server of the seed net, whose class maps are 2x2 (the improved net's are 3x3)."""
    with TestClient(create_app(*open_served_net(None, "seed"))) as client:
        yield client


@pytest.mark.parametrize(("net", "side"), [("improved", 3), ("seed", 2)])
@pytest.mark.parametrize("digit", [1, 4, 7])
def test_explain_gives_the_predicted_class_map_as_numbers(request, net, side, digit):
    """The map of the class the answer names: 28x28 over the image the net saw, and as the net made
    it (coarse), whose mean is the class's score; softmax of the scores gives the probabilities."""
    client = request.getfixturevalue("client" if net == "improved" else "seed_client")
    answer = upload(client, png(drawing(digit)), "drawing.png", explain=1, top=10).json()
    found = answer.pop("explain")
    assert set(found) == {"class", "map", "coarse", "scores"}
    assert found["class"] == answer["digit"] and answer["label"] == str(digit)
    heat, coarse, scores = (torch.tensor(found[key]) for key in ("map", "coarse", "scores"))
    assert heat.shape == (28, 28) and coarse.shape == (side, side) and scores.shape == (10,)
    assert float(coarse.mean()) == pytest.approx(float(scores[digit]), abs=1e-4)
    assert int(scores.argmax()) == digit
    probabilities = {t["digit"]: t["probability"] for t in answer["top"]}
    for k, p in enumerate(scores.softmax(0).tolist()):
        assert p == pytest.approx(probabilities[k], abs=1e-5)
    # Stretched bilinearly, the map stays within the coarse map's own range.
    assert float(coarse.min()) - 1e-4 <= float(heat.min()) <= float(heat.max()) <= float(coarse.max()) + 1e-4


def test_explain_adds_the_maps_and_changes_nothing_else(client):
    data = png(pen_digit(5, width=8))
    plain = upload(client, data).json()
    assert "explain" not in plain and "explain" not in upload(client, data, explain=0).json()
    response = upload(client, data, explain="true")
    assert_documented(response)
    explained = response.json()
    assert explained.pop("explain")["class"] == 5 and explained == plain


@pytest.mark.parametrize("value", ["banana", "2", ""])
def test_a_bad_explain_is_a_one_sentence_422(client, value):
    assert_one_sentence_error(upload(client, WHOLE, explain=value), 422, "query parameter explain")


def test_the_docs_describe_explain(client):
    predict = client.get("/openapi.json").json()["paths"]["/predict"]["post"]
    (explain,) = [p for p in predict["parameters"] if p["name"] == "explain"]
    assert explain["in"] == "query" and explain["schema"]["type"] == "boolean"
    assert "`coarse`" in predict["description"] and "`scores`" in predict["description"]
    examples = predict["responses"]["200"]["content"]["application/json"]["examples"]
    assert set(examples["explain"]["value"]["explain"]) == {"class", "map", "coarse", "scores"}


# --- Bad input ---------------------------------------------------------------------------------


def bomb() -> bytes:
    """A 6000x6000 PNG of a few kilobytes: 36 Mpixel, over the server's 25."""
    return png(Image.new("1", (6000, 6000)))


def huge_header_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, and whose pixel data is missing."""
    header = (width).to_bytes(4, "big") + (height).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    chunk = b"IHDR" + header
    ihdr = len(header).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")
    iend = b"\x00\x00\x00\x00IEND" + zlib.crc32(b"IEND").to_bytes(4, "big")
    return b"\x89PNG\r\n\x1a\n" + ihdr + iend


WHOLE = png(pen_digit(6, width=8))
BAD_UPLOADS = {
    # name: (how to send it, the status, words the error must hold)
    "not an image": ({"files": {"file": ("notes.png", b"dear diary")}}, 422, "not an image"),
    "empty file": ({"files": {"file": ("empty.png", b"")}}, 400, "empty"),
    "empty body": ({"content": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty"),
    "truncated": ({"files": {"file": ("cut.png", WHOLE[: len(WHOLE) // 2])}}, 422, "truncated"),
    "decompression bomb": ({"files": {"file": ("bomb.png", bomb())}}, 422, "decompression bomb"),
    "blank canvas": ({"files": {"file": ("blank.png", png(Image.new("RGBA", (280, 280))))}}, 422, "blank"),
    "blank paper": ({"files": {"file": ("white.png", png(Image.new("L", (280, 280), 255)))}}, 422, "blank"),
    "JSON": ({"json": {"image": "7"}}, 415, "application/json is not an image"),
    "text": ({"content": b"seven", "headers": {"Content-Type": "text/plain"}}, 415, "not an image"),
    "url-encoded form": ({"data": {"file": "7"}}, 415, "curl -F file=@digit.png"),
    "no field file": ({"files": {"image": ("d.png", WHOLE)}}, 422, "no field 'file'"),
    "text in field file": ({"data": {"file": "7"}, "files": {"x": ("d.png", WHOLE)}}, 422, "holds text"),
    "another field": ({"data": {"note": "7"}, "files": {"file": ("d.png", WHOLE)}}, 422, "besides 'file'"),
    "two files": ({"files": [("file", ("a.png", WHOLE)), ("file", ("b.png", WHOLE))]}, 400, "files"),
    "broken form": ({"content": b"garbage", "headers": {"Content-Type": "multipart/form-data; boundary=x"}}, 400, "invalid multipart"),
    "form without boundary": ({"content": b"x", "headers": {"Content-Type": "multipart/form-data"}}, 400, "boundary"),
    "over the limit": ({"files": {"file": ("big.png", b"\x89PNG" + bytes(LIMIT))}}, 413, "at most"),
    "huge JSON": ({"content": b"[" + b"1," * LIMIT + b"1]", "headers": {"Content-Type": "application/json"}}, 413, "MB"),
    "chunked over the limit": ({"content": iter([bytes(100_000)] * 4), "headers": {"Content-Type": "image/png"}}, 413, "longer than"),
}  # fmt: skip


def assert_one_sentence_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"] and "Traceback" not in body["error"]
    for word in words:
        assert word.lower() in body["error"].lower(), body["error"]
    assert_documented(response)


@functools.cache
def api_description() -> dict:
    return create_app(*open_served_net(None, None)).openapi()


def assert_documented(response) -> None:
    """The answer's status is in the API's description for its operation, with the body's model
    (only an unknown path, which no description can list, is left out)."""
    spec = api_description()
    operation = spec["paths"].get(response.request.url.path, {})
    if not operation:
        assert response.status_code == 404
        return
    method = response.request.method.lower()
    answers = operation.get(method, next(iter(operation.values()))).get("responses", {})
    assert str(response.status_code) in answers, (response.status_code, sorted(answers))
    schema = answers[str(response.status_code)]["content"]["application/json"]["schema"]["$ref"]
    model = getattr(contract, schema.rsplit("/", 1)[-1])
    model.model_validate(response.json())


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_input_is_a_4xx_with_one_sentence_and_the_server_goes_on(client, case):
    request, status, words = BAD_UPLOADS[case]
    assert_one_sentence_error(client.post("/predict", **request), status, words)
    assert upload(client, WHOLE).json()["label"] == "6"


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("GET", "/nowhere", 404, "nothing at /nowhere"),
        ("GET", "/predict", 405, "takes POST"),
        ("DELETE", "/health", 405, "not allowed"),
        ("POST", "/predict?top=many", 422, "query parameter top"),
        ("POST", "/predict?top=11", 422, "less than or equal to 10"),
        ("POST", "/predict?top=0", 422, "greater than or equal to 1"),
    ],
)
def test_fastapis_own_errors_are_one_sentence_too(client, method, path, status, words):
    assert_one_sentence_error(client.request(method, path, content=WHOLE), status, words)


def test_too_many_pixels_are_refused_before_decoding():
    # 8000x8000 is under Pillow's own limit, and the pixel data is missing: only a check of the
    # header's size says "too many pixels", as decoding would find the file truncated.
    with pytest.raises(MnistCnnError, match=r"upload.png: 8000x8000 is too many pixels"):
        load_image(huge_header_png(8000, 8000), "upload.png", max_pixels=25_000_000)
    with pytest.raises(MnistCnnError, match="truncated or corrupt"):
        load_image(huge_header_png(800, 800), "upload.png", max_pixels=25_000_000)


def test_only_common_image_formats_are_decoded(client):
    buffer = io.BytesIO()
    pen_digit(1, width=8).save(buffer, "PCX")  # Pillow reads it, but the server does not try
    assert_one_sentence_error(upload(client, buffer.getvalue(), "one.pcx"), 422, "PNG, JPEG")


def test_a_crowd_beyond_workers_and_queue_is_told_to_come_back(served, monkeypatch):
    """One worker and no queue: while a request is being read, the next is answered 503 at once."""
    reading, release = threading.Event(), threading.Event()
    read = Predictor.read

    def slow_read(self, *args):
        reading.set()
        release.wait(10)
        return read(self, *args)

    monkeypatch.setattr(Predictor, "read", slow_read)
    with TestClient(create_app(*served, workers=1, queue=0)) as client:
        first = {}
        thread = threading.Thread(target=lambda: first.update(response=upload(client, WHOLE)))
        thread.start()
        assert reading.wait(10)
        busy = upload(client, WHOLE)
        release.set()
        thread.join(10)
    assert_one_sentence_error(busy, 503, "busy")
    assert busy.headers["retry-after"] == "1"
    assert first["response"].status_code == 200


def test_an_unexpected_failure_is_a_500_without_its_traceback(served, monkeypatch):
    def broken(self, *args):
        raise RuntimeError("a bug\nTraceback (most recent call last): ...")

    monkeypatch.setattr(Predictor, "read", broken)
    with TestClient(create_app(*served), raise_server_exceptions=False) as client:
        assert_one_sentence_error(upload(client, WHOLE), 500, "its log says why")
        assert client.get("/health").json() == {"status": "ok"}


def test_admission_holds_workers_plus_queue_places(served):
    predictor = Predictor(served[0], workers=1, queue=1)
    with predictor.admit(), predictor.admit(), pytest.raises(ClientError) as refused, predictor.admit():
        pass
    assert refused.value.status == 503 and predictor.admitted == 0


# --- The other routes --------------------------------------------------------------------------


def test_health_and_model(client):
    for path in ("/health", "/model"):
        assert_documented(client.get(path))
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/model").json() == {
        "name": "improved",
        "weights": "ImprovedNetWeights.MNIST_V2",
        "dataset": "mnist",
        "parameters": 8880,
        "test_accuracy": 0.9958,
        "classes": list("0123456789"),
    }


def test_model_describes_every_kind_of_net(tmp_path):
    seed = open_served_net(None, "seed")[1]
    assert (seed["name"], seed["parameters"], seed["test_accuracy"]) == ("seed", 9032, 0.9932)
    fashion = open_served_net(None, "improved:FASHION_MNIST_V1")[1]
    assert fashion["dataset"] == "fashion-mnist" and fashion["classes"][0] == "T-shirt/top"

    trained = ImprovedNetWeights.DEFAULT.load()
    exported = tmp_path / "net.safetensors"
    exported.write_bytes(weights_bytes(trained.model, net_metadata(trained)))
    about = open_served_net(str(exported), None)[1]
    assert about["weights"] == str(exported) and about["test_accuracy"] is None

    checkpoint = tmp_path / "best.pt"  # what training saves, made without training
    save_checkpoint(
        checkpoint,
        {
            "model": "improved",
            "model_state": trained.model.state_dict(),
            "dataset": "mnist",
            "normalization": trained.normalization,
            "history": [{"test_accuracy": 0.97}, {"test_accuracy": 0.98}],
        },
    )
    assert open_served_net(str(checkpoint), None)[1]["test_accuracy"] == 0.98


def test_the_page_and_its_files_ship_in_the_package_and_need_no_other_site(client):
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in (REPO / "mnist_cnn" / "static").iterdir():
        text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not a load
        assert not re.search(r"https?://|//cdn", text), f"{path.name} loads from another site"


def test_docs_describe_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/model"} <= set(spec["paths"])
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/*" in body
    answers = spec["paths"]["/predict"]["post"]["responses"]
    assert answers["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Prediction")
    assert answers["503"]["headers"]["Retry-After"]
    for status in ("400", "408", "413", "415", "422", "503"):
        assert answers[status]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_the_docs_page_and_swagger_ui_come_from_the_server_itself(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-security-policy"].startswith(
        "default-src 'self'"
    )
    assert "//" not in re.sub(r"<!--.*?-->", "", page.text, flags=re.S)  # no other site's address
    for asset in re.findall(r'(?:href|src)="([^"]+)"', page.text):
        assert client.get("/" + asset).status_code == 200, asset


@pytest.mark.slow
def test_serving_imports_no_training_machinery():
    code = (
        "import sys, json; import torch; before = set(sys.modules); "
        "from mnist_cnn.serve import create_app, open_served_net; create_app(*open_served_net(None, None)); "
        "print(json.dumps(sorted(m for m in set(sys.modules) - before if '.' not in m or m.startswith('mnist_cnn'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    added = set(json.loads(result.stdout))
    assert "fastapi" in added and "mnist_cnn.serve" in added
    assert not added & (TRAINING | HEAVY), sorted(added & (TRAINING | HEAVY))


# --- The command line --------------------------------------------------------------------------


def one_line_error(capfd, argv: list[str]) -> str:
    """main(argv), as the console script runs it, must exit with status 2 and one line on stderr,
    no traceback (see assert_one_line_error); the line. main sets torch's thread count: put back."""
    threads = torch.get_num_threads()
    try:
        result = run_main("mnist_cnn.serve", argv, capfd)
    finally:
        torch.set_num_threads(threads)
    assert_one_line_error(result)
    return result.stderr.strip()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--port", "70000"], "--port: must be at most 65535"),
        (["--port", "eighty"], "'eighty' is not a whole number"),
        (["--max-upload-mb", "lots"], "'lots' is not a number"),
        (["--threads", "0"], "--threads: must be at least 1"),
        (["--workers", "0"], "--workers: must be at least 1"),
        (["--queue", "-1"], "--queue: must be at least 0"),
        (["--max-upload-mb", "0"], "--max-upload-mb: must be at least"),
        (["--max-upload-mb", "nan"], "--max-upload-mb: must be at least"),
        (["--max-upload-mb", "inf"], "--max-upload-mb: must be a finite number"),
        (["--weights", "seed", "--checkpoint", "best.pt"], "not allowed with argument"),
        (["--weights", "nope"], "--weights 'nope': no such weights"),
        (["--checkpoint", "missing.pt"], "missing.pt does not exist"),
        (["--device", "tpu"], "--device 'tpu' is not a device"),
        (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: no such address"),
        (["--host", ".."], "--host ..: not a host name or address"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags_are_one_line_errors(capfd, argv, words):
    assert words in one_line_error(capfd, argv)


def test_a_port_in_use_is_one_line_error(capfd):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert f"cannot listen on 127.0.0.1 port {port}" in one_line_error(capfd, ["--port", str(port)])


def test_another_address_than_loopback_is_served_with_a_warning(capsys, monkeypatch):
    """--host 0.0.0.0: one warning line on stderr, the address on stdout (nothing really listens:
    the socket and uvicorn's run are stand-ins)."""
    import uvicorn

    class Listening:
        def getsockname(self):
            return ("0.0.0.0", 8000)

    monkeypatch.setattr("mnist_cnn.serve.listen", lambda host, port: Listening())
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: None)
    threads = torch.get_num_threads()
    try:
        assert main(["--host", "0.0.0.0", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    assert out.endswith(": serving ImprovedNetWeights.MNIST_V2 at http://0.0.0.0:8000 (Ctrl-C stops it)\n")
    assert len(out.splitlines()) == 1
    warning, stopped = err.splitlines()
    assert warning.startswith("warning: ") and "0.0.0.0, which other machines can reach" in warning
    assert stopped.endswith(": stopped")


def test_only_loopback_counts_as_this_machine():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.20", "localhost"]))


# --- A real server -----------------------------------------------------------------------------


def raw_request(url: str, head: bytes, body_chunks: list[bytes] = ()) -> bytes:
    """Send head (and body chunks) on a plain socket; what the server answers, until it closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:  # the server answered and closed while the body was still coming
            pass
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b'"}' in answer:
                break
        return answer


@pytest.mark.slow
def test_a_real_server_limits_bodies_on_the_wire_and_stops_cleanly_on_ctrl_c():
    import httpx

    server, url = start_server("--max-upload-mb", "1")
    http = httpx.Client(base_url=url, trust_env=False)  # no proxy: the tests' no_network sets one
    try:
        assert http.get("/health").json() == {"status": "ok"}
        answer = http.post("/predict", files={"file": ("six.png", WHOLE)}).json()
        assert answer["label"] == "6"
        # A Content-Length of 1 GB: refused from the headers, without waiting for a byte of body.
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n"
        assert raw_request(url, head).startswith(b"HTTP/1.1 413")
        # A chunked body: refused once 1 MB has arrived, though it never says how long it is.
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunk = b"10000\r\n" + bytes(0x10000) + b"\r\n"  # 64 KiB
        answer = raw_request(url, head, [chunk] * 40)
        assert answer.startswith(b"HTTP/1.1 413") and b"longer than the 1 MB" in answer
        assert http.get("/health").json() == {"status": "ok"}  # and it goes on
    finally:
        http.close()
        err = stop_server(server)
    assert err.strip().endswith("serve: stopped")
