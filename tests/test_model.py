import contextlib
import io
from pathlib import Path

import pytest
import torch
from torch import nn

from mnist_cnn import MODELS, Net, build_model, count_parameters
from mnist_cnn.model import ImprovedNet
from mnist_cnn.train import print_summary

from .helpers import REPO

SEED_TABLE = Path(__file__).with_name("seed_summary.txt")
SEED_SPEC = REPO.parent / "shared" / "seed" / "mnist_cnn_seed.md"


def summary_text(model: nn.Module) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_summary(model)
    return out.getvalue()


def test_summary_matches_the_seed_table_line_for_line():
    printed = summary_text(Net()).strip().splitlines()
    expected = SEED_TABLE.read_text().strip().splitlines()
    # torchsummary closes with one more rule line than the seed document quotes.
    assert printed[: len(expected)] == expected
    assert printed[len(expected) :] == ["-" * 64]


def test_the_stored_table_is_the_one_in_the_seed_document():
    if not SEED_SPEC.is_file():
        pytest.skip(f"the seed document is not at {SEED_SPEC}")
    assert SEED_TABLE.read_text().strip() in SEED_SPEC.read_text()


def test_parameter_count_and_no_biases():
    net = Net()
    assert count_parameters(net) == 9032
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 and all(c.bias is None for c in convs)


@pytest.mark.parametrize("size", [28, 56, 37])
def test_output_is_log_probabilities_for_any_input_size(size):
    out = Net()(torch.randn(4, 1, size, size))
    assert out.shape == (4, 10)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(4), atol=1e-5)
    assert (out <= 0).all()


def test_too_small_input_is_an_error():
    with pytest.raises(RuntimeError):
        Net()(torch.randn(1, 1, 20, 20))


def test_build_model_by_name_and_seeded_init():
    torch.manual_seed(0)
    a = build_model("seed")
    torch.manual_seed(0)
    b = build_model("seed")
    assert isinstance(a, Net) and set(MODELS) >= {"seed"}
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet")


def test_summary_does_not_disturb_the_random_stream():
    torch.manual_seed(3)
    expected = torch.rand(3)
    net = Net()
    torch.manual_seed(3)
    summary_text(net)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", ["improved", "separable"])
def test_the_nets_for_the_budget_stay_within_it_and_are_fully_convolutional(name):
    net = build_model(name)
    assert isinstance(net, ImprovedNet) and count_parameters(net) <= 9032
    assert not any(isinstance(m, nn.Linear) for m in net.modules())
    assert isinstance(net.features[-1], nn.AdaptiveAvgPool2d)
    for size in (28, 56):
        out = net.eval()(torch.randn(3, 1, size, size))
        assert out.shape == (3, 10)
        assert torch.allclose(out.exp().sum(dim=1), torch.ones(3), atol=1e-5)


def test_improved_net_batchnorm_and_dropout_behave_differently_in_train_and_eval():
    torch.manual_seed(0)
    net, images = build_model("improved", dropout=0.5), torch.randn(8, 1, 28, 28)
    net.train()
    assert not torch.allclose(net(images), net(images))  # dropout draws new masks
    before = net.features[1].running_mean.clone()
    net(images)
    assert not torch.equal(net.features[1].running_mean, before)  # BatchNorm tracks statistics
    net.eval()
    after = net.features[1].running_mean.clone()
    assert torch.equal(net(images), net(images))
    assert torch.equal(net.features[1].running_mean, after)
    assert torch.allclose(net(images[:1]), net(images)[:1], atol=1e-5)  # no batch dependence


def test_improved_net_ablation_switches():
    plain = build_model("improved", batchnorm=False, dropout=0.0, padding=0)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.Dropout)) for m in plain.modules())
    assert plain(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert count_parameters(plain) < count_parameters(build_model("improved"))
