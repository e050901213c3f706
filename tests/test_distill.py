"""Knowledge distillation (train --teacher) and the wide net that teaches, on synthetic data."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mnist_cnn import MnistCnnError, TrainConfig, fit
from mnist_cnn.losses import Teacher, distillation_loss
from mnist_cnn.model import ImprovedNet, build_model, count_parameters
from mnist_cnn.runs import Learner
from mnist_cnn.train import parse_args, train_epoch

from .helpers import small_config, without_times


def test_the_distillation_loss_is_the_softened_kl_divergence_times_t_squared():
    generator = torch.Generator().manual_seed(0)
    student = F.log_softmax(torch.randn(8, 10, generator=generator), dim=1)
    teacher = F.log_softmax(torch.randn(8, 10, generator=generator), dim=1)
    for t in (1.0, 4.0):
        p, q = F.softmax(teacher / t, dim=1), F.softmax(student / t, dim=1)
        expected = t**2 * (p * (p.log() - q.log())).sum()
        assert distillation_loss(student, teacher, t).item() == pytest.approx(expected.item(), rel=1e-5)
    assert distillation_loss(teacher, teacher, 4.0).item() == pytest.approx(0.0, abs=1e-6)


def a_step_setup(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model("seed")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


def train_with(teacher: Teacher | None, images, labels, epochs: int = 1) -> torch.nn.Module:
    model, optimizer, scheduler = a_step_setup()
    for epoch in range(epochs):
        learner = Learner(model, optimizer, scheduler, torch.Generator().manual_seed(epoch), teacher=teacher)
        train_epoch(learner, images, labels, TrainConfig(batch_size=16))
    return model.eval()


def test_a_student_with_all_weight_on_the_teacher_learns_the_teachers_answers_not_the_labels():
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.randn(64, 1, 28, 28, generator=generator), torch.randint(0, 10, (64,))
    torch.manual_seed(2)
    teacher_net = build_model("seed").eval()
    with torch.no_grad():
        taught = teacher_net(images)

    def gap(model):  # how far the student's softened answers are from the teacher's
        with torch.no_grad():
            return distillation_loss(model(images), taught, 4.0).item()

    untrained = gap(a_step_setup()[0].eval())
    distilled = train_with(Teacher(teacher_net, weight=1.0, temperature=4.0), images, labels, epochs=5)
    from_labels = train_with(None, images, labels, epochs=5)
    assert gap(distilled) < 0.5 * untrained
    assert gap(distilled) < gap(from_labels)


def test_a_teacher_with_no_weight_changes_nothing():
    images, labels = torch.randn(48, 1, 28, 28), torch.randint(0, 10, (48,))
    teacher = Teacher(build_model("seed").eval(), weight=0.0, temperature=4.0)
    alone, taught = train_with(None, images, labels), train_with(teacher, images, labels)
    assert all(torch.equal(a, b) for a, b in zip(alone.parameters(), taught.parameters(), strict=True))


@pytest.fixture(scope="module")
def teachers(mnist_dir, tmp_path_factory):
    """Two wide nets trained on the synthetic digits: on all training images, and on all but 64."""
    folder = tmp_path_factory.mktemp("teachers")
    paths = {}
    for val_split in (0, 64):
        out = folder / f"val{val_split}"
        fit(
            small_config(
                mnist_dir, model="wide", epochs=1, val_split=val_split, save_model=True, output_dir=str(out)
            )
        )
        paths[val_split] = str(out / "last.pt")
    return paths


def test_a_run_with_a_teacher_learns_from_it_and_draws_the_same_random_numbers(mnist_dir, teachers):
    config = small_config(mnist_dir, model="improved", device="cpu", val_split=64)
    plain = fit(config)
    taught = fit(dataclasses.replace(config, teacher=teachers[64]))
    assert without_times(taught) != without_times(plain)
    # With no weight the teacher only costs time: loading it took nothing from the run's random
    # stream, so the run is bitwise the plain one.
    ignored = fit(dataclasses.replace(config, teacher=teachers[64], distill=0.0))
    assert without_times(ignored) == without_times(plain)


def test_a_teacher_from_another_training_split_is_refused(mnist_dir, teachers, tmp_path):
    config = small_config(mnist_dir, model="improved", device="cpu", output_dir=str(tmp_path))
    with pytest.raises(
        MnistCnnError, match=r"--teacher .*val64.* was trained with --val-split 64, this run has 0"
    ):
        fit(dataclasses.replace(config, teacher=teachers[64]))
    with pytest.raises(MnistCnnError, match="was trained with --val-split 0, this run has 64"):
        fit(dataclasses.replace(config, teacher=teachers[0], val_split=64))
    with pytest.raises(MnistCnnError, match="--teacher: checkpoint .*missing.pt does not exist"):
        fit(dataclasses.replace(config, teacher=str(tmp_path / "missing.pt")))
    assert not (tmp_path / "run.json").exists()  # refused before the run claimed its folder


def test_the_distillation_flags_build_the_config_and_are_checked():
    config = parse_args(
        ["--model", "improved", "--teacher", "t.pt", "--distill", "0.7", "--temperature", "2"]
    ).config
    assert (config.teacher, config.distill, config.temperature) == ("t.pt", 0.7, 2.0)
    with pytest.raises(MnistCnnError, match="--distill must be in"):
        TrainConfig(distill=1.5)
    for bad in (0.0, float("inf"), float("nan")):
        with pytest.raises(MnistCnnError, match="--temperature must be"):
            TrainConfig(temperature=bad)


def test_the_wide_net_is_the_improved_net_twice_as_wide():
    wide, improved = build_model("wide"), build_model("improved")
    assert isinstance(wide, ImprovedNet) and count_parameters(wide) == 35_664
    widths = [m.out_channels for m in wide.features if isinstance(m, torch.nn.Conv2d)]
    assert widths == [2 * m.out_channels for m in improved.features if isinstance(m, torch.nn.Conv2d)][:4] + [
        64,
        10,
    ]
    assert wide(torch.randn(2, 1, 28, 28)).shape == (2, 10)
