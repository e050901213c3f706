"""The nets. Nothing about data or training lives here."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def he_init(features: nn.Sequential) -> None:
    """He-initialize the convolutions that feed a ReLU; the 1x1 classifier keeps the default.

    Without BatchNorm, PyTorch's default init shrinks the signal at every layer, and one epoch
    of SGD often fails to wake the seed's net up (seeds stuck at 9.8%).
    """
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    for conv in convs[:-1]:
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")


class Net(nn.Module):
    """The seed's fully convolutional net: six bias-free convolutions, 9,032 parameters.

    Unpadded 3x3 convolutions take 28x28 to 2x2 spatial maps of 10 class scores; global average
    pooling makes the net accept any input of at least 28x28.
    """

    def __init__(self) -> None:
        super().__init__()
        # In-place ReLUs: one activation buffer less per layer, a few percent faster on CPU.
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, bias=False),  # 26x26
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, kernel_size=3, bias=False),  # 24x24
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 12x12
            nn.Conv2d(8, 16, kernel_size=3, bias=False),  # 10x10
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 16, kernel_size=3, bias=False),  # 8x8
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 4x4
            nn.Conv2d(16, 32, kernel_size=3, bias=False),  # 2x2
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 10, kernel_size=1, bias=False),  # 10 class maps, 2x2
            nn.AdaptiveAvgPool2d(1),
        )
        he_init(self.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 1, H, W) with H, W >= 28 -> log-probabilities (N, 10)."""
        return F.log_softmax(self.features(x).flatten(1), dim=1)


class ImprovedNet(nn.Module):
    """The seed's net with the improvements its design lists: BatchNorm after every 3x3
    convolution, Dropout after each pooling, and padding=1 in the two full-resolution
    convolutions, so that the digit's edges are seen and the last maps are 3x3, as the seed's
    prose describes. (Padding the later layers too leaves 7x7 final maps whose corners see
    little of the digit; global average pooling over them cost accuracy in our runs.) The last
    3x3 layer has 30 channels instead of 32 to pay for the BatchNorm parameters: 8,880 in all.

    Each improvement can be switched off, for the ablation study (scripts/ablation.py); widths
    are the five 3x3 convolutions' output channels. With separable, the 3x3 convolutions after
    the first are depthwise-separable (a 3x3 filter per channel, then a 1x1 convolution mixing
    the channels, as in MobileNet): about a ninth of the parameters of a full 3x3 convolution,
    which buys width. The class is the family that `python -m mnist_cnn.search` searches: the
    seed's net is its point `ImprovedNet(batchnorm=False, dropout=0, padding=False,
    widths=(8, 8, 16, 16, 32))`, layer for layer.
    """

    def __init__(
        self,
        batchnorm: bool = True,
        dropout: float = 0.05,
        padding: bool = True,
        widths: tuple[int, int, int, int, int] = (8, 8, 16, 16, 30),
        separable: bool = False,
    ) -> None:
        super().__init__()
        w1, w2, w3, w4, w5 = widths

        def conv(c_in: int, c_out: int, pad: bool = False) -> list[nn.Module]:
            layers: list[nn.Module] = (
                [
                    nn.Conv2d(c_in, c_in, kernel_size=3, padding=int(pad), groups=c_in, bias=False),
                    nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
                ]
                if separable and c_in > 1
                else [nn.Conv2d(c_in, c_out, kernel_size=3, padding=int(pad), bias=False)]
            )
            if batchnorm:
                layers.append(nn.BatchNorm2d(c_out))
            return [*layers, nn.ReLU(inplace=True)]

        def pool() -> list[nn.Module]:
            return [nn.MaxPool2d(2)] + ([nn.Dropout(dropout)] if dropout > 0 else [])

        self.features = nn.Sequential(
            *conv(1, w1, pad=padding),  # 28x28 (26x26 unpadded)
            *conv(w1, w2, pad=padding),  # 28x28 (24x24)
            *pool(),  # 14x14 (12x12)
            *conv(w2, w3),  # 12x12 (10x10)
            *conv(w3, w4),  # 10x10 (8x8)
            *pool(),  # 5x5 (4x4)
            *conv(w4, w5),  # 3x3 (2x2)
            nn.Conv2d(w5, 10, kernel_size=1, bias=False),
            nn.AdaptiveAvgPool2d(1),
        )
        he_init(self.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 1, H, W) with H, W >= 28 -> log-probabilities (N, 10)."""
        return F.log_softmax(self.features(x).flatten(1), dim=1)


class WideNet(ImprovedNet):
    """The improved net twice as wide, 35,664 parameters: not a net for the 9,032-parameter
    budget, but a teacher for it (train --teacher): its answers, softened, are richer targets
    than the labels alone (knowledge distillation)."""

    def __init__(self, batchnorm: bool = True, dropout: float = 0.05, padding: bool = True) -> None:
        super().__init__(batchnorm, dropout, padding, widths=(16, 16, 32, 32, 64))


class SeparableNet(ImprovedNet):
    """The best net `python -m mnist_cnn.search` found at 9,032 parameters (a study of separable
    nets, trial 2): the improved net's family with depthwise-separable 3x3 convolutions after the
    first, no padding, Dropout 0.1, and widths 19-39-50-47-35 where the improved net has
    8-8-16-16-30. Separable convolutions cost about a ninth of full ones, so the same parameter
    budget buys nets wide in the middle: 8,982 parameters."""

    def __init__(
        self,
        batchnorm: bool = True,
        dropout: float = 0.1,
        padding: bool = False,
        widths: tuple[int, int, int, int, int] = (19, 39, 50, 47, 35),
    ) -> None:
        super().__init__(batchnorm, dropout, padding, widths, separable=True)


MODELS: dict[str, type[nn.Module]] = {
    "seed": Net,
    "improved": ImprovedNet,
    "wide": WideNet,
    "separable": SeparableNet,
}


def build_model(name: str = "seed", **kwargs) -> nn.Module:
    """A fresh, randomly initialised net by name (see MODELS), with its constructor's kwargs."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
