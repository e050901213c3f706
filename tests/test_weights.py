"""The shipped weights: safetensors files in the package, the torchvision-style API, torch.hub,
the commands without a checkpoint, and the wheel."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

from mnist_cnn import (
    ImprovedNetWeights,
    MnistCnnError,
    Net,
    SeedNetWeights,
    build_model,
    improved_net,
    seed_net,
    separable_net,
)
from mnist_cnn import weights as weights_module
from mnist_cnn.data import load_mnist
from mnist_cnn.model import ImprovedNet, SeparableNet, count_parameters
from mnist_cnn.preprocess import to_mnist
from mnist_cnn.train import evaluate_split
from mnist_cnn.weights import get_weights
from mnist_cnn.weights_file import load_weights_file

from .helpers import REPO, assert_one_line_error, pen_digit, render_digit, run_main

SHIPPED = [SeedNetWeights.MNIST_V1, ImprovedNetWeights.MNIST_V1, ImprovedNetWeights.FASHION_MNIST_V1]


def never(*args, **kwargs):
    raise AssertionError("torch.load was called on shipped weights")


@pytest.mark.parametrize("weights", SHIPPED, ids=str)
def test_shipped_weights_load_through_safetensors_and_say_what_they_are(weights, monkeypatch):
    monkeypatch.setattr(torch, "load", never)
    trained = weights.load()
    meta = weights.meta
    assert not trained.model.training and trained.dataset == meta["dataset"]
    assert meta["sha256"] == hashlib.sha256(weights.path.read_bytes()).hexdigest()
    assert meta["num_params"] == count_parameters(trained.model) <= 9_032
    assert len(meta["categories"]) == 10 and 0.8 < meta["metrics"]["test_accuracy"] < 1
    assert meta["recipe"]["seed"] == 1 and meta["threads"] == meta["recipe"]["threads"]
    assert meta["command"].startswith("python scripts/make_weights.py") and meta["torch"]
    assert weights.path.stat().st_size < 64_000


def test_builders_take_weights_the_torchvision_way():
    model = improved_net(weights="DEFAULT")
    assert isinstance(model, ImprovedNet) and not model.training
    reference = ImprovedNetWeights.MNIST_V2.state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    assert ImprovedNetWeights.DEFAULT is ImprovedNetWeights.MNIST_V2
    assert not seed_net(weights=SeedNetWeights.MNIST_V1).training
    assert seed_net().training and isinstance(Net(), Net) and isinstance(build_model("seed"), Net)
    with pytest.raises(MnistCnnError, match="there are MNIST_V1, FASHION_MNIST_V1, MNIST_V2, DEFAULT"):
        improved_net(weights="MNIST_V3")
    with pytest.raises(MnistCnnError, match="dropout"):
        improved_net(weights="DEFAULT", dropout=0.5)
    assert isinstance(separable_net(), SeparableNet) and separable_net(dropout=0.0).training
    with pytest.raises(MnistCnnError, match="no trained weights ship for the separable net"):
        separable_net(weights="DEFAULT")


def test_transforms_are_the_preprocessing_predict_uses(tmp_path):
    image = render_digit("3")
    image.save(tmp_path / "three.png")
    weights = ImprovedNetWeights.FASHION_MNIST_V1
    transform = weights.transforms()
    expected = to_mnist(image, tuple(weights.meta["normalization"]))
    assert torch.equal(transform(image), expected) and torch.equal(
        transform(tmp_path / "three.png"), expected
    )
    render_digit(" ").save(tmp_path / "blank.png")
    with pytest.raises(MnistCnnError, match=r"blank\.png: no digit found"):
        transform(tmp_path / "blank.png")


@pytest.mark.parametrize(
    "name, member",
    [
        ("DEFAULT", ImprovedNetWeights.MNIST_V2),
        ("improved", ImprovedNetWeights.MNIST_V2),
        ("seed", SeedNetWeights.MNIST_V1),
        ("improved:FASHION_MNIST_V1", ImprovedNetWeights.FASHION_MNIST_V1),
        ("ImprovedNetWeights.MNIST_V1", ImprovedNetWeights.MNIST_V1),
        ("seed:DEFAULT", SeedNetWeights.MNIST_V1),
    ],
)
def test_weights_by_the_names_the_commands_take(name, member):
    assert get_weights(name) is member


@pytest.mark.parametrize("damage", ["a flipped byte", "truncated", "missing"])
def test_damaged_weights_are_one_clear_line(damage, tmp_path, monkeypatch, capfd):
    folder = shutil.copytree(weights_module.WEIGHTS_DIR, tmp_path / "weights")
    path = folder / ImprovedNetWeights.DEFAULT.value[0]
    data = bytearray(path.read_bytes())
    if damage == "a flipped byte":
        data[-10] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        path.unlink()
    monkeypatch.setattr(weights_module, "WEIGHTS_DIR", folder)
    with pytest.raises(MnistCnnError, match=str(path)):
        ImprovedNetWeights.DEFAULT.load()
    result = run_main(
        "mnist_cnn.predict", ["--weights", "DEFAULT", str(REPO / "docs" / "digits" / "7.png")], capfd
    )
    assert_one_line_error(result, str(path))


@pytest.mark.parametrize(
    "module, args, needle",
    [
        ("mnist_cnn.predict", ["--weights", "improved:V9", "x.png"], "--weights 'improved:V9'"),
        ("mnist_cnn.evaluate", ["--weights", "resnet"], "there are DEFAULT"),
        ("mnist_cnn.evaluate", [], "give a checkpoint, or --weights"),
        (
            "mnist_cnn.export",
            ["model.pt", "--weights", "DEFAULT", "--format", "onnx", "--output", "o"],
            "not both",
        ),
        ("mnist_cnn.predict", ["--weights", "seed", "model.pt", "x.png"], "not both"),
        ("mnist_cnn.predict", ["--dataset", "kmnist", "x.png"], "no shipped net learnt kmnist"),
    ],
)
def test_bad_weights_names_on_the_command_line_are_one_line(module, args, needle, capfd):
    assert_one_line_error(run_main(module, args, capfd), needle)


@pytest.mark.parametrize("pen", [2, 8])
def test_predict_without_a_checkpoint_uses_the_default_weights_and_reads_drawn_digits(pen, tmp_path, capfd):
    for digit in range(10):
        pen_digit(digit, width=pen).save(tmp_path / f"{digit}.png")
    result = run_main("mnist_cnn.predict", [str(tmp_path)], capfd)
    assert result.returncode == 0, result.stderr
    read = [line.split(": ")[1].split()[0] for line in result.stdout.splitlines()]
    assert read == list("0123456789")
    assert result.stderr.count("\n") == 1 and "ImprovedNetWeights.MNIST_V2" in result.stderr


def test_export_to_safetensors_writes_what_the_shipped_files_are(tmp_path, capfd):
    out = tmp_path / "net.safetensors"
    result = run_main(
        "mnist_cnn.export", ["--weights", "seed", "--format", "safetensors", "--output", str(out)], capfd
    )
    assert result.returncode == 0, result.stderr
    trained = load_weights_file(out)
    reference = SeedNetWeights.MNIST_V1.state_dict()
    assert trained.dataset == "mnist" and all(
        torch.equal(v, reference[k]) for k, v in trained.model.state_dict().items()
    )
    predicted = run_main("mnist_cnn.predict", [str(out), str(REPO / "docs" / "digits" / "7.png")], capfd)
    assert predicted.returncode == 0 and ": 7 (" in predicted.stdout


def test_torch_hub_loads_the_nets_from_the_checkout():
    model = torch.hub.load(str(REPO), "improved_net", source="local", weights="DEFAULT")
    assert isinstance(model, ImprovedNet) and not model.training
    assert not torch.hub.load(str(REPO), "seed_net", source="local", weights="MNIST_V1").training


@pytest.mark.slow
def test_the_wheel_holds_the_weights_and_they_load_once_installed(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel without network needs setuptools installed")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mnist_cnn-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"mnist_cnn/weights/{w.value[0]}" for w in SHIPPED} <= names
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(tmp_path / "site"),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    code = (
        "import mnist_cnn; from mnist_cnn import improved_net; improved_net(weights='DEFAULT'); "
        "print(mnist_cnn.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().startswith(str(tmp_path / "site"))


@pytest.mark.real_data
@pytest.mark.parametrize("weights", SHIPPED, ids=str)
def test_each_shipped_net_scores_on_the_real_test_set_what_its_metadata_says(weights, request):
    folder = request.getfixturevalue(
        "real_fashion_dir" if weights.meta["dataset"] == "fashion-mnist" else "real_mnist_dir"
    )
    trained = weights.load()
    images, labels = load_mnist(folder, False, dataset=trained.dataset, normalization=trained.normalization)
    _, correct, total = evaluate_split(trained.model, images, labels)
    assert correct / total == weights.meta["metrics"]["test_accuracy"]


def test_predict_without_a_checkpoint_takes_the_shipped_net_of_the_data_set_named(tmp_path, capfd):
    render_digit("3").save(tmp_path / "three.png")
    result = run_main("mnist_cnn.predict", ["--dataset", "fashion-mnist", str(tmp_path / "three.png")], capfd)
    assert result.returncode == 0 and "ImprovedNetWeights.FASHION_MNIST_V1" in result.stderr


def test_a_weights_file_is_read_afresh_when_it_changes(tmp_path):
    path = tmp_path / "net.safetensors"
    shutil.copy(SeedNetWeights.MNIST_V1.path, path)
    assert isinstance(load_weights_file(path).model, Net)
    shutil.copy(ImprovedNetWeights.MNIST_V1.path, path)  # written over, in the same process
    assert isinstance(load_weights_file(path).model, ImprovedNet)
