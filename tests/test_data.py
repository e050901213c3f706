import shutil

import pytest
import torch

from mnist_cnn import MnistCnnError, load_mnist
from mnist_cnn.data import MNIST_MEAN, MNIST_STD, RAW_FILES, resolve_data_dir, shuffled_batches

from .conftest import synthetic_digits, write_mnist


def test_load_mnist_gives_normalized_tensors(mnist_dir):
    images, labels = load_mnist(mnist_dir, train=True)
    raw_images, raw_labels = synthetic_digits(512, seed=0)
    assert images.shape == (512, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (512,) and labels.dtype == torch.int64
    assert torch.equal(labels, torch.from_numpy(raw_labels).long())
    expected = (torch.from_numpy(raw_images).float() / 255 - MNIST_MEAN) / MNIST_STD
    assert torch.allclose(images[:, 0], expected)
    test_images, _ = load_mnist(mnist_dir, train=False)
    assert test_images.shape == (256, 1, 28, 28)


def test_resolve_data_dir_prefers_flag_then_environment_then_data(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("MNIST_DATA_DIR")
    assert str(resolve_data_dir(None)) == "data"


def test_missing_files_without_network_name_the_folder_and_files(tmp_path):
    with pytest.raises(MnistCnnError) as error:
        load_mnist(tmp_path / "empty", train=True)
    message = str(error.value)
    assert str(tmp_path / "empty" / "MNIST" / "raw") in message
    assert all(name in message for name in RAW_FILES)
    assert "\n" not in message


def test_corrupt_file_is_a_clear_error(mnist_dir, tmp_path):
    root = tmp_path / "corrupt"
    shutil.copytree(mnist_dir, root)
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:5000])  # truncated
    with pytest.raises(MnistCnnError, match="could not read the MNIST files"):
        load_mnist(root, train=True)


def test_counts_that_disagree_are_a_clear_error(tmp_path):
    root = write_mnist(tmp_path / "a", n_train=64, n_test=32)
    other = write_mnist(tmp_path / "b", n_train=48, n_test=32)
    name = "train-labels-idx1-ubyte"
    (root / "MNIST" / "raw" / name).write_bytes((other / "MNIST" / "raw" / name).read_bytes())
    with pytest.raises(MnistCnnError):
        load_mnist(root, train=True)


def test_shuffled_batches_cover_every_index_once_and_are_seeded():
    batches = list(shuffled_batches(10, 4, torch.Generator().manual_seed(5)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = list(shuffled_batches(10, 4, torch.Generator().manual_seed(5)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    other = torch.cat(list(shuffled_batches(10, 4, torch.Generator().manual_seed(6))))
    assert not torch.equal(torch.cat(batches), other)
