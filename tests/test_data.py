import shutil

import pytest
import torch

from mnist_cnn import MnistCnnError, load_mnist
from mnist_cnn.data import (
    DATASETS,
    MNIST_FILES,
    epoch_order,
    load_splits,
    pixel_statistics,
    read_split,
    resolve_data_dir,
)
from mnist_cnn.synthetic import synthetic_digits

from .helpers import write_mnist


def test_load_mnist_gives_normalized_tensors(mnist_dir):
    images, labels = load_mnist(mnist_dir, train=True)
    raw_images, raw_labels = synthetic_digits(512, seed=0)
    assert images.shape == (512, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (512,) and labels.dtype == torch.int64
    assert torch.equal(labels, torch.from_numpy(raw_labels).long())
    pixels = torch.from_numpy(raw_images).float() / 255
    mean, std = pixel_statistics(torch.from_numpy(raw_images))
    assert (mean, std) == (round(pixels.mean().item(), 4), round(pixels.std().item(), 4))
    assert torch.allclose(images[:, 0], (pixels - mean) / std)
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
    assert all(name in message for name in MNIST_FILES)
    assert "\n" not in message


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_a_failed_download_leaves_no_folders_behind(dataset, tmp_path):
    with pytest.raises(MnistCnnError, match="could not be downloaded"):
        read_split(tmp_path / "new", True, dataset)
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()  # a folder of the user's stays, empty as it was
    with pytest.raises(MnistCnnError, match="could not be downloaded"):
        read_split(tmp_path / "mine", False, dataset)
    assert list((tmp_path / "mine").iterdir()) == []


def test_a_data_dir_one_level_too_deep_is_recognised_not_downloaded_into(mnist_dir, tmp_path):
    raw = shutil.copytree(mnist_dir, tmp_path / "data") / "MNIST" / "raw"
    for wrong in (raw, raw.parent):
        with pytest.raises(
            MnistCnnError, match="point --data-dir at the folder that holds MNIST/raw"
        ) as error:
            read_split(wrong, True)
        assert str(tmp_path / "data") in str(error.value)
    assert sorted(p.name for p in raw.iterdir()) == sorted(MNIST_FILES)  # no MNIST/raw inside


def cut(data: bytes) -> bytes:
    return data[:5000]


def wrong_magic(data: bytes) -> bytes:
    return b"\x00\x00\x08\x02" + data[4:]


def too_long(data: bytes) -> bytes:
    return data + b"\x00" * 7


def empty(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize(
    "name, damage, needle",
    [
        ("train-images-idx3-ubyte", cut, "truncated"),
        ("train-images-idx3-ubyte", wrong_magic, "wrong magic number 0x00000802"),
        ("train-labels-idx1-ubyte", too_long, "too long"),
        ("train-labels-idx1-ubyte", empty, "not even an IDX header"),
    ],
)
def test_damaged_files_are_clear_errors_naming_the_file(mnist_dir, tmp_path, name, damage, needle):
    root = tmp_path / "damaged"
    shutil.copytree(mnist_dir, root)
    path = root / "MNIST" / "raw" / name
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(MnistCnnError) as error:
        load_mnist(root, train=True)
    assert str(error.value).startswith(f"{path}: ") and needle in str(error.value)


def test_counts_that_disagree_are_a_clear_error(tmp_path):
    root = write_mnist(tmp_path / "a", n_train=64, n_test=32)
    other = write_mnist(tmp_path / "b", n_train=48, n_test=32)
    name = "train-labels-idx1-ubyte"
    (root / "MNIST" / "raw" / name).write_bytes((other / "MNIST" / "raw" / name).read_bytes())
    with pytest.raises(MnistCnnError, match="64 images but train-labels-idx1-ubyte 48 labels"):
        load_mnist(root, train=True)


def test_a_file_as_data_dir_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(MnistCnnError, match="is a file, not a folder"):
        load_mnist(tmp_path / "file", train=True)


def test_a_data_folder_that_holds_the_files_is_only_read(mnist_dir, tmp_path):
    root = tmp_path / "readonly"
    shutil.copytree(mnist_dir, root)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    for path in before:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        load_mnist(root, train=True)
        load_mnist(root, train=False)
        assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before  # nothing added or changed
    finally:
        for path in before:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_epoch_order_covers_every_index_once_and_is_seeded():
    order = epoch_order(10, torch.Generator().manual_seed(5))
    assert sorted(order.tolist()) == list(range(10))
    assert torch.equal(order, epoch_order(10, torch.Generator().manual_seed(5)))
    assert not torch.equal(order, epoch_order(10, torch.Generator().manual_seed(6)))


# ---------------------------------------------------------------------------------------------
# The MNIST family (--dataset): each read from its own files, as torchvision lays them out.


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_data_set_loads_upright_images_and_class_numbers(dataset, tmp_path):
    root = write_mnist(tmp_path, n_train=64, n_test=32, dataset=dataset)
    for train, n, seed in ((True, 64, 0), (False, 32, 1)):
        images, labels = read_split(root, train, dataset)
        raw_images, raw_labels = synthetic_digits(n, seed)
        assert torch.equal(images[:, 0], torch.from_numpy(raw_images))  # EMNIST's transposed back
        assert torch.equal(labels, torch.from_numpy(raw_labels).long())  # QMNIST's first column


def test_load_splits_normalizes_both_splits_by_the_training_split(tmp_path):
    root = write_mnist(tmp_path, n_train=64, n_test=32, dataset="kmnist")
    splits = load_splits(root, "kmnist")
    assert splits.normalization == pixel_statistics(read_split(root, True, "kmnist")[0])
    images, labels = load_mnist(root, False, dataset="kmnist")  # normalization measured for it
    assert torch.equal(images, splits.test_images) and torch.equal(labels, splits.test_labels)
    assert abs(splits.train_images.mean().item()) < 1e-3  # the training split is centred


def test_a_missing_data_set_names_its_own_folder_files_and_where_to_get_them(tmp_path):
    with pytest.raises(MnistCnnError) as error:
        load_mnist(tmp_path, train=True, dataset="fashion-mnist")
    message = str(error.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "dataset-fashion-mnist" in message
    assert all(name in message for name in DATASETS["fashion-mnist"].files) and "\n" not in message


def test_a_damaged_qmnist_label_file_is_explained(tmp_path):
    root = write_mnist(tmp_path, n_train=64, n_test=32, dataset="qmnist")
    path = root / "QMNIST" / "raw" / "qmnist-train-labels-idx2-int"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(MnistCnnError) as error:
        load_mnist(root, train=True, dataset="qmnist")
    assert str(error.value).startswith(f"{path}: truncated")


def test_an_unknown_data_set_is_a_clear_error(tmp_path):
    with pytest.raises(MnistCnnError, match="--dataset must be one of mnist, fashion-mnist"):
        load_mnist(tmp_path, train=True, dataset="cifar10")


def test_real_fashion_mnist(real_fashion_dir):
    splits = load_splits(real_fashion_dir, "fashion-mnist")
    assert splits.train_images.shape == (60_000, 1, 28, 28) and len(splits.test_labels) == 10_000
    assert splits.train_labels.bincount().tolist() == [6000] * 10
    assert splits.normalization == (0.2860, 0.3530)  # the values published for Fashion-MNIST
