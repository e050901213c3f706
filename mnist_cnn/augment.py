"""Random affine augmentation of a whole batch at once, on the batch's device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Small distortions, of the size handwriting varies by: a slant, an offset, a bigger or smaller hand.
DEGREES = 10.0
TRANSLATE = 0.1  # of the image size, each way
SCALE = (0.9, 1.1)


def random_affine(
    images: torch.Tensor,
    generator: torch.Generator,
    degrees: float = DEGREES,
    translate: float = TRANSLATE,
    scale: tuple[float, float] = SCALE,
) -> torch.Tensor:
    """Rotate, shift and scale each image (N, C, H, W) by its own random amount."""
    return distort(images, random_distortions(len(images), generator, degrees, translate, scale))


def random_distortions(
    n: int,
    generator: torch.Generator,
    degrees: float = DEGREES,
    translate: float = TRANSLATE,
    scale: tuple[float, float] = SCALE,
) -> torch.Tensor:
    """n random affine distortions as (n, 2, 3) matrices, for `distort`.

    They are drawn on the CPU from generator, so a seed gives the same distortions on any device.
    """
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    zoom = scale[0] + torch.rand(n, generator=generator) * (scale[1] - scale[0])
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * (2 * translate)  # grid spans [-1, 1]
    # theta maps output coordinates to input coordinates: the inverse of the distortion.
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], dim=1), torch.stack([sin, cos, shift[:, 1]], dim=1)], dim=1
    )


def distort(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample each image (N, C, H, W) through its affine matrix theta (N, 2, 3), where the images
    are. Pixels pulled in from outside the image repeat the border, which in MNIST is background."""
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
