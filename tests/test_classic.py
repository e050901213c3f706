"""The classic DataLoader pipeline (the benchmark's baseline) and what a measurement ran on."""

from mnist_cnn import TrainConfig
from mnist_cnn.classic import fit_classic
from mnist_cnn.machine import caption, describe_machine
from mnist_cnn.metrics import format_test_line


def test_the_classic_pipeline_trains_the_same_net_and_reports_as_fit_does(mnist_dir):
    seen = []
    history = fit_classic(TrainConfig(data_dir=str(mnist_dir), epochs=2, device="cpu"), on_epoch=seen.append)
    assert seen == history and [m["epoch"] for m in history] == [1, 2]
    assert history[-1]["test_total"] == 256 and history[-1]["test_accuracy"] > 0.2  # it learns the bars
    assert format_test_line(history[-1]).startswith("Test set: Average loss: ")


def test_a_measurement_names_its_machine():
    machine = describe_machine("cpu")
    assert machine["cores"] >= 1 and machine["torch"] and machine["device"] == "cpu"
    assert machine["cpu"] in caption(machine) and f"torch {machine['torch']}" in caption(machine)
