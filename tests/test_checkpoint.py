import csv
import dataclasses
import json
import pickle
import sys

import pytest
import torch

from mnist_cnn import (
    MnistCnnError,
    Net,
    TrainConfig,
    fit,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from mnist_cnn.data import DATASETS
from mnist_cnn.runs import resume_config

from .helpers import StopAfterFirstEpoch, stop_after_first_epoch


def test_save_model_writes_last_and_best_that_load_back(mnist_dir, tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(
        data_dir=str(mnist_dir), batch_size=32, epochs=2, save_model=True, output_dir=str(out)
    )
    history = fit(config)
    # no temporary files left
    assert {p.name for p in out.iterdir()} == {
        "run.json",
        "last.pt",
        "best.pt",
        "metrics.csv",
        "metrics.json",
        "curves.png",
    }
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint["epoch"] == 2 and checkpoint["model"] == "seed"
    assert TrainConfig.from_dict(checkpoint["config"]) == config
    assert checkpoint["history"] == history
    model = load_model(out / "best.pt")
    assert isinstance(model, Net) and not model.training
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "deep" / "c.pt"
    save_checkpoint(path, {"model_state": {"w": torch.ones(2)}})
    save_checkpoint(path, {"model_state": {"w": torch.zeros(2)}})
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]
    assert torch.equal(load_checkpoint(path)["model_state"]["w"], torch.zeros(2))


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "not a readable checkpoint"),
        (b"not a checkpoint at all", "not a readable checkpoint"),
        (pickle.dumps(Evil()), "not a readable checkpoint"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path, content, match):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(MnistCnnError, match=match):
        load_model(path)


def test_other_shapes_and_missing_files_are_clear_errors(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": "seed", "model_state": {"features.0.weight": torch.zeros(3)}}, path)
    with pytest.raises(MnistCnnError, match="does not fit"):
        load_model(path)
    torch.save({"weights": 1}, path)
    with pytest.raises(MnistCnnError, match="not an mnist-cnn checkpoint"):
        load_model(path)
    with pytest.raises(MnistCnnError, match="does not exist"):
        load_model(tmp_path / "nope.pt")


def test_resume_continues_bitwise_like_an_uninterrupted_run(mnist_dir, tmp_path):
    # The improved net with augmentation uses every random stream: shuffling, distortions, dropout.
    config = TrainConfig(
        data_dir=str(mnist_dir), model="improved", augment=True, batch_size=32, epochs=2,
        schedule="restarts", device="cpu", save_model=True, output_dir=str(tmp_path / "whole"),
    )  # fmt: skip
    whole = fit(config)
    interrupted = dataclasses.replace(config, output_dir=str(tmp_path / "cut"))
    with pytest.raises(StopAfterFirstEpoch):
        fit(interrupted, on_epoch=stop_after_first_epoch)
    last = tmp_path / "cut" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1
    resumed = fit(resume_config(last), resume=last)
    assert [without_times(m) for m in resumed] == [without_times(m) for m in whole]
    a = load_checkpoint(tmp_path / "whole" / "last.pt")["model_state"]
    b = load_checkpoint(last)["model_state"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_to_change_the_run(mnist_dir, tmp_path):
    config = TrainConfig(data_dir=str(mnist_dir), batch_size=64, save_model=True, output_dir=str(tmp_path))
    fit(config)
    assert resume_config(tmp_path / "last.pt", device="cpu").device == "cpu"
    with pytest.raises(MnistCnnError, match="--lr"):
        resume_config(tmp_path / "last.pt", lr=1.0)
    torch.save({"model": "seed", "model_state": Net().state_dict()}, tmp_path / "weights.pt")
    with pytest.raises(MnistCnnError, match="not a resumable run"):
        resume_config(tmp_path / "weights.pt")


def test_every_run_with_an_output_dir_writes_metrics_and_curves(mnist_dir, tmp_path):
    history = fit(TrainConfig(data_dir=str(mnist_dir), batch_size=64, epochs=2, output_dir=str(tmp_path)))
    assert json.loads((tmp_path / "metrics.json").read_text()) == history
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "test_loss", "test_accuracy", "lr", "train_seconds"} <= set(rows[0])
    assert float(rows[1]["test_accuracy"]) == history[1]["test_accuracy"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "last.pt").exists()  # checkpoints only with save_model


def test_without_matplotlib_the_run_works_and_says_so_once(mnist_dir, tmp_path, monkeypatch, capsys):
    for module in ("matplotlib", "matplotlib.figure"):  # as if it were not installed
        monkeypatch.setitem(sys.modules, module, None)
    fit(TrainConfig(data_dir=str(mnist_dir), batch_size=64, epochs=2, output_dir=str(tmp_path)))
    assert capsys.readouterr().err.count("matplotlib is not installed") == 1
    assert (tmp_path / "metrics.csv").exists() and not (tmp_path / "curves.png").exists()


def without_times(metrics):
    return {k: v for k, v in metrics.items() if not k.endswith("_seconds")}


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory):
    """A data folder with synthetic Fashion-MNIST files, and last.pt of a short run on them."""
    from .helpers import write_mnist

    root = write_mnist(tmp_path_factory.mktemp("fashion"), n_train=128, n_test=64, dataset="fashion-mnist")
    out = tmp_path_factory.mktemp("fashion-run")
    fit(
        TrainConfig(
            dataset="fashion-mnist", data_dir=str(root), batch_size=32, save_model=True, output_dir=str(out)
        )
    )
    return root, out / "last.pt"


def test_a_checkpoint_records_its_data_set_and_normalization(fashion_run):
    from mnist_cnn.checkpoint import load_trained
    from mnist_cnn.data import pixel_statistics, read_split

    root, last = fashion_run
    trained = load_trained(last)
    assert trained.dataset == "fashion-mnist"
    assert trained.normalization == pixel_statistics(read_split(root, True, "fashion-mnist")[0])
    assert load_trained(last, dataset="fashion-mnist").dataset == "fashion-mnist"
    with pytest.raises(
        MnistCnnError, match=r"was trained on fashion-mnist, not mnist: use --dataset fashion-mnist"
    ):
        load_trained(last, dataset="mnist")


def test_a_checkpoint_from_before_datasets_is_mnist(checkpoint, tmp_path):
    from mnist_cnn.checkpoint import load_trained
    from mnist_cnn.data import MNIST_NORMALIZATION

    saved = load_checkpoint(checkpoint)
    del saved["dataset"], saved["normalization"]
    save_checkpoint(tmp_path / "old.pt", saved)
    assert load_trained(tmp_path / "old.pt")[1:3] == ("mnist", MNIST_NORMALIZATION)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_predict_and_evaluate_refuse_a_data_set_mismatch(command, fashion_run, tmp_path, capsys):
    import importlib

    from .helpers import render_digit

    root, last = fashion_run
    render_digit().save(tmp_path / "d.png")
    target = [str(tmp_path / "d.png")] if command == "predict" else ["--data-dir", str(root)]
    main = importlib.import_module(f"mnist_cnn.{command}").main
    with pytest.raises(SystemExit) as exit:
        main([str(last), *target, "--dataset", "mnist"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {last} was trained on fashion-mnist, not mnist: use --dataset fashion-mnist, "
        "or a net trained on mnist"
    )
    # Without --dataset, the checkpoint's data set is used, and its class names are shown.
    extra = ["--output-dir", str(tmp_path)] if command == "evaluate" else []
    main([str(last), *target, *extra])
    out = capsys.readouterr().out
    names = DATASETS["fashion-mnist"].classes
    assert all(n in out for n in names) if command == "evaluate" else any(n in out for n in names)
