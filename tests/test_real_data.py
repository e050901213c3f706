"""One real epoch on MNIST: slow (about 10 s), skipped without the data."""

import pytest

from mnist_cnn import TrainConfig, fit


@pytest.mark.real_data
def test_one_epoch_of_the_defaults_reaches_97_5_percent(real_mnist_dir):
    history = fit(TrainConfig(data_dir=str(real_mnist_dir), device="cpu"))
    assert history[0]["test_total"] == 10_000
    assert history[0]["test_accuracy"] >= 0.975
