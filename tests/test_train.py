import copy
import dataclasses

import pytest
import torch

from mnist_cnn import MnistCnnError, Net, TrainConfig, fit
from mnist_cnn.config import RECIPES, default_config
from mnist_cnn.device import autocast, cpu_threads, select_device
from mnist_cnn.metrics import format_test_line
from mnist_cnn.train import evaluate_split, parse_args

from .helpers import RAW_NAMES, small_config, without_times


def test_fit_learns_the_synthetic_digits(mnist_dir):
    history = fit(small_config(mnist_dir, epochs=3))
    assert [m["epoch"] for m in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.5  # chance is 0.1
    assert history[-1]["test_total"] == 256
    assert history[0]["lr"] < 0.05 / 10 < history[1]["lr"]  # the one-cycle schedule warms up


def test_same_seed_same_run_on_cpu(mnist_dir):
    first = fit(small_config(mnist_dir, device="cpu"))
    second = fit(small_config(mnist_dir, device="cpu"))
    other = fit(small_config(mnist_dir, device="cpu", seed=2))
    assert without_times(first) == without_times(second)
    assert without_times(first) != without_times(other)


# Each speed option of TrainConfig, and how far from the fp32 defaults its results may be.
SPEED_OPTIONS = {
    "nchw": ({"channels_last": False}, 1e-3),
    "threads1": ({"threads": 1}, 1e-3),
    "bf16": ({"precision": "bf16"}, 0.1),
}


@pytest.fixture(scope="module")
def reference_history(mnist_dir):
    return fit(small_config(mnist_dir, device="cpu"))


@pytest.mark.parametrize("option", SPEED_OPTIONS)
def test_speed_options_train_and_stay_close_to_fp32(mnist_dir, reference_history, option):
    changes, tolerance = SPEED_OPTIONS[option]
    threads = torch.get_num_threads()
    history = fit(small_config(mnist_dir, device="cpu", **changes))
    assert torch.get_num_threads() == threads  # --threads does not leak out of fit
    assert history[-1]["test_accuracy"] > 0.5
    assert history[-1]["test_loss"] == pytest.approx(
        reference_history[-1]["test_loss"], rel=tolerance, abs=0.01
    )
    assert abs(history[-1]["test_accuracy"] - reference_history[-1]["test_accuracy"]) <= max(tolerance, 0.01)


@pytest.mark.parametrize("option", SPEED_OPTIONS)
def test_speed_options_give_the_same_outputs_for_the_same_weights(option):
    changes, tolerance = SPEED_OPTIONS[option]
    torch.manual_seed(0)
    net, images = Net().eval(), torch.randn(32, 1, 28, 28)
    expected = evaluate_outputs(net, images, TrainConfig())
    actual = evaluate_outputs(net, images, TrainConfig(**changes))
    assert torch.allclose(actual.exp(), expected.exp(), atol=tolerance / 10)


def evaluate_outputs(net, images, config):
    """Probabilities of net on images under config's precision and layout."""
    if config.channels_last:
        net = copy.deepcopy(net).to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    with cpu_threads(config.threads), torch.no_grad(), autocast(torch.device("cpu"), config.precision):
        return net(images).float()


def test_dry_run_trains_and_evaluates_one_batch(mnist_dir):
    history = fit(small_config(mnist_dir, dry_run=True, epochs=5, test_batch_size=100))
    assert len(history) == 1 and history[0]["test_total"] == 100


def test_evaluate_counts_correct_predictions():
    images = torch.randn(50, 1, 28, 28)
    net = Net().eval()
    with torch.no_grad():
        predictions = net(images).argmax(dim=1)
    labels = predictions.clone()
    labels[:10] = (labels[:10] + 1) % 10
    loss, correct, total = evaluate_split(net, images, labels, batch_size=16)
    assert (correct, total) == (40, 50) and loss > 0


def test_format_matches_pytorch_examples():
    metrics = {"test_loss": 0.04751, "test_correct": 9832, "test_total": 10000, "test_accuracy": 0.9832}
    assert format_test_line(metrics) == "Test set: Average loss: 0.0475, Accuracy: 9832/10000 (98.32%)"


@pytest.mark.parametrize(
    "overrides, flag",
    [
        ({"epochs": 0}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"test_batch_size": -1}, "--test-batch-size"),
        ({"lr": 0.0}, "--lr"),
        ({"lr": float("nan")}, "--lr"),
        ({"momentum": 1.0}, "--momentum"),
        ({"precision": "fp8"}, "--precision"),
    ],
)
def test_config_rejects_bad_values_naming_the_flag(overrides, flag):
    with pytest.raises(MnistCnnError, match=flag):
        TrainConfig(**overrides)


def test_config_is_frozen_and_round_trips_through_a_dict():
    config = TrainConfig(epochs=3, lr=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 4
    assert TrainConfig.from_dict({**config.to_dict(), "from_the_future": 1}) == config


def test_flags_build_the_config():
    flags = "--batch-size 32 --epochs 3 --lr 0.1 --no-accel --no-channels-last --seed 7 --output-dir o"
    config, progress, resume, overwrite = parse_args(flags.split())
    assert config == TrainConfig(
        batch_size=32, epochs=3, lr=0.1, device="cpu", channels_last=False, seed=7, output_dir="o"
    )
    assert (progress, resume, overwrite) == (True, None, False)
    assert parse_args(["--overwrite"]).overwrite
    assert parse_args(["--output-dir", "o"])[0] == TrainConfig(output_dir="o")
    assert parse_args([])[0].output_dir.startswith("runs")  # runs/<timestamp> by default


def test_devices():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(MnistCnnError, match="--device"):
        select_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(MnistCnnError, match="CUDA is not available"):
            select_device("cuda")


def test_nan_loss_stops_the_run_with_advice(mnist_dir):
    with pytest.raises(MnistCnnError, match="lower --lr"):
        fit(small_config(mnist_dir, lr=1e20, epochs=1))


def test_fit_reads_both_splits(mnist_dir):
    assert set(p.name for p in (mnist_dir / "MNIST" / "raw").iterdir()) >= set(sum(RAW_NAMES.values(), ()))


def test_improved_model_with_augmentation_learns_the_synthetic_digits(mnist_dir):
    history = fit(small_config(mnist_dir, model="improved", augment=True, epochs=3, weight_decay=5e-4))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.5


def test_augmented_runs_are_reproducible(mnist_dir):
    config = small_config(mnist_dir, model="improved", augment=True, epochs=1, device="cpu")
    assert without_times(fit(config)) == without_times(fit(config))


def test_model_recipes_are_defaults_that_flags_override():
    config = parse_args(["--model", "improved", "--output-dir", "o"])[0]
    assert config == default_config("improved", output_dir="o")
    assert config.augment and config.epochs == RECIPES["improved"]["epochs"]
    config = parse_args(["--model", "improved", "--epochs", "2", "--no-augment"])[0]
    assert (config.epochs, config.augment, config.lr) == (2, False, RECIPES["improved"]["lr"])
    assert parse_args(["--model", "seed", "--output-dir", "o"])[0] == TrainConfig(output_dir="o")


def test_restarts_schedule_anneals_each_cycle_to_zero_and_ends_with_the_run():
    from mnist_cnn.train import cosine_restarts

    steps, epochs = 10, 15  # cycles of 1, 2, 4 and 8 epochs
    factors = [cosine_restarts(s, steps, epochs * steps) for s in range(epochs * steps)]
    assert factors[0] == 1.0
    for end in (10, 30, 70):  # the last step of each cycle is near zero, the next restarts
        assert factors[end - 1] < 0.03 and factors[end] == 1.0
    assert factors[-1] < 0.001
    # a run that does not end on a cycle boundary stretches its last cycle to end with it
    short = [cosine_restarts(s, steps, 4 * steps) for s in range(4 * steps)]
    assert short[10] == 1.0 and short[-1] < 0.01 and max(short[11:]) < 1.0


def test_restarts_schedule_trains(mnist_dir):
    history = fit(small_config(mnist_dir, schedule="restarts", epochs=3))
    assert [m["lr"] for m in history] == pytest.approx([0.05, 0.05, 0.025])  # restart, then mid-cycle
    assert history[-1]["test_accuracy"] > 0.5


def test_package_names_are_not_shadowed_by_the_command_modules():
    import mnist_cnn
    import mnist_cnn.evaluate
    import mnist_cnn.export
    import mnist_cnn.predict  # noqa: F401

    for name in mnist_cnn.__all__:
        assert not isinstance(getattr(mnist_cnn, name), type(mnist_cnn)), name
