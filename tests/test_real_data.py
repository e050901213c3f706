"""Checks on the real MNIST: slow (about 15 s), skipped with a reason without the data."""

import pytest
import torch
from PIL import Image

from mnist_cnn import TrainConfig, fit, load_model
from mnist_cnn.predict import predict_files

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def one_epoch(real_mnist_dir, tmp_path_factory):
    """One epoch of the seed net's defaults on the real data: its history and best.pt."""
    out = tmp_path_factory.mktemp("real")
    config = TrainConfig(data_dir=str(real_mnist_dir), device="cpu", save_model=True, output_dir=str(out))
    return fit(config), out / "best.pt"


def test_one_epoch_of_the_defaults_reaches_97_5_percent(one_epoch):
    history, _ = one_epoch
    assert history[0]["test_total"] == 10_000
    assert history[0]["test_accuracy"] >= 0.975


def test_predict_reads_real_digits_from_pictures_of_them(one_epoch, real_mnist_dir, tmp_path):
    """Test-set digits made into 'photos': upscaled, shifted, dark ink on light paper, or light
    on dark, in JPEG and PNG. The preprocessing must bring them back close enough to MNIST for
    the trained net to read nearly all of them."""
    from torchvision.datasets import MNIST

    test = MNIST(real_mnist_dir, train=False)
    expected = {}
    for i in range(40):
        digit = Image.fromarray(test.data[i].numpy()).resize((84 + i, 84 + i), Image.BICUBIC)
        paper = Image.new("L", (160, 130), 0)
        paper.paste(digit, (10 + i, 5 + i // 2))
        if i % 2 == 0:
            paper = Image.eval(paper, lambda v: 255 - v)  # dark ink on light paper
        name = f"{i:02d}.{'png' if i % 3 else 'jpg'}"
        paper.convert("RGB").save(tmp_path / name)
        expected[name] = int(test.targets[i])
    results, errors = predict_files(load_model(one_epoch[1]), [tmp_path])
    assert not errors
    right = sum(r["digit"] == expected[r["file"].split("/")[-1]] for r in results)
    assert len(results) == 40 and right >= 36, f"{right}/40 read right"
    assert torch.tensor([r["probability"] for r in results]).mean() > 0.8


def test_mnist_measured_normalization_is_the_familiar_one(real_mnist_dir):
    from mnist_cnn.data import MNIST_NORMALIZATION, pixel_statistics, read_split

    assert pixel_statistics(read_split(real_mnist_dir, True)[0]) == MNIST_NORMALIZATION
