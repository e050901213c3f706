"""Using a trained net never pays for the training machinery: each command imports only what it
needs, and torchvision, matplotlib, torchsummary and tqdm wait until they are used."""

import json
import subprocess
import sys

import pytest

TRAINING = {"mnist_cnn.train", "mnist_cnn.runs", "mnist_cnn.augment", "mnist_cnn.distributed"}
HEAVY = {"torchvision", "matplotlib", "torchsummary", "tqdm"}


def imported_by(module: str) -> set[str]:
    """The top-level packages and mnist_cnn modules that importing module adds to `import torch`."""
    code = (
        "import sys, json; import torch; before = set(sys.modules); "
        f"import {module}; "
        "print(json.dumps(sorted(m for m in set(sys.modules) - before if '.' not in m or m.startswith('mnist_cnn'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


@pytest.mark.parametrize(
    "module",
    ["mnist_cnn", "mnist_cnn.predict", "mnist_cnn.export", "mnist_cnn.evaluate", "mnist_cnn.preprocess"],
)
def test_using_a_trained_net_imports_no_training_machinery(module):
    added = imported_by(module)
    assert not added & (TRAINING | HEAVY), sorted(added & (TRAINING | HEAVY))


def test_the_training_command_imports_its_heavy_helpers_only_when_it_uses_them():
    added = imported_by("mnist_cnn.train")
    assert {"mnist_cnn.train", "mnist_cnn.runs"} <= added
    assert not added & HEAVY, sorted(added & HEAVY)
