"""Using a trained net never pays for the training machinery: each command imports only what it
needs, and torchvision, matplotlib, torchsummary and tqdm wait until they are used."""

import pytest

from .helpers import HEAVY, TRAINING, imported_by


@pytest.mark.parametrize(
    "module",
    [
        "mnist_cnn",
        "mnist_cnn.predict",
        *(pytest.param(m, marks=pytest.mark.slow) for m in ("mnist_cnn.export", "mnist_cnn.evaluate")),
        pytest.param("mnist_cnn.preprocess", marks=pytest.mark.slow),
    ],
)
def test_using_a_trained_net_imports_no_training_machinery(module):
    added = imported_by(module)
    assert not added & (TRAINING | HEAVY), sorted(added & (TRAINING | HEAVY))


def test_the_training_command_imports_its_heavy_helpers_only_when_it_uses_them():
    added = imported_by("mnist_cnn.train")
    assert {"mnist_cnn.train", "mnist_cnn.runs"} <= added
    assert not added & HEAVY, sorted(added & HEAVY)
