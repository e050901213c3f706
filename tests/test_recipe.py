"""The recipe's pieces beyond the seed's: the validation split, label smoothing and the moving
average of the weights, on synthetic data."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
import torch.nn.functional as F

from mnist_cnn import MnistCnnError, TrainConfig, fit, load_checkpoint
from mnist_cnn.config import RECIPES
from mnist_cnn.data import DATASETS, VAL_SPLIT_SEED, load_splits, read_split
from mnist_cnn.losses import classification_loss
from mnist_cnn.metrics import format_test_line
from mnist_cnn.model import build_model
from mnist_cnn.optim import exponential_average
from mnist_cnn.runs import Learner, resume_config
from mnist_cnn.synthetic import write_idx
from mnist_cnn.train import parse_args, train_epoch

from .helpers import StopAfterFirstEpoch, small_config, stop_after_first_epoch, without_times


def test_the_validation_split_is_held_out_of_training_and_replaces_the_test_split(mnist_dir):
    images, labels = read_split(mnist_dir, train=True)
    splits = load_splits(mnist_dir, val_split=200)
    assert len(splits.train_images) == len(images) - 200 and len(splits.test_images) == 200
    # Every training image lands in exactly one of the two parts, and none of the test split is used.
    mean, std = splits.normalization
    restored = torch.cat([splits.train_images, splits.test_images]).mul(std).add(mean).mul(255).round()
    assert sorted(map(bytes, restored.to(torch.uint8).flatten(1))) == sorted(map(bytes, images.flatten(1)))
    assert torch.equal(splits.train_labels.bincount(minlength=10) + splits.test_labels.bincount(minlength=10),
                       labels.bincount(minlength=10))  # fmt: skip
    # The statistics are the kept images' own, and the split is the same for every run.
    assert torch.equal(load_splits(mnist_dir, val_split=200).test_images, splits.test_images)


def test_the_normalization_comes_from_the_images_left_to_train_on(mnist_dir, tmp_path):
    # A copy of the data whose held-out images are all white: counted in, they would raise the mean.
    images, labels = read_split(mnist_dir, train=True)
    held_out = torch.randperm(len(images), generator=torch.Generator().manual_seed(VAL_SPLIT_SEED))[-200:]
    whitened = images.clone()
    whitened[held_out] = 255
    image_file, label_file = DATASETS["mnist"].split_files(tmp_path, True)
    image_file.parent.mkdir(parents=True)
    write_idx(image_file, whitened.squeeze(1).numpy())
    write_idx(label_file, labels.numpy())
    for test_file in DATASETS["mnist"].split_files(mnist_dir, False):
        shutil.copy(test_file, image_file.parent)
    splits = load_splits(tmp_path, val_split=200, cache=False)
    assert (splits.test_images == splits.test_images.max()).all()  # the white ones are held out
    assert splits.normalization == load_splits(mnist_dir, val_split=200).normalization


def test_a_validation_split_that_leaves_nothing_to_train_on_is_one_clear_error(mnist_dir):
    n = len(read_split(mnist_dir, train=True)[0])
    with pytest.raises(MnistCnnError, match=f"--val-split {n} leaves nothing to train on"):
        load_splits(mnist_dir, val_split=n)
    with pytest.raises(MnistCnnError, match="--val-split must be at least 0"):
        TrainConfig(val_split=-1)


def test_a_run_with_a_validation_split_reports_validation_metrics_and_picks_best_pt_by_them(
    mnist_dir, tmp_path
):
    history = fit(small_config(mnist_dir, val_split=64, save_model=True, output_dir=str(tmp_path)))
    assert history[-1]["val_total"] == 64
    assert not any(key.startswith("test_") for key in history[-1])  # the test set is not looked at
    assert format_test_line(history[-1]).startswith("Validation set: Average loss: ")
    best = max(range(len(history)), key=lambda i: (history[i]["val_accuracy"], i))
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == best + 1
    assert (tmp_path / "metrics.csv").read_text().startswith("epoch,train_loss,val_loss")


def test_label_smoothing_is_cross_entropy_with_smoothed_targets():
    logits = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))
    log_probs = F.log_softmax(logits, dim=1)
    for e in (0.0, 0.1, 0.3):
        expected = F.cross_entropy(logits, labels, label_smoothing=e, reduction="sum")
        assert classification_loss(log_probs, labels, e).item() == pytest.approx(expected.item(), rel=1e-5)
    # Without smoothing it is the seed's NLL loss exactly, so runs without it stay bitwise as they were.
    assert torch.equal(classification_loss(log_probs, labels), F.nll_loss(log_probs, labels, reduction="sum"))


def test_label_smoothing_changes_the_run_and_is_validated(mnist_dir):
    plain = fit(small_config(mnist_dir, epochs=1))
    smoothed = fit(small_config(mnist_dir, epochs=1, label_smoothing=0.1))
    assert smoothed[0]["train_loss"] != plain[0]["train_loss"]
    with pytest.raises(MnistCnnError, match="--label-smoothing must be in"):
        TrainConfig(label_smoothing=1.0)


def test_train_epoch_updates_the_moving_average_after_every_step_buffers_included():
    torch.manual_seed(0)
    model = build_model("improved")
    ema = exponential_average(model, decay=0.9)
    images, labels = torch.randn(96, 1, 28, 28), torch.randint(0, 10, (96,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    learner = Learner(model, optimizer, scheduler, torch.Generator().manual_seed(0), ema=ema)
    train_epoch(learner, images, labels, TrainConfig(batch_size=32))
    assert int(ema.n_averaged) == 3  # one update a batch
    averaged, trained = ema.module.state_dict(), model.state_dict()
    for name in ("features.0.weight", "features.1.running_mean"):  # a weight, a BatchNorm statistic
        assert not torch.equal(averaged[name], trained[name]), name


def test_one_update_of_the_moving_average_is_a_lerp_towards_the_weights():
    model = torch.nn.Linear(3, 2)
    ema = exponential_average(model, decay=0.75)
    ema.update_parameters(model)  # the first update copies
    first = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update_parameters(model)
    assert torch.allclose(ema.module.weight, 0.75 * first + 0.25 * model.weight)


def test_a_run_with_ema_saves_and_evaluates_the_average_and_resumes_bitwise(mnist_dir, tmp_path):
    config = small_config(
        mnist_dir,
        model="improved",
        device="cpu",
        ema=0.9,
        save_model=True,
        output_dir=str(tmp_path / "whole"),
    )
    whole = fit(config)
    plain = fit(dataclasses.replace(config, ema=0.0, output_dir=str(tmp_path / "plain")))
    assert without_times(whole) != without_times(plain)  # the average is what is evaluated
    saved = load_checkpoint(tmp_path / "whole" / "last.pt")
    unaveraged = load_checkpoint(tmp_path / "plain" / "last.pt")
    # model_state (what predict and export load) is the average; the trained weights are kept
    # for --resume, and they are those of the run without the average (it does not change training).
    assert all(
        torch.equal(saved["train_state"][k], unaveraged["model_state"][k]) for k in saved["train_state"]
    )
    assert not torch.equal(
        saved["model_state"]["features.0.weight"], saved["train_state"]["features.0.weight"]
    )
    with pytest.raises(StopAfterFirstEpoch):
        fit(dataclasses.replace(config, output_dir=str(tmp_path / "cut")), on_epoch=stop_after_first_epoch)
    last = tmp_path / "cut" / "last.pt"
    resumed = fit(resume_config(last), resume=last)
    assert without_times(resumed) == without_times(whole)
    again = load_checkpoint(last)
    for state in ("model_state", "train_state"):
        assert all(torch.equal(again[state][k], saved[state][k]) for k in saved[state])
    with pytest.raises(MnistCnnError, match="--ema must be in"):
        TrainConfig(ema=1.0)


def test_the_new_flags_build_the_config():
    config = parse_args(
        ["--model", "improved", "--val-split", "5000", "--ema", "0.999", "--label-smoothing", "0.1"]
    ).config
    assert (config.val_split, config.ema, config.label_smoothing) == (5000, 0.999, 0.1)
    assert config.epochs == RECIPES["improved"]["epochs"]  # the rest is still the model's recipe
