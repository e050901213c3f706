"""The cache of decoded splits: a hit needs neither torchvision nor the IDX files' decoding; a
stale, damaged or hostile entry is rebuilt with a note; an unwritable cache is skipped silently;
concurrent writers leave one whole entry; --no-cache reads the raw files."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

from mnist_cnn import TrainConfig, data, fit
from mnist_cnn.cache import cache_dir
from mnist_cnn.data import read_split

from .helpers import write_mnist


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """A data folder of its own and an empty cache folder."""
    monkeypatch.setenv("MNIST_CNN_CACHE", str(tmp_path / "cache"))
    return write_mnist(tmp_path / "data", n_train=64, n_test=32)


def entries(tmp_path):
    folder = tmp_path / "cache"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def no_decoding(*args):
    raise AssertionError("decoded the raw files instead of using the cache")


def test_a_miss_writes_an_entry_and_a_hit_returns_the_same_split_without_decoding(
    fresh, tmp_path, monkeypatch
):
    images, labels = read_split(fresh, True)
    (entry,) = entries(tmp_path)
    assert entry.startswith("mnist-train-") and entry.endswith(".pt")
    monkeypatch.setattr(data, "decode_split", no_decoding)
    cached_images, cached_labels = read_split(fresh, True)
    assert torch.equal(images, cached_images) and torch.equal(labels, cached_labels)
    assert cached_images.dtype == torch.uint8 and cached_labels.dtype == torch.int64


@pytest.mark.slow
def test_a_second_run_imports_no_torchvision(fresh, tmp_path):
    code = (
        f"import sys; from mnist_cnn.data import load_splits; load_splits({str(fresh)!r}); "
        "print('torchvision' in sys.modules)"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        for _ in range(2)
    ]
    assert [r.stdout.strip() for r in runs] == ["True", "False"], [r.stderr for r in runs]


def test_changed_raw_files_make_the_entry_stale_and_it_is_rebuilt(fresh, tmp_path, capsys):
    read_split(fresh, False)
    labels_file = fresh / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw = bytearray(labels_file.read_bytes())
    raw[8] = (raw[8] + 1) % 10  # a relabelled first image
    labels_file.write_bytes(bytes(raw))
    os.utime(labels_file, ns=(0, 10**18))  # and, to be sure, another modification time
    _, labels = read_split(fresh, False)
    assert labels[0] == raw[8]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "stale" in err and "rebuilding" in err


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"not a tensor file",
        "truncated",
        "a pickle that runs code",
        "not a split",
    ],
)
def test_a_damaged_entry_is_rebuilt_with_a_note_and_never_runs_code(damage, fresh, tmp_path, capsys):
    images, labels = read_split(fresh, True)
    (entry,) = (tmp_path / "cache").iterdir()
    if damage == "truncated":
        damage = entry.read_bytes()[:1000]
    elif damage == "a pickle that runs code":
        damage = pickle.dumps(Hostile(tmp_path / "pwned"))
    elif damage == "not a split":
        buffer_path = tmp_path / "other.pt"
        torch.save({"images": torch.zeros(3), "labels": "x"}, buffer_path)
        damage = buffer_path.read_bytes()
    entry.write_bytes(damage)
    again = read_split(fresh, True)
    assert torch.equal(again[0], images) and torch.equal(again[1], labels)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "damaged" in err and str(entry) in err
    assert not (tmp_path / "pwned").exists()
    read_split(fresh, True)  # the rebuilt entry is whole: no note this time
    assert capsys.readouterr().err == ""


class Hostile:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_cache_folder_that_cannot_be_written_is_skipped_without_a_word(
    fresh, tmp_path, monkeypatch, capsys
):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("MNIST_CNN_CACHE", str(tmp_path / "file" / "cache"))
    images, _ = read_split(fresh, True)
    assert len(images) == 64 and capsys.readouterr().err == ""


@pytest.mark.slow
def test_concurrent_writers_leave_one_whole_entry(fresh, tmp_path):
    code = (
        f"from mnist_cnn.data import read_split; images, labels = read_split({str(fresh)!r}, True); "
        "print(int(images.sum()), int(labels.sum()))"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert all(p.returncode == 0 for p in processes), [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1 and all(err == "" for _, err in outputs)
    assert len(entries(tmp_path)) == 1  # and no temporary files left behind
    images, _ = read_split(fresh, True)
    assert [int(images.sum())] == [int(outputs[0][0].split()[0])]


def test_no_cache_reads_the_raw_files_and_writes_no_entry(fresh, tmp_path):
    _, labels = read_split(fresh, True)
    (entry,) = (tmp_path / "cache").iterdir()
    saved = torch.load(entry, weights_only=True)
    torch.save({**saved, "labels": (saved["labels"] + 1) % 10}, entry)  # a planted, valid-looking entry
    assert torch.equal(read_split(fresh, True)[1], (labels + 1) % 10)  # the cache is what is read...
    assert torch.equal(read_split(fresh, True, cache=False)[1], labels)  # ... unless told not to

    shutil.rmtree(tmp_path / "cache")
    fit(TrainConfig(data_dir=str(fresh), batch_size=32, cache=False))
    assert entries(tmp_path) == []


def test_the_cache_folder_is_mnist_cnn_cache_else_xdg_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_CNN_CACHE", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("MNIST_CNN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "mnist-cnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "mnist-cnn"


def test_each_data_set_and_split_has_its_own_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_CNN_CACHE", str(tmp_path / "cache"))
    for dataset in ("mnist", "emnist-digits", "qmnist"):
        root = write_mnist(tmp_path / dataset, n_train=32, n_test=16, dataset=dataset)
        for train in (True, False):
            uncached = read_split(root, train, dataset, cache=False)
            read_split(root, train, dataset)  # fills the entry
            cached = read_split(root, train, dataset)
            assert all(torch.equal(a, b) for a, b in zip(uncached, cached, strict=True))
    assert len(entries(tmp_path)) == 6
    assert json.dumps(entries(tmp_path))  # plain names
