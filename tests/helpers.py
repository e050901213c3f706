"""What the tests share: synthetic MNIST files, drawn digits, and running the commands.

Fixtures live in conftest.py; everything else a test file needs from another is here.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

# torch and mnist_cnn are imported inside the helpers that use them: conftest.py imports this
# module before it fixes the thread count that torch reads when it is first imported.

REPO = Path(__file__).resolve().parents[1]


RAW_NAMES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# Point urllib at a closed local port, so that no test can download MNIST (fast, offline, the same
# on a machine with a network). Subprocesses inherit it.
NO_NETWORK = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def write_mnist(root: Path, n_train: int = 512, n_test: int = 256, dataset: str = "mnist") -> Path:
    """Synthetic data as dataset's files under root (see mnist_cnn.synthetic)."""
    from mnist_cnn.synthetic import write_synthetic

    return write_synthetic(root, n_train, n_test, dataset)


def render_digit(
    text: str = "7", size: tuple[int, int] = (120, 160), dark_on_light: bool = True, mode: str = "L"
):
    """A digit drawn with Pillow's font, as a user's photo or scan might show it."""
    from PIL import Image, ImageDraw, ImageFont

    paper, pen = (235, 20) if dark_on_light else (10, 240)
    image = Image.new("L", size, paper)
    font = ImageFont.load_default(size=int(min(size) * 0.6))
    ImageDraw.Draw(image).text((size[0] * 0.3, size[1] * 0.15), text, fill=pen, font=font)
    return image.convert(mode, dither=Image.Dither.NONE)  # a scanner's black and white, not dots


def pen_digit(digit: int, width: int = 3, page: int = 400):
    """A digit written with a pen `width` pixels wide on a white page: strokes, as people write."""
    import math

    from PIL import Image, ImageDraw

    def arc(cx, cy, rx, ry, start, stop, n=48):
        angles = (math.radians(start + (stop - start) * i / n) for i in range(n + 1))
        return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]

    def curve(p0, p1, p2, n=30):  # a quadratic Bezier curve
        ts = (i / n for i in range(n + 1))
        return [
            tuple(
                (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t * t * c for a, b, c in zip(p0, p1, p2, strict=True)
            )
            for t in ts
        ]

    strokes = {  # in a unit box, y down
        0: [arc(0.5, 0.5, 0.35, 0.45, -90, 270)],
        1: [[(0.3, 0.22), (0.55, 0.05), (0.55, 0.95)]],
        2: [arc(0.5, 0.3, 0.3, 0.25, 190, 380) + [(0.15, 0.95), (0.88, 0.95)]],
        3: [arc(0.5, 0.27, 0.27, 0.22, -160, 90) + arc(0.5, 0.72, 0.3, 0.23, -90, 160)[1:]],
        4: [[(0.7, 0.95), (0.7, 0.05), (0.1, 0.65), (0.9, 0.65)]],
        5: [[(0.8, 0.05), (0.3, 0.05), (0.25, 0.45)] + arc(0.48, 0.68, 0.32, 0.27, -140, 150)],
        6: [curve((0.75, 0.05), (0.2, 0.2), (0.2, 0.7)) + arc(0.5, 0.7, 0.3, 0.25, 180, 540)],
        7: [[(0.12, 0.05), (0.88, 0.05), (0.4, 0.95)]],
        8: [arc(0.5, 0.27, 0.25, 0.22, 90, 450), arc(0.5, 0.71, 0.3, 0.24, -90, 270)],
        9: [arc(0.5, 0.3, 0.3, 0.25, 0, 360), curve((0.8, 0.3), (0.8, 0.7), (0.65, 0.95))],
    }[digit]
    image = Image.new("L", (page, page), 255)
    draw = ImageDraw.Draw(image)
    box_w, box_h = 0.4 * page, 0.6 * page
    for stroke in strokes:
        points = [(page / 2 + (x - 0.5) * box_w, page / 2 + (y - 0.5) * box_h) for x, y in stroke]
        draw.line(points, fill=0, width=width, joint="curve" if width > 2 else None)
    return image


def run(*args, env_extra=None, cwd=None, module="mnist_cnn.train"):
    """python -m module args, in cwd (by default a fresh folder, so runs/ lands there)."""
    env = {**os.environ, **NO_NETWORK, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or tempfile.mkdtemp(prefix="mnist-cnn-cli-"),
        timeout=120,
    )


def assert_one_line_error(result, *needles):
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


TRAIN = "mnist_cnn.train"


PREDICT = "mnist_cnn.predict"


EVALUATE = "mnist_cnn.evaluate"


EXPORT = "mnist_cnn.export"


def run_main(module: str, args: list[str], capfd) -> subprocess.CompletedProcess:
    """A command's main(argv), as its console script calls it, in this process (a subprocess
    each would take minutes for the whole matrix): its exit status, stdout and stderr. A warning
    that a user would see on the terminal counts as a second line of stderr."""
    main = importlib.import_module(module).main
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            main(args)
            status = 0
        except SystemExit as exit:
            status = exit.code
    out, err = capfd.readouterr()
    shown = [w for w in caught if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    err += "".join(f"{w.category.__name__}: {w.message}\n" for w in shown)
    return subprocess.CompletedProcess([module, *args], status, out, err)


def small_config(mnist_dir, **overrides):
    from mnist_cnn import TrainConfig

    return TrainConfig(**{"data_dir": str(mnist_dir), "batch_size": 32, "lr": 0.05, "epochs": 2, **overrides})


def without_times(history):
    return [{k: v for k, v in m.items() if not k.endswith("_seconds")} for m in history]


class StopAfterFirstEpoch(Exception):
    pass


def stop_after_first_epoch(metrics):
    """An on_epoch that stops a fit after the first epoch it trains (of a resumed run, too)."""
    raise StopAfterFirstEpoch


def ink_of(tensor):
    """A to_mnist tensor (1, 28, 28) back to its ink in [0, 1], (28, 28)."""
    from mnist_cnn.data import MNIST_NORMALIZATION

    mean, std = MNIST_NORMALIZATION
    return (tensor[0] * std + mean).clamp(0, 1)


def start_server(*flags: str) -> tuple[subprocess.Popen, str]:
    """`python -m mnist_cnn.serve --port 0 --threads 1 flags` in a subprocess, and its address."""
    from mnist_cnn.errors import MnistCnnError
    from mnist_cnn.serve import start_in_background

    try:
        return start_in_background(*flags)
    except MnistCnnError as error:
        pytest.fail(str(error))


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    """Until path exists, while process runs (its output, should it end first); at most timeout s."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.02)


def stop_server(server: subprocess.Popen) -> str:
    """Ctrl-C; the server must stop cleanly at once. Its stderr."""
    server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=20)
    assert server.returncode == 0 and "Traceback" not in err, err
    return err


TRAINING = {
    *("mnist_cnn.train", "mnist_cnn.runs", "mnist_cnn.augment", "mnist_cnn.distributed"),
    *("mnist_cnn.losses", "mnist_cnn.optim"),
}


HEAVY = {"torchvision", "matplotlib", "torchsummary", "tqdm"}


def imported_by(module: str) -> set[str]:
    """The top-level packages and mnist_cnn modules that importing module adds to `import torch`."""
    code = (
        "import sys, json; import torch; before = set(sys.modules); "
        f"import {module}; "
        "print(json.dumps(sorted(m for m in set(sys.modules) - before if '.' not in m or m.startswith('mnist_cnn'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))
