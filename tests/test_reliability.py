"""Reliability: every bad input is one clear line and exit status 2, through the real command
lines; signals and SIGKILL during training lose nothing; a diverging run stops and says why."""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image

from mnist_cnn import MnistCnnError, TrainConfig, build_model, fit, load_checkpoint
from mnist_cnn import train as train_module
from mnist_cnn.runs import resume_config

from .helpers import (
    EVALUATE,
    EXPORT,
    NO_NETWORK,
    PREDICT,
    TRAIN,
    assert_one_line_error,
    render_digit,
    run,
    run_main,
    wait_for,
    write_mnist,
)

# ---------------------------------------------------------------------------------------------
# The bad-input matrix. Each case makes its bad input in a folder and returns the command's
# arguments; the command must fail with one line naming `needle` and exit status 2.


class Evil:
    """A pickle that, if it were ever unpickled as code, would create the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def damaged_data(tmp: Path, mnist_dir: Path, name: str, damage) -> Path:
    root = tmp / "data"
    shutil.copytree(mnist_dir, root)
    path = root / "MNIST" / "raw" / name
    path.write_bytes(damage(path.read_bytes()))
    return root


def huge_png(path: Path, side: int = 30_000) -> Path:
    """A tiny PNG file whose header claims side x side pixels: a decompression bomb."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", side, side)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    path.write_bytes(bytes(data))
    return path


def data_case(damage_name, damage, needle):
    return lambda tmp, d, ckpt: (
        ["--dry-run", "--data-dir", str(damaged_data(tmp, d, damage_name, damage))],
        needle,
    )


def bad_checkpoint(tmp: Path, content) -> str:
    path = tmp / "model.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return str(path)


def exported(path: Path, fmt: str) -> str:
    """A net exported as mnist_cnn.export writes it (an ONNX file need not end in .onnx)."""
    net, example = build_model().eval(), torch.zeros(1, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            torch.onnx.export(net, (example,), str(path), dynamo=False)
        else:
            torch.jit.save(torch.jit.trace(net, example), str(path))
    return str(path)


def truncated_checkpoint(tmp: Path, checkpoint: Path) -> str:
    data = checkpoint.read_bytes()
    return bad_checkpoint(tmp, data[: len(data) // 2])


def with_digit(tmp: Path) -> str:
    render_digit("4").save(tmp / "digit.png")
    return str(tmp / "digit.png")


CHECKPOINT_CASES = {
    "empty": lambda tmp, ckpt: bad_checkpoint(tmp, b""),
    "random bytes": lambda tmp, ckpt: bad_checkpoint(tmp, random.Random(0).randbytes(4096)),
    "truncated": truncated_checkpoint,
    "an image": lambda tmp, ckpt: bad_checkpoint(tmp, (tmp / "x.png").read_bytes()),
    "other architecture": lambda tmp, ckpt: bad_checkpoint(
        tmp, {"model": "seed", "model_state": build_model("improved").state_dict()}
    ),
    "unknown model": lambda tmp, ckpt: bad_checkpoint(tmp, {"model": "resnet", "model_state": {}}),
    "not a checkpoint": lambda tmp, ckpt: bad_checkpoint(tmp, {"weights": torch.zeros(3)}),
    "code in a pickle": lambda tmp, ckpt: bad_checkpoint(tmp, pickle.dumps(Evil(tmp / "pwned"))),
    "a TorchScript export": lambda tmp, ckpt: exported(tmp / "net.pt", "torchscript"),
    "an ONNX export": lambda tmp, ckpt: exported(tmp / "net.bin", "onnx"),
    "a folder": lambda tmp, ckpt: str(tmp),
    "missing": lambda tmp, ckpt: str(tmp / "nope.pt"),
}
CHECKPOINT_NEEDLES = {
    "other architecture": "does not fit",
    "unknown model": "unknown model",
    "not a checkpoint": "not an mnist-cnn checkpoint",
    "missing": "does not exist",
    "a folder": "is a folder",
    "a TorchScript export": "exported to TorchScript",
    "an ONNX export": "exported to ONNX",
}

CASES = {
    # training data
    "data: truncated images": (TRAIN, data_case("train-images-idx3-ubyte", lambda b: b[:5000], "truncated")),
    "data: wrong magic number": (
        TRAIN,
        data_case("t10k-labels-idx1-ubyte", lambda b: b"\0\0\x08\x03" + b[4:], "wrong magic number"),
    ),
    "data: counts disagree": (
        TRAIN,
        data_case(
            "train-labels-idx1-ubyte", lambda b: struct.pack(">II", 2049, 100) + b[8:108], "100 labels"
        ),
    ),
    "data: missing, no network": (
        TRAIN,
        lambda tmp, d, c: (["--data-dir", str(tmp / "none")], "t10k-images"),
    ),
    "data: folder is a file": (
        TRAIN,
        lambda tmp, d, c: (["--data-dir", str(tmp / "x.png")], "is a file, not a folder"),
    ),
    "data: --data-dir is MNIST/raw itself": (
        TRAIN,
        lambda tmp, d, c: (
            ["--dry-run", "--data-dir", str(shutil.copytree(d, tmp / "data") / "MNIST" / "raw")],
            "point --data-dir at the folder that holds MNIST/raw",
        ),
    ),
    "data: the files right in --data-dir": (
        TRAIN,
        lambda tmp, d, c: (
            ["--dry-run", "--data-dir", str(shutil.copytree(d / "MNIST" / "raw", tmp / "flat"))],
            "move them into",
        ),
    ),
    "data: folder cannot be made": (
        TRAIN,
        lambda tmp, d, c: (["--data-dir", str(tmp / "x.png" / "sub")], "could not be downloaded"),
    ),
    # the output folder, checked before any training
    "output: --output-dir is a file": (
        TRAIN,
        lambda tmp, d, c: (["--data-dir", str(d), "--output-dir", str(tmp / "x.png")], "is a file"),
    ),
    "output: --output-dir holds another run": (
        TRAIN,
        lambda tmp, d, c: (
            ["--data-dir", str(d), "--output-dir", earlier_run(tmp / "earlier")],
            "holds another run",
        ),
    ),
    # flags
    **{
        f"flag: {' '.join(flags)}": (
            TRAIN,
            lambda tmp, d, c, flags=flags, needle=needle: ([*flags, "--data-dir", str(d)], needle),
        )
        for flags, needle in [
            (["--epochs", "0"], "--epochs"),
            (["--epochs", "two"], "--epochs"),
            (["--batch-size", "0"], "--batch-size"),
            (["--test-batch-size", "-5"], "--test-batch-size"),
            (["--lr", "0"], "--lr"),
            (["--lr", "-1"], "--lr"),
            (["--lr", "nan"], "--lr"),
            (["--momentum", "1.5"], "--momentum"),
            (["--threads", "0"], "--threads"),
            (["--model", "resnet"], "--model"),
            (["--device", "toaster"], "--device"),
            (["--device", "cuda:7"], "--device"),
            (["--precision", "fp8"], "--precision"),
            (["--teacher", "nowhere.pt"], "--teacher: checkpoint nowhere.pt does not exist"),
            (["--distill", "2"], "--distill"),
            (["--temperature", "0"], "--temperature"),
            (["--frobnicate"], "--frobnicate"),
        ]
    },
    # images given to predict
    "image: empty file": (PREDICT, lambda tmp, d, c: ([str(c), bad_file(tmp / "e.png", b"")], "e.png")),
    "image: not an image": (
        PREDICT,
        lambda tmp, d, c: ([str(c), bad_file(tmp / "t.png", b"hello")], "t.png"),
    ),
    "image: truncated": (
        PREDICT,
        lambda tmp, d, c: ([str(c), bad_file(tmp / "cut.png", (tmp / "x.png").read_bytes()[:60])], "cut.png"),
    ),
    "image: decompression bomb": (
        PREDICT,
        lambda tmp, d, c: ([str(c), str(huge_png(tmp / "bomb.png"))], "decompression bomb"),
    ),
    "image: blank": (
        PREDICT,
        lambda tmp, d, c: ([str(c), save(Image.new("L", (40, 40), 255), tmp / "blank.png")], "blank"),
    ),
    "image: fully transparent": (
        PREDICT,
        lambda tmp, d, c: (
            [str(c), save(Image.new("RGBA", (40, 40), (0, 0, 0, 0)), tmp / "clear.png")],
            "blank",
        ),
    ),
    "image: missing": (PREDICT, lambda tmp, d, c: ([str(c), str(tmp / "nope.png")], "no such file")),
    "image: folder without images": (
        PREDICT,
        lambda tmp, d, c: ([str(c), mkdir(tmp / "empty")], "no image files"),
    ),
    # checkpoints, through each command that reads one
    **{
        f"checkpoint ({module.split('.')[1]}): {kind}": (
            module,
            lambda tmp, d, c, kind=kind, module=module: (
                checkpoint_args(module, CHECKPOINT_CASES[kind](tmp, c), tmp, d),
                CHECKPOINT_NEEDLES.get(kind, "not a readable checkpoint"),
            ),
        )
        for kind in CHECKPOINT_CASES
        for module in (PREDICT, EVALUATE, EXPORT)
        # predict reads a folder given first as a folder of images (with the shipped weights)
        if (
            kind != "a folder"
            if module == PREDICT
            else kind
            in (
                "random bytes",
                "truncated",
                "other architecture",
                "code in a pickle",
                "an ONNX export",
                "a folder",
            )
        )
    },
    "resume: a model but not a run": (
        TRAIN,
        lambda tmp, d, c: (
            ["--resume", bad_checkpoint(tmp, {"model": "seed", "model_state": build_model().state_dict()})],
            "not a resumable run",
        ),
    ),
}


def bad_file(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def save(image: Image.Image, path: Path) -> str:
    image.save(path)
    return str(path)


def earlier_run(folder: Path) -> str:
    """A folder that holds the metrics of a run made before run.json existed."""
    folder.mkdir()
    (folder / "metrics.json").write_text("[]")
    return str(folder)


def mkdir(path: Path) -> str:
    path.mkdir()
    return str(path)


def checkpoint_args(module: str, checkpoint: str, tmp: Path, data_dir: Path) -> list[str]:
    if module == PREDICT:
        return [checkpoint, with_digit(tmp)]
    if module == EVALUATE:
        return [checkpoint, "--data-dir", str(data_dir), "--device", "cpu"]
    return [checkpoint, "--format", "onnx", "--output", str(tmp / "out.onnx")]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_status_2(case, mnist_dir, checkpoint, tmp_path, capfd):
    module, make = CASES[case]
    render_digit("5").save(tmp_path / "x.png")  # a good image, for cases that damage one
    args, needle = make(tmp_path, mnist_dir, checkpoint)
    assert_one_line_error(run_main(module, args, capfd), needle)
    assert not (tmp_path / "pwned").exists()  # no pickle ran code


@pytest.mark.slow
def test_the_command_lines_give_the_same_one_line_in_a_subprocess(checkpoint, tmp_path):
    """The matrix above runs in-process; these few check the same from a real shell command."""
    render_digit("5").save(tmp_path / "x.png")
    assert_one_line_error(run(str(checkpoint), bad_file(tmp_path / "e.png", b""), module=PREDICT), "e.png")
    bad = bad_checkpoint(tmp_path, pickle.dumps(Evil(tmp_path / "pwned")))
    assert_one_line_error(run(bad, str(tmp_path / "x.png"), module=PREDICT), "not a readable checkpoint")
    assert_one_line_error(run(bad, "--format", "onnx", "--output", "o.onnx", module=EXPORT), "model.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path):
    result = run("--data-dir", str(tmp_path / "none"), "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "MnistCnnError" in result.stderr


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can read any folder")
def test_a_data_folder_that_cannot_be_read(mnist_dir, tmp_path):
    root = tmp_path / "locked"
    shutil.copytree(mnist_dir, root)
    (root / "MNIST" / "raw").chmod(0)
    try:
        assert_one_line_error(run("--dry-run", "--data-dir", str(root)), str(root))
    finally:
        (root / "MNIST" / "raw").chmod(0o755)


# ---------------------------------------------------------------------------------------------
# Interruptions. A run of the improved net with augmentation uses every random stream (order,
# distortions, dropout); stopped at a random moment and resumed, it must end with bitwise the
# weights of a run that never stopped.

RUN = ["--model", "improved", "--augment", "--epochs", "6", "--batch-size", "32", "--threads", "1",
       "--no-progress", "--save-model"]  # fmt: skip


@pytest.fixture(scope="module")
def long_data(tmp_path_factory) -> Path:
    return write_mnist(tmp_path_factory.mktemp("long"), n_train=1024, n_test=128)


@pytest.fixture(scope="module")
def reference_weights(long_data, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reference")
    result = run(*RUN, "--data-dir", str(long_data), "--output-dir", str(out))
    assert result.returncode == 0, result.stderr
    return load_checkpoint(out / "last.pt")["model_state"]


def start_training(data: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_cnn.train", *RUN, "--data-dir", str(data), "--output-dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **NO_NETWORK},
    )


def resume_to_the_end(last: Path, data: Path) -> dict:
    result = run("--resume", str(last), "--data-dir", str(data), "--no-progress")
    assert result.returncode == 0, result.stderr
    return load_checkpoint(last)["model_state"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run's weights differ"


@pytest.mark.slow
@pytest.mark.parametrize("signal_number, seed", [(signal.SIGINT, 1), (signal.SIGTERM, 2)])
def test_a_signal_saves_the_run_and_resume_ends_bitwise_the_same(
    signal_number, seed, long_data, reference_weights, tmp_path
):
    process = start_training(long_data, tmp_path)
    wait_for(tmp_path / "metrics.json", process)  # epoch 1 done: training is under way
    # Within the next epoch or so, however fast this machine is: the run has four more after it.
    first_epoch = json.loads((tmp_path / "metrics.json").read_text())[0]["train_seconds"]
    time.sleep(random.Random(seed).uniform(0, 1.0) * first_epoch)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal_number, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "--resume" in lines[0] and signal.Signals(signal_number).name in lines[0]
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["position"] is not None and saved["position"]["step"] >= 1  # stopped within an epoch
    assert_same_weights(resume_to_the_end(tmp_path / "last.pt", long_data), reference_weights)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint(seed, long_data, reference_weights, tmp_path):
    process = start_training(long_data, tmp_path)
    wait_for(tmp_path / "last.pt", process)
    time.sleep(random.Random(seed).uniform(0, 1.0))
    process.kill()
    process.communicate()
    load_checkpoint(tmp_path / "last.pt")  # whole, whatever the kill interrupted
    assert_same_weights(resume_to_the_end(tmp_path / "last.pt", long_data), reference_weights)


WRITER = """
import sys, torch
from mnist_cnn import save_checkpoint
for i in range(1, 10**6):
    save_checkpoint(sys.argv[1], {"model_state": {"w": torch.full((2_000_000,), float(i))}})
    print(i, flush=True)
"""


@pytest.mark.slow
def test_sigkill_during_checkpoint_writes_leaves_the_previous_one_whole(tmp_path):
    """A process that does nothing but write 8 MB checkpoints, killed at random moments: the file
    is always a whole checkpoint, the last one finished or the one before."""
    path = tmp_path / "last.pt"
    for seed in range(3):
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout.readline().strip() == "1"  # one write finished
        time.sleep(random.Random(seed).uniform(0.05, 0.5))
        process.kill()
        finished = [int(line) for line in process.communicate()[0].split()]
        w = load_checkpoint(path)["model_state"]["w"]
        assert w.shape == (2_000_000,) and (w == w[0]).all()
        assert int(w[0]) in (finished[-1] if finished else 1, (finished[-1] if finished else 1) + 1)


# ---------------------------------------------------------------------------------------------
# Divergence


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(mnist_dir, tmp_path, monkeypatch):
    poisoned = []

    def poison_after_epoch_1(metrics):
        poisoned.append(metrics["epoch"])

    real_augment = train_module.augment_batch
    monkeypatch.setattr(
        train_module,
        "augment_batch",
        lambda *args: real_augment(*args) * (float("nan") if poisoned else 1.0),
    )
    config = TrainConfig(
        data_dir=str(mnist_dir),
        augment=True,
        batch_size=32,
        epochs=3,
        save_model=True,
        output_dir=str(tmp_path),
    )
    with pytest.raises(MnistCnnError, match=r"training loss became nan .*diverged; try a lower --lr"):
        fit(config, on_epoch=poison_after_epoch_1)
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1 and all(torch.isfinite(v).all() for v in last["model_state"].values())
    assert resume_config(tmp_path / "last.pt").epochs == 3


@pytest.mark.slow
def test_a_huge_learning_rate_is_one_line_with_advice(mnist_dir):
    assert_one_line_error(run("--lr", "1e12", "--data-dir", str(mnist_dir), "--no-progress"), "lower --lr")
