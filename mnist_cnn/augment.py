"""Random augmentation of a whole batch at once, on the batch's device: an affine distortion of
each image, and optionally an elastic one (--elastic) and an erased patch (--erase)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

# Small distortions, of the size handwriting varies by: a slant, an offset, a bigger or smaller hand.
DEGREES = 10.0
TRANSLATE = 0.1  # of the image size, each way
SCALE = (0.9, 1.1)
ELASTIC_SIGMA = 4.0  # pixels: how smooth an elastic distortion is (the size of its ripples)
ERASE_SIZE = (0.2, 0.4)  # an erased patch's sides, as fractions of the image's


def augment_batch(
    images: torch.Tensor,
    generator: torch.Generator,
    n: int | None = None,
    share: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
    elastic: float = 0.0,
    erase: float = 0.0,
) -> torch.Tensor:
    """images (N, C, H, W) with an affine distortion each, an elastic one of elastic pixels
    (0: none) and, with probability erase, a patch erased to the background.

    Under torchrun, images are this process's share of a batch of n: every random draw is made
    for the whole batch, so each process's generator stays in step, and share picks its part.
    """
    n = len(images) if n is None else n
    displacement = share(random_displacements(n, images.shape[-1], generator, elastic)) if elastic else None
    images = distort(images, share(random_distortions(n, generator)), displacement)
    if erase:
        images = erase_patches(images, share(random_patches(n, generator, erase)))
    return images


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


def random_displacements(n: int, size: int, generator: torch.Generator, alpha: float) -> torch.Tensor:
    """n smooth random displacement fields (n, size, size, 2) for `distort`, moving pixels alpha
    pixels (root mean square, away from the edges) each way: uniform noise blurred by a Gaussian
    of ELASTIC_SIGMA pixels (Simard et al. 2003's elastic distortion), scaled to that size."""
    noise = torch.rand(n * 2, 1, size, size, generator=generator) * 2 - 1
    radius = int(2 * ELASTIC_SIGMA)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * ELASTIC_SIGMA**2))
    kernel /= kernel.sum()
    smooth = F.conv2d(F.pad(noise, (radius,) * 4, mode="reflect"), kernel.view(1, 1, 1, -1))
    smooth = F.conv2d(smooth, kernel.view(1, 1, -1, 1))
    # The blur leaves the noise's standard deviation (1/sqrt(3)) times the 2-D kernel's norm.
    rms = kernel.square().sum() / math.sqrt(3)
    # Pixels to grid units: the grid spans 2 over size pixels.
    return (smooth.view(n, 2, size, size) * (alpha / rms * 2 / size)).permute(0, 2, 3, 1)


def distort(
    images: torch.Tensor, theta: torch.Tensor, displacement: torch.Tensor | None = None
) -> torch.Tensor:
    """Resample each image (N, C, H, W) through its affine matrix theta (N, 2, 3), and its
    displacement field (N, H, W, 2) when given, where the images are. Pixels pulled in from
    outside the image repeat the border, which in MNIST is background."""
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    if displacement is not None:
        grid = grid + displacement.to(images.device, images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_patches(n: int, generator: torch.Generator, probability: float) -> torch.Tensor:
    """n patches (n, 4) as (top, left, height, width) fractions of the image; an image that keeps
    all of itself (1 - probability of them) gets a patch of size 0 (DeVries & Taylor 2017's
    cutout, Zhong et al. 2020's random erasing)."""
    size = ERASE_SIZE[0] + torch.rand(n, 2, generator=generator) * (ERASE_SIZE[1] - ERASE_SIZE[0])
    corner = torch.rand(n, 2, generator=generator) * (1 - size)
    erased = torch.rand(n, 1, generator=generator) < probability
    return torch.cat([corner, size * erased], dim=1)


def erase_patches(images: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """images (N, C, H, W) with each one's patch (see random_patches) set to the background: the
    image's lowest value (MNIST's normalized 0)."""
    h, w = images.shape[-2:]
    patches = patches.to(images.device)
    rows = torch.arange(h, device=images.device) / h
    cols = torch.arange(w, device=images.device) / w
    top, left, height, width = (patches[:, i, None] for i in range(4))
    inside_rows = (rows >= top) & (rows < top + height)  # (N, H)
    inside_cols = (cols >= left) & (cols < left + width)  # (N, W)
    mask = (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]
    return torch.where(mask, images.amin(dim=(1, 2, 3), keepdim=True), images)
